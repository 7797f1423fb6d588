"""The on-disk IR cache (`guided.irstore`) and the private folders under it (`guided.cachedir`).

What a second process gets (the IR read back, lowering skipped), and each safety rule: 0700
folders and 0600 files whatever the umask, folders and files of another user or writable by
others refused and reported, symbolic links not followed, atomic writes, least recently used
entries evicted past the size bound, and planted, truncated, tampered or misplaced files
ignored with a warning and rebuilt, never executed.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import stat
import time
import warnings

import pytest

import guided
from guided import cachedir, compiler, irstore
from guided.errors import CacheWarning, UnsafeCache
from guided.ir import CfgIR

GRAMMAR = guided.Grammar('start: item+\nitem: "(" start ")" | /[a-z]+/\n%ignore " "')
OTHER = guided.JsonSchema({"type": "object", "properties": {"a": {"type": "integer"}}})


@pytest.fixture
def store_dir(tmp_path, monkeypatch):
    """A fresh store folder for the test (and the process's store switched to it)."""
    folder = tmp_path / "irc"
    monkeypatch.setenv("GUIDED_IR_CACHE", str(folder))
    monkeypatch.delenv(cachedir.SHARED_ENV, raising=False)
    monkeypatch.setattr(irstore, "MIN_BUILD_SECONDS", 0.0)  # store even what builds fast
    return folder / f"v{guided.ir.serialize.FORMAT_VERSION}"


@pytest.fixture
def lowered(monkeypatch):
    """The specs actually lowered (not read from disk) during the test."""
    seen = []
    original = compiler.lower

    def lower(spec):
        seen.append(spec)
        return original(spec)

    monkeypatch.setattr(compiler, "lower", lower)
    return seen


def _vocab():
    # A new Vocabulary object each time: the in-memory cache is per vocabulary, so a compile
    # for it goes to the disk store, as a new process would.
    return guided.Vocabulary.from_token_bytes([b"(", b")", b"ab", b" ", b"x", b"<eos>"], eos_token_ids=[5])


def _entry(store_dir: pathlib.Path, spec) -> pathlib.Path:
    return store_dir / f"{irstore.spec_key(spec)}{irstore.SUFFIX}"


def _masks(grammar, tokens) -> list[list[bool]]:
    m = grammar.matcher()
    out = [m.mask().tolist()]
    for t in tokens:
        m.advance(t)
        out.append(m.mask().tolist())
    return out


def test_a_second_compile_reads_the_ir_back(store_dir, lowered):
    first = guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR] and _entry(store_dir, GRAMMAR).is_file()
    second = guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR]  # not lowered again
    assert _masks(first, [0, 2, 3, 4, 1]) == _masks(second, [0, 2, 3, 4, 1])


def test_folders_are_0700_and_files_0600_whatever_the_umask(store_dir):
    old = os.umask(0)
    try:
        guided.compile(GRAMMAR, _vocab())
    finally:
        os.umask(old)
    for folder in (store_dir.parent, store_dir):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(_entry(store_dir, GRAMMAR).stat().st_mode) == 0o600
    assert [p.name for p in store_dir.iterdir()] == [_entry(store_dir, GRAMMAR).name]  # no temporaries left


def test_cache_false_and_the_variable_turn_it_off(store_dir, monkeypatch, lowered):
    guided.compile(GRAMMAR, _vocab(), cache=False)
    assert not store_dir.exists() or not list(store_dir.iterdir())
    monkeypatch.setenv("GUIDED_IR_CACHE", "0")
    guided.compile(GRAMMAR, _vocab())
    guided.compile(GRAMMAR, _vocab())
    assert not store_dir.exists() or not list(store_dir.iterdir())
    assert lowered == [GRAMMAR] * 3


def _planted(store_dir, lowered, content: bytes) -> list[str]:
    """Compile GRAMMAR with ``content`` planted as its entry; the warnings, after checking that
    the IR was rebuilt and the entry replaced by a good one."""
    store_dir.mkdir(parents=True, exist_ok=True)
    entry = _entry(store_dir, GRAMMAR)
    entry.write_bytes(content)
    os.chmod(entry, 0o600)
    with pytest.warns(CacheWarning) as record:
        guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR]
    assert isinstance(irstore.default_store().get(irstore.spec_key(GRAMMAR)), CfgIR)
    return [str(w.message) for w in record]


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: what a planted pickle would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_planted_pickle_is_ignored_not_executed(store_dir, lowered, tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(marker))
    messages = _planted(store_dir, lowered, payload)
    assert not marker.exists()
    assert any("ignored the cached IR" in m for m in messages)
    # Even behind a correct key prefix it is parsed as IR, never unpickled.
    lowered.clear()
    messages = _planted(store_dir, lowered, bytes.fromhex(irstore.spec_key(GRAMMAR)) + payload)
    assert not marker.exists() and any("wrong magic" in m for m in messages)


def test_truncated_tampered_and_misplaced_entries_are_rebuilt(store_dir, lowered):
    guided.compile(GRAMMAR, _vocab())
    good = _entry(store_dir, GRAMMAR).read_bytes()
    lowered.clear()
    assert any("truncated" in m for m in _planted(store_dir, lowered, good[:len(good) // 2]))
    lowered.clear()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x40
    assert any("checksum" in m for m in _planted(store_dir, lowered, bytes(flipped)))
    lowered.clear()
    other = bytes.fromhex(irstore.spec_key(OTHER)) + compiler.lower(OTHER).to_bytes()
    lowered.clear()
    assert any("another spec" in m for m in _planted(store_dir, lowered, other))
    lowered.clear()
    assert any("wrong magic" in m for m in _planted(store_dir, lowered, good[:16] + os.urandom(200)))


def test_symbolic_links_are_not_followed(store_dir, lowered, tmp_path):
    guided.compile(OTHER, _vocab())
    target = _entry(store_dir, OTHER)
    link = _entry(store_dir, GRAMMAR)
    link.symlink_to(target)
    with pytest.warns(CacheWarning, match="cannot be opened safely"):
        guided.compile(GRAMMAR, _vocab())
    assert lowered == [OTHER, GRAMMAR] and not link.is_symlink()


def test_a_planted_fifo_does_not_block(store_dir, lowered):
    store_dir.mkdir(parents=True)
    os.mkfifo(_entry(store_dir, GRAMMAR), 0o600)
    with pytest.warns(CacheWarning, match="not a regular file"):
        guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR]


def test_files_writable_by_others_are_refused(store_dir, lowered):
    guided.compile(GRAMMAR, _vocab())
    os.chmod(_entry(store_dir, GRAMMAR), 0o666)
    lowered.clear()
    with pytest.warns(CacheWarning, match="writable by other users"):
        guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR]


def _as_other_user(monkeypatch):
    """Make the files of this test look owned by someone else: chown where we may (root),
    else pretend to be another user."""
    if os.geteuid() == 0:
        return lambda path: os.chown(path, 12345, 12345)
    me = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    return lambda path: None


def test_files_of_another_user_are_refused(store_dir, lowered, monkeypatch):
    guided.compile(GRAMMAR, _vocab())
    entry = _entry(store_dir, GRAMMAR)
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file away")
    os.chown(entry, 12345, 12345)
    lowered.clear()
    with pytest.warns(CacheWarning, match="belongs to user id 12345"):
        guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR]


@pytest.mark.parametrize("problem", ["other owner", "group writable", "world writable"])
def test_an_unsafe_folder_turns_the_disk_cache_off_with_a_warning(store_dir, lowered, monkeypatch, problem):
    store_dir.mkdir(parents=True)
    if problem == "other owner":
        _as_other_user(monkeypatch)(store_dir)
        match = "belongs to user id"
    else:
        os.chmod(store_dir, 0o770 if problem == "group writable" else 0o707)
        match = "writable by other users"
    with pytest.warns(CacheWarning, match=match):
        first = guided.compile(GRAMMAR, _vocab())
    guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR, GRAMMAR]  # memory only: compiled, never read from there
    assert first.matcher().mask().any()
    if problem != "other owner":
        assert list(store_dir.iterdir()) == []


def test_private_dir_refuses_and_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv(cachedir.SHARED_ENV, raising=False)
    root = tmp_path / "cache"
    cachedir.private_dir(root / "a", root=root)
    os.chmod(root / "a", 0o777)
    with pytest.raises(UnsafeCache, match=f"{root / 'a'}.*chmod go-w"):
        cachedir.private_dir(root / "a" / "b", root=root)


def test_a_shared_cache_is_opt_in_readable_and_still_refuses_writable_folders(store_dir, lowered, monkeypatch):
    monkeypatch.setenv(cachedir.SHARED_ENV, "1")
    old = os.umask(0)
    try:
        guided.compile(GRAMMAR, _vocab())
    finally:
        os.umask(old)
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE(_entry(store_dir, GRAMMAR).stat().st_mode) == 0o644
    give_away = _as_other_user(monkeypatch)
    give_away(_entry(store_dir, GRAMMAR))
    give_away(store_dir)
    guided.compile(GRAMMAR, _vocab())
    assert lowered == [GRAMMAR]  # another user's entry is read in a shared cache
    os.chmod(store_dir, 0o775)
    with pytest.warns(CacheWarning, match="writable by other users"):
        guided.compile(GRAMMAR, _vocab())


def test_a_failed_write_leaves_no_entry_and_no_temporary(store_dir, monkeypatch):
    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(irstore.os, "replace", fail)
    guided.compile(GRAMMAR, _vocab())
    assert list(store_dir.iterdir()) == []


def test_stale_temporaries_are_removed(store_dir):
    guided.compile(GRAMMAR, _vocab())
    stale = store_dir / f"{cachedir.TEMPORARY_PREFIX}dead-1-abc"
    fresh = store_dir / f"{cachedir.TEMPORARY_PREFIX}live-2-def"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 2 * irstore.STALE_TEMPORARY_SECONDS
    os.utime(stale, (old, old))
    irstore.default_store().evict()
    assert not stale.exists() and fresh.exists()  # a writer may still be busy with the fresh one


def test_least_recently_used_entries_are_evicted_past_the_bound(tmp_path):
    folder = cachedir.private_dir(tmp_path / "store", root=tmp_path)
    specs = [guided.Regex(f"item{i}[a-z]+") for i in range(8)]
    irs = {spec: compiler.lower(spec) for spec in specs}
    entry = len(bytes.fromhex(irstore.spec_key(specs[0]))) + len(irs[specs[0]].to_bytes())
    store = irstore.IRStore(folder, max_bytes=int(entry * 4.5))  # room for four entries
    for age, spec in enumerate(specs[:4]):
        store.put(irstore.spec_key(spec), irs[spec])
        path = folder / f"{irstore.spec_key(spec)}{irstore.SUFFIX}"
        os.utime(path, (1000 + age, 1000 + age))  # oldest first
    assert store.get(irstore.spec_key(specs[0])) is not None  # now the most recently used
    for spec in specs[4:6]:
        store.put(irstore.spec_key(spec), irs[spec])
    left = {p.name for p in folder.iterdir()}
    kept = [spec for spec in specs if f"{irstore.spec_key(spec)}{irstore.SUFFIX}" in left]
    assert store.size() <= store.max_bytes
    assert specs[0] in kept and specs[5] in kept  # the one just read and the newest stay
    assert specs[1] not in kept  # the least recently used went first


def test_keys_follow_everything_the_ir_depends_on(tmp_path, monkeypatch):
    key = irstore.spec_key
    assert key(GRAMMAR) == key(guided.Grammar(GRAMMAR.source)) != key(guided.Grammar(GRAMMAR.source, start="item"))
    assert key(guided.Regex("a+")) != key(guided.Regex("a+", max_states=10))
    assert key(OTHER) != key(guided.JsonSchema(OTHER.schema, whitespace="compact"))
    assert key(guided.JsonSchema(OTHER.schema, lenient=True)) is None  # its lowering warns
    assert key(guided.Xml()) != key(guided.Xml({"type": "object"}))
    assert key(object()) is None
    path = tmp_path / "g.lark"
    path.write_text('start: "a"')
    before = key(guided.Grammar(path))
    path.write_text('start: "b"')
    assert key(guided.Grammar(path)) != before
    original = key(GRAMMAR)
    monkeypatch.setattr(irstore, "_fingerprint", bytes(16))  # other code (or versions), other keys
    assert key(GRAMMAR) != original


def test_warnings_name_the_file(store_dir, lowered):
    store_dir.mkdir(parents=True)
    _entry(store_dir, GRAMMAR).write_bytes(b"junk")
    os.chmod(_entry(store_dir, GRAMMAR), 0o600)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        guided.compile(GRAMMAR, _vocab())
    assert [str(w.message).split(":")[1].strip() for w in record if w.category is CacheWarning] == \
           [f"ignored the cached IR {_entry(store_dir, GRAMMAR)}"]
