"""The on-disk store of compiled IR: a spec's intermediate form kept across processes.

Lowering a spec to its IR is the slow part of a first compile (Lark's analysis and the terminal
automata of a grammar, the JSON Schema compiler); the IR does not depend on the vocabulary, so
`guided.compile` keeps it on disk, in guided's own serialised form (`guided.ir.serialize`),
and the next process reads it back in a few milliseconds.

Where and how
-------------
- Folder: ``<cache>/ir/v<format>/`` under `guided.cachedir.cache_dir` (``$GUIDED_CACHE``, else
  ``$XDG_CACHE_HOME/guided``, else ``~/.cache/guided``), or ``$GUIDED_IR_CACHE/v<format>/`` when
  that variable names a folder; created 0700, refused (and the disk cache turned off for the
  process, with a `guided.errors.CacheWarning`) when it belongs to another user or others may
  write to it (`guided.cachedir`).
- Key: a BLAKE2b hash of the spec's full description (a grammar's text, a schema's canonical
  JSON, every option), the IR format version, guided's version and the text of the code that
  builds IR (``guided/ir``, ``guided/frontends``, the shipped grammars) with the versions of Lark
  and interegular: any change to what lowering would produce gives new keys.
- Entry: ``<key>.gir``, holding the key again (a file copied under another name is refused) and
  the serialised IR, written to a temporary file and renamed into place, mode 0600.
- Reading: symbolic links are not followed; a file that is not a regular file, not owned by
  this user, writable by others, too large, truncated, tampered with or planted (anything
  `guided.ir.serialize.from_bytes` or `validate` refuses) is ignored with a `CacheWarning`,
  removed, and rebuilt.  Nothing read is ever executed: the format is parsed field by field.
- Size bound: ``$GUIDED_IR_CACHE_MB`` (default 256 MiB); past it the least recently used entries
  (by modification time, refreshed on each hit) are removed down to 80% of the bound.
- Only IR that took at least `MIN_BUILD_SECONDS` to build is stored: below that a rebuild costs
  no more than a read.  Lenient JSON Schemas are not stored: their lowering warns about what
  it relaxed, and a cached IR would skip the warning.
- Off: ``GUIDED_IR_CACHE=0`` (the disk store only), or ``guided.compile(..., cache=False)`` (no
  cache at all for that call).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import stat
import threading
import time
from typing import Any

from guided import cachedir
from guided.errors import CacheWarning, InvalidIR, UnsafeCache, warn_caller
from guided.ir import ByteDFA, CfgIR
from guided.ir.serialize import FORMAT_VERSION, from_bytes, to_bytes

DISABLE_ENV = "GUIDED_IR_CACHE"
SIZE_ENV = "GUIDED_IR_CACHE_MB"
DEFAULT_MAX_BYTES = 256 << 20
MIN_BUILD_SECONDS = 0.002
SUFFIX = ".gir"
KEY_BYTES = 16
STALE_TEMPORARY_SECONDS = 3600.0

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class IRStore:
    """Serialised IR in one private folder, keyed by `spec_key`, bounded in size (LRU)."""

    def __init__(self, folder: pathlib.Path, max_bytes: int = DEFAULT_MAX_BYTES):
        self.folder = pathlib.Path(folder)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._estimate: int | None = None  # bytes in the folder, as far as this process knows
        self._refused = False  # warned that the folder is no longer private

    def _path(self, key: str) -> pathlib.Path:
        return self.folder / f"{key}{SUFFIX}"

    def usable(self) -> bool:
        """Is the folder still private (checked at each use: its mode may change under us)?"""
        try:
            cachedir.check_private(self.folder)
        except (UnsafeCache, OSError) as exc:
            if not self._refused:
                self._refused = True
                warn_caller(CacheWarning(f"guided: the on-disk IR cache is not used: {exc}"))
            return False
        self._refused = False
        return True

    def get(self, key: str) -> ByteDFA | CfgIR | None:
        """The IR stored under ``key``, or None (missing, or refused with a `CacheWarning`)."""
        if not self.usable():
            return None
        path = self._path(key)
        try:
            # O_NONBLOCK: a planted FIFO must not block the open (regular files ignore the flag).
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY | _O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:  # a symbolic link (ELOOP), a folder, no permission...
            self._reject(path, f"cannot be opened safely ({exc.strerror})")
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self._reject(path, "not a regular file")
                return None
            try:
                cachedir.check_private(path, st)
            except UnsafeCache as exc:
                self._reject(path, str(exc))
                return None
            if st.st_size > self.max_bytes:
                self._reject(path, f"{st.st_size} bytes, more than the cache's bound")
                return None
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(self.max_bytes + 1)
        finally:
            os.close(fd)
        stored_key = data[:KEY_BYTES]
        try:
            if stored_key != bytes.fromhex(key):
                raise InvalidIR("the file holds the IR of another spec")
            ir = from_bytes(data[KEY_BYTES:])
        except InvalidIR as exc:
            self._reject(path, str(exc))
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return ir

    def put(self, key: str, ir: ByteDFA | CfgIR) -> None:
        """Store ``ir`` under ``key`` (atomically), then keep the folder within its bound."""
        data = bytes.fromhex(key) + to_bytes(ir)
        if len(data) > self.max_bytes or not self.usable():
            return
        tmp = self.folder / cachedir.temporary_name(key[:8])
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY,
                         cachedir.file_mode())
            try:
                with os.fdopen(fd, "wb", closefd=False) as f:
                    f.write(data)
            finally:
                os.close(fd)
            os.replace(tmp, self._path(key))
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return  # a full disk or a vanished folder: the cache is an optimisation
        with self._lock:
            if self._estimate is None:
                self._estimate = self._scan()[1]
            else:
                self._estimate += len(data)
            if self._estimate > self.max_bytes:
                self._estimate = self.evict()

    def _scan(self) -> tuple[list[tuple[float, int, str]], int]:
        """(mtime, size, name) of every entry, and their total size; stale temporaries removed."""
        entries = []
        total = 0
        now = time.time()
        try:
            scan = list(os.scandir(self.folder))
        except OSError:
            return [], 0
        for entry in scan:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if entry.name.startswith(cachedir.TEMPORARY_PREFIX):
                if now - st.st_mtime > STALE_TEMPORARY_SECONDS:  # left by a crashed writer
                    _unlink(entry.path)
                continue
            if entry.name.endswith(SUFFIX) and stat.S_ISREG(st.st_mode):
                entries.append((st.st_mtime, st.st_size, entry.name))
                total += st.st_size
        return entries, total

    def evict(self) -> int:
        """Remove the least recently used entries until the folder holds at most 80% of the
        bound; the bytes left."""
        entries, total = self._scan()
        entries.sort()
        target = int(self.max_bytes * 0.8)
        for _, size, name in entries:
            if total <= target:
                break
            if _unlink(os.path.join(self.folder, name)):
                total -= size
        return total

    def size(self) -> int:
        """Bytes held by the entries now."""
        return self._scan()[1]

    def _reject(self, path: pathlib.Path, reason: str) -> None:
        warn_caller(CacheWarning(f"guided: ignored the cached IR {path}: {reason}; rebuilding it"))
        _unlink(path)


def _unlink(path: Any) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------
# The process's store


_store: IRStore | None = None
_store_for: tuple | None = None
_store_lock = threading.Lock()


_OFF = ("0", "off", "false", "no")
_ON = ("", "1", "on", "true", "yes")


def enabled() -> bool:
    """Is the disk store on (``GUIDED_IR_CACHE`` not set to 0/off/false/no)?"""
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in _OFF


def store_folder() -> tuple[pathlib.Path, pathlib.Path]:
    """(the store's folder, the root its checks start from): ``$GUIDED_IR_CACHE`` when it names a
    folder, else ``<cache>/ir``; one subfolder per IR format version."""
    value = os.environ.get(DISABLE_ENV, "").strip()
    root = cachedir.cache_dir() if value.lower() in _ON else pathlib.Path(value).expanduser()
    base = root / "ir" if value.lower() in _ON else root
    return base / f"v{FORMAT_VERSION}", root


def default_store() -> IRStore | None:
    """The process's store (`store_folder`), or None when it is off or refused (warned once)."""
    global _store, _store_for
    if not enabled():
        return None
    folder, root = store_folder()
    try:
        max_bytes = int(float(os.environ.get(SIZE_ENV, DEFAULT_MAX_BYTES / (1 << 20))) * (1 << 20))
    except ValueError:
        max_bytes = DEFAULT_MAX_BYTES
    config = (str(folder), max_bytes, cachedir.shared())
    with _store_lock:
        if _store_for != config:
            _store_for = config
            try:
                _store = IRStore(cachedir.private_dir(folder, root=root), max_bytes)
            except (UnsafeCache, OSError) as exc:
                _store = None
                warn_caller(CacheWarning(f"guided: the on-disk IR cache is off for this process: {exc}"))
        return _store


# ------------------------------------------------------------------------------------------
# Keys


def spec_key(spec: Any) -> str | None:
    """A hex key naming ``spec``'s IR as this guided would build it, or None for a spec without
    a stable description (a Pydantic model inside `guided.Xml`, a spec type guided does not know)."""
    description = describe(spec)
    if description is None:
        return None
    h = hashlib.blake2b(digest_size=KEY_BYTES)
    h.update(b"guided-ir-cache\0")
    h.update(code_fingerprint())
    h.update(description.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def describe(spec: Any) -> str | None:
    """Everything the IR of ``spec`` depends on, as canonical JSON text (None: not describable)."""
    from guided.frontends.lark import Grammar
    from guided.frontends.jsonschema._formats import has_unknown_formats
    from guided.frontends.tools import Tools
    from guided.frontends.xml import Xml

    kind = type(spec).__name__
    if getattr(spec, "lenient", False):
        return None  # lowering warns (RelaxedSchemaWarning); a stored IR would not
    if kind in ("JsonSchema", "Tools", "Xml") and has_unknown_formats(
            [spec.value, json.loads(spec.resources or "{}")] if kind == "JsonSchema"
            else list(spec.definitions) if kind == "Tools" else spec.schema):
        return None  # likewise (UnknownFormatWarning)
    if isinstance(spec, Grammar):
        text, path = spec.text_and_path()
        imported = None
        if path is not None and "%import" in text:  # relative imports read sibling files
            imported = {p.name: p.read_text() for p in sorted(path.parent.glob("*.lark"))}
        return _dump([kind, text, spec.start, spec.max_states, imported, spec.parser])
    if isinstance(spec, Tools):
        return _dump([kind, list(spec.definitions), spec.tool_choice, spec.parallel,
                      dataclasses.asdict(spec.format), spec.max_whitespace, spec.canonical])
    if isinstance(spec, Xml):
        if spec.schema is not None and not isinstance(spec.schema, (dict, bool)):
            return None  # a model class: no description that is stable across processes
        return _dump([kind, spec.schema, spec.root, spec.max_repeat, spec.unknown_formats])
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        # Fields outside equality (JsonSchema.model, the Pydantic class a schema came from) do
        # not change the IR.
        values = [getattr(spec, f.name) for f in dataclasses.fields(spec) if f.compare]
        if all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
            return _dump([f"{type(spec).__module__}.{kind}", values])
    return None


def _dump(value: Any) -> str | None:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


_fingerprint: bytes | None = None


def code_fingerprint() -> bytes:
    """A hash of what lowering depends on besides the spec (computed once per process)."""
    global _fingerprint
    if _fingerprint is None:
        import guided
        from guided.frontends.lark import GRAMMARS_DIR

        h = hashlib.blake2b(digest_size=16)
        h.update(f"format {FORMAT_VERSION}; guided {guided.__version__}; ".encode())
        for dist in ("lark", "interegular"):
            h.update(f"{dist} {_version(dist)}; ".encode())
        package = pathlib.Path(__file__).resolve().parent
        files = sorted((package / "ir").rglob("*.py")) + sorted((package / "frontends").rglob("*.py"))
        files += sorted(GRAMMARS_DIR.glob("*.lark"))
        for path in files:
            h.update(str(path.relative_to(package.parent)).encode() + b"\0")
            h.update(path.read_bytes())
        _fingerprint = h.digest()
    return _fingerprint


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"
