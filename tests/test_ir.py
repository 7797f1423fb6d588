"""The intermediate form as a checked contract: validation, the flat tables, the binary form.

- every IR guided's front-ends build validates, and survives a round trip through bytes
  unchanged (same bytes again, same language for the reference recogniser);
- each invariant of `guided.ir.validate` has a malformed IR that breaks it and the error that
  names it;
- `from_bytes` on truncated, flipped, re-signed, random and hostile bytes raises
  `guided.errors.InvalidIR` (from its own checks, not its last-resort guard) and nothing else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guided
from guided.errors import InvalidIR
from guided.ir import END, ByteDFA, CfgIR, MatchedNames
from guided.ir import serialize
from guided.ir.reference import accepts
from tests.grammar_sampler import SentenceSampler
from tests.regexes import PRACTICAL

ROOT = pathlib.Path(__file__).resolve().parent.parent
MASKBENCH = ROOT.parent / "shared" / "data" / "maskbench"
SHIPPED = ["json", "xml", "sql", "arithmetic", "python_call", "tool_call"]
TOOLS = guided.Tools([{"type": "function", "function": {"name": "f", "parameters": {
    "type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}], tool_choice="auto")


def _specs() -> list:
    specs: list = [guided.Grammar(name) for name in SHIPPED] + [guided.Xml(), TOOLS]
    specs += [guided.Regex(p) for p in PRACTICAL.values()]
    specs += [guided.JsonSchema(json.loads(p.read_text())) for p in sorted((ROOT / "schemas").glob("*.json"))]
    return specs


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: repr(s)[:60])
def test_front_end_ir_validates_and_round_trips(spec):
    ir = guided.compiler.lower(spec)
    assert ir.validate() is ir
    data = ir.to_bytes()
    back = type(ir).from_bytes(data)
    assert back.to_bytes() == data
    assert serialize.from_bytes(ir.to_bytes(compress=False)).to_bytes() == data
    if isinstance(ir, CfgIR):
        for name in ("actions", "gotos", "rules", "nonterminals", "rule_names", "start_state", "end_state", "ignore",
                     "ignore_repeats", "no_ignore_states", "nesting_states", "max_nesting", "matched_names", "source"):
            assert getattr(back, name) == getattr(ir, name), name
        assert [(t.name, t.priority, t.is_string, t.order) for t in back.terminals] == \
               [(t.name, t.priority, t.is_string, t.order) for t in ir.terminals]
        for t, u in zip(ir.terminals, back.terminals):
            assert np.array_equal(t.dfa.transitions, u.dfa.transitions) and t.dfa.initial == u.dfa.initial
    else:
        assert np.array_equal(back.transitions, ir.transitions) and np.array_equal(back.accepting, ir.accepting)


@pytest.mark.parametrize("name", SHIPPED)
def test_round_tripped_grammars_accept_the_same_texts(name):
    ir = guided.Grammar(name).to_ir()
    back = CfgIR.from_bytes(ir.to_bytes())
    rng = random.Random(name)
    sampler = SentenceSampler(guided.Grammar(name))
    for _ in range(10):
        text = sampler.sample(rng).encode()
        for cut in (len(text), len(text) // 2):
            assert accepts(ir, text[:cut]) == accepts(back, text[:cut])
        assert accepts(back, text)


@pytest.mark.filterwarnings("ignore::guided.UnknownFormatWarning")  # MaskBench schemas have some
@pytest.mark.skipif(not MASKBENCH.exists(), reason="../shared/data/maskbench is not beside the repo")
def test_maskbench_ir_validates_and_round_trips():
    checked = 0
    for path in sorted(MASKBENCH.glob("*.json"))[::250]:
        try:
            ir = guided.JsonSchema(json.loads(path.read_text())["schema"]).to_ir()
        except guided.GuidedError:
            continue
        ir.validate()
        assert CfgIR.from_bytes(ir.to_bytes()).to_bytes() == ir.to_bytes()
        checked += 1
    assert checked >= 15


def test_flat_tables_are_the_dicts_in_csr_form():
    ir = guided.Grammar("json").to_ir()
    flat = ir.flat
    n_terms = len(ir.terminals)
    assert flat.action_offsets.dtype == np.int64 and flat.goto_offsets.dtype == np.int64
    assert all(a.dtype == np.int32 for name, a in flat.arrays().items() if not name.endswith("offsets"))
    for q, row in enumerate(ir.actions):
        lo, hi = flat.action_offsets[q], flat.action_offsets[q + 1]
        want = sorted((n_terms if s == END else s, v) for s, v in row.items())
        assert list(zip(flat.action_symbols[lo:hi].tolist(), flat.action_values[lo:hi].tolist())) == want
    assert flat.rows("action", n_terms) == ir.actions and flat.rows("goto", None) == ir.gotos
    assert list(zip(flat.rule_lhs.tolist(), flat.rule_len.tolist())) == list(ir.rules)
    assert ir.flat is flat  # built once


# ------------------------------------------------------------------------------------------
# validate() refuses each kind of malformed IR


def _small() -> CfgIR:
    return guided.Grammar('start: item+\nitem: "(" start ")" | "x"\n%ignore " "').to_ir()


def _with_dfa(ir: CfgIR, index: int, **changes) -> CfgIR:
    terms = list(ir.terminals)
    terms[index] = dataclasses.replace(terms[index], dfa=dataclasses.replace(terms[index].dfa, **changes))
    return dataclasses.replace(ir, terminals=tuple(terms))


def _table(rows, q, change):
    rows = [dict(r) for r in rows]
    change(rows[q])
    return tuple(rows)


def _reducing_state(ir: CfgIR) -> tuple[int, int, int]:
    """(state, symbol, action) of a reduction by a rule of positive length, to another
    nonterminal than the one whose goto reaches the end state."""
    final = next(k for k, v in ir.gotos[ir.start_state].items() if v == ir.end_state)
    for q, row in enumerate(ir.actions):
        for sym, act in row.items():
            if act < 0 and ir.rules[-act - 1][1] > 0 and ir.rules[-act - 1][0] != final:
                return q, sym, act
    raise AssertionError("no reduction")


def _malformed() -> list[tuple[str, object, str]]:
    ir = _small()
    n_states, n_terms = ir.num_states, len(ir.terminals)
    dfa = ir.terminals[0].dfa
    q, sym, act = _reducing_state(ir)
    lhs = ir.rules[-act - 1][0]
    # The state a reduction by `act` in q goes back to, for the goto that must exist there.
    back = next(p for p in range(n_states) if lhs in ir.gotos[p])
    bad_rows = dfa.transitions.copy()
    bad_rows[dfa.initial, 0] = dfa.num_states + 5
    stuck = np.zeros((dfa.num_states + 1, 256), np.int32)
    stuck[:-1] = dfa.transitions
    stuck[dfa.initial, 1] = dfa.num_states  # a state that never reaches acceptance
    return [
        ("dfa dtype", _with_dfa(ir, 0, transitions=dfa.transitions.astype(np.int64)), "int32 array"),
        ("dfa shape", _with_dfa(ir, 0, transitions=dfa.transitions[:, :255]), "shape [n >= 1, 256]"),
        ("dfa target", _with_dfa(ir, 0, transitions=bad_rows), "is not a state"),
        ("dfa accepting", _with_dfa(ir, 0, accepting=dfa.accepting[:-1]), "accepting must be a bool array"),
        ("dfa initial", _with_dfa(ir, 0, initial=dfa.num_states), "initial state"),
        ("dfa trimmed", _with_dfa(ir, 0, transitions=stuck, accepting=np.append(dfa.accepting, False)),
         "cannot reach an accepting state"),
        ("dead accepting", _with_dfa(ir, 0, accepting=np.r_[True, dfa.accepting[1:]]), "state 0 must be dead"),
        ("terminal type", dataclasses.replace(ir, terminals=ir.terminals + ("X",)), "not a Terminal"),
        ("ignore", dataclasses.replace(ir, ignore=frozenset({n_terms})), "CfgIR.ignore"),
        ("action key", dataclasses.replace(ir, actions=_table(ir.actions, 0, lambda r: r.update({n_terms + 3: 1}))),
         "neither a terminal"),
        ("shift target", dataclasses.replace(ir, actions=_table(ir.actions, 0, lambda r: r.update({0: n_states}))),
         "neither a shift"),
        ("reduced rule", dataclasses.replace(ir, actions=_table(ir.actions, 0, lambda r: r.update({0: -99}))),
         "neither a shift"),
        ("action type", dataclasses.replace(ir, actions=_table(ir.actions, 0, lambda r: r.update({0: "1"}))),
         "is not an int"),
        ("goto target", dataclasses.replace(ir, gotos=_table(ir.gotos, back, lambda r: r.update({lhs: n_states}))),
         "out of range"),
        ("rows", dataclasses.replace(ir, gotos=ir.gotos[:-1]), "goto rows"),
        ("rule lhs", dataclasses.replace(ir, rules=ir.rules + ((len(ir.nonterminals), 1),)), "CfgIR.rules"),
        ("rule names", dataclasses.replace(ir, rule_names=ir.rule_names + ("extra",)), "rule_names"),
        ("start", dataclasses.replace(ir, start_state=n_states), "start_state"),
        ("end", dataclasses.replace(ir, end_state=-1), "end_state"),
        ("nesting", dataclasses.replace(ir, nesting_states=frozenset({n_states})), "nesting_states"),
        ("max nesting", dataclasses.replace(ir, max_nesting=-1), "max_nesting"),
        ("end unreachable", dataclasses.replace(
            ir, gotos=tuple({k: v for k, v in g.items() if v != ir.end_state} for g in ir.gotos),
            actions=tuple({k: v for k, v in a.items() if v != ir.end_state} for a in ir.actions)), "unreachable"),
        ("pop past the bottom", dataclasses.replace(ir, rules=tuple(
            (lhs_, 99 if r == -act - 1 else n) for r, (lhs_, n) in enumerate(ir.rules))), "empty the stack"),
        ("goto after reduce", dataclasses.replace(
            ir, gotos=tuple({k: v for k, v in g.items() if k != lhs} for g in ir.gotos)), "has no goto"),
    ]


@pytest.mark.parametrize("what, ir, message", _malformed(), ids=lambda x: x if isinstance(x, str) else "")
def test_validate_names_what_is_malformed(what, ir, message):
    with pytest.raises(InvalidIR, match=message.replace("[", r"\[").replace("]", r"\]")):
        ir.validate()


def test_validate_checks_matched_names():
    ir = guided.Xml().to_ir()
    names = ir.matched_names
    for changes, message in [(dict(name=len(ir.terminals)), "is not a terminal"),
                             (dict(close_start=names.open_start), "five different terminals"),
                             (dict(name_bytes=frozenset(b"abc")), "misses bytes of the name terminal"),
                             (dict(name_bytes=frozenset({300})), "non-empty frozenset of bytes")]:
        bad = dataclasses.replace(ir, matched_names=dataclasses.replace(names, **changes))
        with pytest.raises(InvalidIR, match=message):
            bad.validate()
    with pytest.raises(InvalidIR, match="ignored terminal"):
        dataclasses.replace(ir, ignore=ir.ignore | {names.name}).validate()
    assert isinstance(ir.validate().matched_names, MatchedNames)


def test_validate_accepts_the_empty_language_and_unreachable_states():
    empty = ByteDFA(np.zeros((1, 256), np.int32), np.zeros(1, bool), 0)
    assert empty.validate() is empty
    rows = np.zeros((4, 256), np.int32)
    rows[1, 97] = 2
    rows[3, 98] = 2  # state 3 is reached by no walk, but can reach acceptance: allowed
    assert ByteDFA(rows, np.array([False, False, True, False]), 1).validate().num_states == 4


# ------------------------------------------------------------------------------------------
# from_bytes refuses everything that is not such IR, with its own error


def _resign(data: bytes) -> bytes:
    """``data`` (header and body, no checksum) with a valid checksum appended."""
    return data + hashlib.blake2b(data, digest_size=32).digest()


def _rewrite(data: bytes, body: bytes, *, compress: bool | None = None, **header) -> bytes:
    """Serialised IR ``data`` with its body replaced (and header fields overridden), re-signed."""
    magic, version, kind, flags, _, _ = serialize._HEADER.unpack_from(data)
    fields = dict(magic=magic, version=version, kind=kind, flags=flags)
    if compress is not None:
        fields["flags"] = serialize.FLAG_ZLIB if compress else 0
    stored = zlib.compress(body) if fields["flags"] & serialize.FLAG_ZLIB else body
    fields.update(stored_len=len(stored), body_len=len(body))
    fields.update(header)
    head = serialize._HEADER.pack(fields["magic"], fields["version"], fields["kind"], fields["flags"],
                                  fields["stored_len"], fields["body_len"])
    return _resign(head + stored)


def _body(data: bytes) -> bytes:
    _, _, _, flags, stored_len, _ = serialize._HEADER.unpack_from(data)
    stored = data[serialize._HEADER.size:serialize._HEADER.size + stored_len]
    return zlib.decompress(stored) if flags & serialize.FLAG_ZLIB else stored


def _refused(data: bytes, **kw) -> InvalidIR:
    with pytest.raises(InvalidIR) as info:
        serialize.from_bytes(data, **kw)
    assert info.value.__cause__ is None, f"only the last-resort guard caught it: {info.value}"
    return info.value


@pytest.fixture(scope="module")
def small_bytes():
    return _small().to_bytes()


def test_every_truncation_and_extension_is_refused(small_bytes):
    for n in range(len(small_bytes)):
        _refused(small_bytes[:n])
    _refused(small_bytes + b"\0")


def test_every_flipped_byte_is_refused(small_bytes):
    rng = random.Random(0)
    for i in range(len(small_bytes)):
        flipped = bytearray(small_bytes)
        flipped[i] ^= rng.randrange(1, 256)
        _refused(bytes(flipped))


def test_header_fields_are_checked(small_bytes):
    body = _body(small_bytes)
    assert "version 9" in str(_refused(_rewrite(small_bytes, body, version=9)))
    assert "magic" in str(_refused(_rewrite(small_bytes, body, magic=b"GUIDEDIR")))
    assert "kind 7" in str(_refused(_rewrite(small_bytes, body, kind=7)))
    assert "flags" in str(_refused(_rewrite(small_bytes, body, flags=4)))
    assert "missing fields" in str(_refused(_rewrite(small_bytes, body, kind=serialize.KIND_DFA)))
    assert "limit" in str(_refused(small_bytes, max_body=16))
    with pytest.raises(InvalidIR, match="not a ByteDFA"):
        ByteDFA.from_bytes(small_bytes)


def test_bodies_that_inflate_otherwise_than_announced_are_refused(small_bytes):
    body = _body(small_bytes)
    _refused(_rewrite(small_bytes, body, compress=True, body_len=len(body) - 1))
    _refused(_rewrite(small_bytes, body, compress=True, body_len=len(body) + 1))
    bomb = zlib.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in a few KiB, announced as 100 bytes
    head = serialize._HEADER.pack(serialize.MAGIC, serialize.FORMAT_VERSION, serialize.KIND_CFG,
                                  serialize.FLAG_ZLIB, len(bomb), 100)
    _refused(_resign(head + bomb))


def test_malformed_fields_are_refused(small_bytes):
    body = _body(small_bytes)
    good = _rewrite(small_bytes, body, compress=False)
    assert serialize.from_bytes(good).to_bytes(compress=False) == good
    ir = serialize.from_bytes(small_bytes)
    ints = _encode_field("start_state", 10 ** 6)
    cases = {
        "unknown field": body + serialize._encode("surprise", 1),
        "repeated field": body + serialize._encode("source", "again"),
        "bad name": body + b"\x03A-B\x01" + struct.pack("<q", 1),
        "unknown type": body + b"\x01z\x09",
        "run past the end": body + b"\x01z\x03\x03\x01" + struct.pack("<Q", 1 << 40),
        "bad dtype": body + b"\x01z\x03\x09\x01" + struct.pack("<Q", 0),
        "state out of range": body.replace(_encode_field("start_state", ir.start_state), ints),
        "wrong type": body.replace(_encode_field("source", ir.source), serialize._encode("source", 5)),
    }
    for what, mutated in cases.items():
        assert mutated != body, what
        _refused(_rewrite(small_bytes, mutated, compress=False))


def _encode_field(name: str, value) -> bytes:
    return serialize._encode(name, value)


def test_random_mutations_of_a_signed_body_are_refused_or_valid():
    """Mutations that keep the checksum right reach the field parser and the validator: each
    must give InvalidIR or a valid IR (renaming a terminal, say), never another exception."""
    rng = random.Random(1)
    for ir in (_small(), guided.Regex("[a-c]+x?").to_ir(), guided.Xml().to_ir()):
        data = ir.to_bytes(compress=False)
        body = _body(data)
        for _ in range(300):
            mutated = bytearray(body)
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                i = rng.randrange(len(mutated))
                if op < 0.6:
                    mutated[i] = rng.randrange(256)
                elif op < 0.8:
                    del mutated[i:i + rng.randint(1, 16)]
                else:
                    mutated[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            signed = _rewrite(data, bytes(mutated), compress=rng.random() < 0.5)
            try:
                got = serialize.from_bytes(signed)
            except InvalidIR as exc:
                assert exc.__cause__ is None, f"only the last-resort guard caught it: {exc}"
                continue
            got.validate()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused(data):
    _refused(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512), st.sampled_from([serialize.KIND_DFA, serialize.KIND_CFG]), st.booleans())
def test_arbitrary_signed_bodies_are_refused(body, kind, compress):
    stored = zlib.compress(body) if compress else body
    head = serialize._HEADER.pack(serialize.MAGIC, serialize.FORMAT_VERSION, kind,
                                  serialize.FLAG_ZLIB if compress else 0, len(stored), len(body))
    _refused(_resign(head + stored))


def _blocky_dfa(rng: random.Random, n: int) -> ByteDFA:
    """A random byte DFA whose rows are runs of equal targets (as real automata's are)."""
    table = np.zeros((n, 256), np.int32)
    for s in range(1, n):
        cuts = sorted(rng.randrange(257) for _ in range(rng.randrange(6))) + [256]
        lo = 0
        for hi in cuts:
            table[s, lo:hi] = rng.randrange(n) if rng.random() < 0.6 else 0
            lo = hi
    accepting = np.array([s > 0 and rng.random() < 0.3 for s in range(n)])
    return ByteDFA(transitions=table, accepting=accepting, initial=1)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.integers(0, 10 ** 6))
def test_concatenation_and_union_by_embedding_keep_each_part_language(seed):
    """`dfa_ops.embed` (all rows' runs at once) under `concat_dfas`/`union_dfas`: a string is in
    the concatenation iff it splits into parts each accepted, in the union iff one part accepts."""
    from guided.ir import dfa_ops

    rng = random.Random(seed)
    a, b = _blocky_dfa(rng, rng.randrange(2, 7)), _blocky_dfa(rng, rng.randrange(2, 7))
    cat, union = dfa_ops.concat_dfas([a, b]), dfa_ops.union_dfas([a, b])
    alphabet = sorted({int(x) for x in np.flatnonzero(a.transitions.any(axis=0) | b.transitions.any(axis=0))})[:6] or [0]
    for _ in range(60):
        text = bytes(rng.choice(alphabet) for _ in range(rng.randrange(6)))
        splits = any(a.fullmatch(text[:i]) and b.fullmatch(text[i:]) for i in range(len(text) + 1))
        assert cat.fullmatch(text) == splits, (seed, text)
        assert union.fullmatch(text) == (a.fullmatch(text) or b.fullmatch(text)), (seed, text)
