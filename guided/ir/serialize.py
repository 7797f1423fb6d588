"""The intermediate form as bytes: a versioned, self-describing, checksummed binary format.

A compiled constraint's IR (`ByteDFA` or `CfgIR`) is independent of any vocabulary, so it can be
cached on disk (`guided.compiler`) or shipped to another process.  The bytes are parsed by this
module alone, field by field, then validated (`guided.ir.validate`): no pickle, no ``eval``, no
numpy object arrays.  Anything else than what `to_bytes` writes (truncated, flipped, planted or
random bytes, another version) raises `guided.errors.InvalidIR`, in time linear in its length.

Format (version 1; integers little-endian)
------------------------------------------
=========  ============  ==========================================================================
offset     size          content
=========  ============  ==========================================================================
0          8             magic ``b"\\x89GIR\\r\\n\\x1a\\n"`` (a high byte and both line ends, as PNG:
                         catches text-mode and 7-bit mangling)
8          2 (u16)       format version (`FORMAT_VERSION`)
10         1 (u8)        kind: 1 = `ByteDFA`, 2 = `CfgIR`
11         1 (u8)        flags: bit 0 = the body is zlib-compressed; other bits must be 0
12         8 (u64)       length of the body as stored
20         8 (u64)       length of the body uncompressed
28         stored        the body
28+stored  32            BLAKE2b-256 of every byte before it
=========  ============  ==========================================================================

The body is a sequence of named fields, each: name length (u8), name (ASCII), type (u8), value.
Types: 1 int (i64); 2 str (u32 length, UTF-8); 3 array (u8 dtype: 1 bool, 2 uint8, 3 int32,
4 int64; u8 ndim 1 or 2; u64 per dimension; the elements, C order, little-endian); 4 list of str
(u32 count, then each as a type-2 value).  Each kind has a fixed set of fields (`DFA_FIELDS`,
`CFG_FIELDS`, the optional ``matched_names``/``matched_name_bytes``,
``unique_open_states``/``unique_item_rules``, ``rhs_offsets``/``rhs_symbols``,
``count_bounds``/``count_counted`` and the four ``items_*`` of `ItemCounts`), each once, in any order;
an unknown, missing or repeated field, a wrong type or dtype, or a byte left over is an error.

A `CfgIR` is stored flat: its terminals' DFAs stacked (``dfa_offsets`` says where each starts;
terminals sharing a DFA share it via ``terminal_dfa``), its tables as `FlatTables`' CSR arrays.

>>> import guided
>>> ir = guided.Grammar('start: "a"+').to_ir()
>>> data = to_bytes(ir)
>>> data[:8], from_bytes(data).to_bytes() == data
(b'\\x89GIR\\r\\n\\x1a\\n', True)
>>> from_bytes(guided.Regex("a+").to_ir().to_bytes()[:-1])
Traceback (most recent call last):
  ...
guided.errors.InvalidIR: serialised IR: 112 bytes after the header, expected 113 (truncated or padded)
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any, TypeVar

import numpy as np

from guided.errors import GuidedError, InvalidIR
from guided.ir.cfg import CfgIR, Count, FlatTables, ItemCounts, MatchedNames, Terminal, UniqueItems
from guided.ir.dfa import ByteDFA

MAGIC = b"\x89GIR\r\n\x1a\n"
FORMAT_VERSION = 1
"""Bumped whenever the layout or the meaning of a field changes; older bytes are refused."""

KIND_DFA, KIND_CFG = 1, 2
FLAG_ZLIB = 1
_HEADER = struct.Struct("<8sHBBQQ")
_U32 = struct.Struct("<I")
_DIGEST = 32
MAX_BODY = 1 << 30
"""The largest uncompressed body `from_bytes` accepts by default (a guard against zlib bombs)."""

_INT, _STR, _ARRAY, _STRS = 1, 2, 3, 4
_DTYPES = {1: np.dtype(np.bool_), 2: np.dtype(np.uint8), 3: np.dtype("<i4"), 4: np.dtype("<i8")}
_DTYPE_CODES = {dt: code for code, dt in _DTYPES.items()}

DFA_FIELDS = {"transitions": (_ARRAY, "<i4", 2), "accepting": (_ARRAY, "bool", 1), "initial": (_INT,)}
CFG_FIELDS = {
    "terminal_names": (_STRS,),
    "terminal_priority": (_ARRAY, "<i8", 1),
    "terminal_is_string": (_ARRAY, "bool", 1),
    "terminal_order": (_ARRAY, "<i8", 1),
    "terminal_dfa": (_ARRAY, "<i4", 1),  # terminal -> its DFA among the stacked ones
    "dfa_offsets": (_ARRAY, "<i8", 1),  # DFA d is rows dfa_offsets[d] .. dfa_offsets[d + 1]
    "dfa_transitions": (_ARRAY, "<i4", 2),  # each DFA's own state numbers
    "dfa_accepting": (_ARRAY, "bool", 1),
    "dfa_initial": (_ARRAY, "<i4", 1),
    "ignore": (_ARRAY, "<i4", 1),
    "action_offsets": (_ARRAY, "<i8", 1),
    "action_symbols": (_ARRAY, "<i4", 1),
    "action_values": (_ARRAY, "<i4", 1),
    "goto_offsets": (_ARRAY, "<i8", 1),
    "goto_symbols": (_ARRAY, "<i4", 1),
    "goto_values": (_ARRAY, "<i4", 1),
    "rule_lhs": (_ARRAY, "<i4", 1),
    "rule_len": (_ARRAY, "<i4", 1),
    "nonterminals": (_STRS,),
    "rule_names": (_STRS,),
    "start_state": (_INT,),
    "end_state": (_INT,),
    "source": (_STR,),
    "ignore_repeats": (_INT,),
    "no_ignore_states": (_ARRAY, "<i4", 1),
    "nesting_states": (_ARRAY, "<i4", 1),
    "max_nesting": (_INT,),
}
# (name, open_start, open_end, empty_end, close_start, unique_attributes); both or neither present.
NAMES_FIELDS = {"matched_names": (_ARRAY, "<i8", 1), "matched_name_bytes": (_ARRAY, "uint8", 1)}
# `UniqueItems`: its open states and item rules, sorted; both or neither present.
UNIQUE_FIELDS = {"unique_open_states": (_ARRAY, "<i4", 1), "unique_item_rules": (_ARRAY, "<i4", 1)}
# `CfgIR.earley` (rule 10): rule r's right-hand side is rhs_symbols[rhs_offsets[r]:rhs_offsets[r + 1]];
# both present exactly when earley is True.
EARLEY_FIELDS = {"rhs_offsets": (_ARRAY, "<i8", 1), "rhs_symbols": (_ARRAY, "<i4", 1)}
# Counted terminals (rule 11): rows (terminal, min, max or -1); their counted transitions, each
# terminal's DFA rows in count_bounds order.
COUNT_FIELDS = {"count_bounds": (_ARRAY, "<i8", 2), "count_counted": (_ARRAY, "bool", 2)}
# `ItemCounts` (rule 12): rows (open state, min, max or -1), then its item rules, separator and
# close states, sorted; all four or none.
ITEMS_FIELDS = {"items_bounds": (_ARRAY, "<i8", 2), "items_rules": (_ARRAY, "<i4", 1),
                "items_separator_states": (_ARRAY, "<i4", 1), "items_close_states": (_ARRAY, "<i4", 1)}

IR = TypeVar("IR", ByteDFA, CfgIR)


# ----------------------------------------------------------------------------------------------
# Writing


def to_bytes(ir: ByteDFA | CfgIR, *, compress: bool = True) -> bytes:
    """``ir`` in the format of the module docstring (deterministic: equal IR, equal bytes)."""
    if isinstance(ir, ByteDFA):
        kind, fields = KIND_DFA, _dfa_fields(ir)
    elif isinstance(ir, CfgIR):
        kind, fields = KIND_CFG, _cfg_fields(ir)
    else:
        raise TypeError(f"to_bytes takes a ByteDFA or a CfgIR, not a {type(ir).__name__}")
    body = b"".join(_encode(name, value) for name, value in fields.items())
    stored = zlib.compress(body, 6) if compress else body
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, kind, FLAG_ZLIB if compress else 0, len(stored), len(body))
    digest = hashlib.blake2b(header + stored, digest_size=_DIGEST).digest()
    return header + stored + digest


def _dfa_fields(dfa: ByteDFA) -> dict[str, Any]:
    return {"transitions": dfa.transitions, "accepting": dfa.accepting, "initial": int(dfa.initial)}


def _cfg_fields(ir: CfgIR) -> dict[str, Any]:
    dfas: dict[int, int] = {}
    stacked: list[ByteDFA] = []
    for t in ir.terminals:
        if id(t.dfa) not in dfas:
            dfas[id(t.dfa)] = len(stacked)
            stacked.append(t.dfa)
    offsets = np.zeros(len(stacked) + 1, np.int64)
    np.cumsum([d.num_states for d in stacked], out=offsets[1:])
    out: dict[str, Any] = {
        "terminal_names": [t.name for t in ir.terminals],
        "terminal_priority": np.array([t.priority for t in ir.terminals], np.int64),
        "terminal_is_string": np.array([t.is_string for t in ir.terminals], bool),
        "terminal_order": np.array([t.order for t in ir.terminals], np.int64),
        "terminal_dfa": np.array([dfas[id(t.dfa)] for t in ir.terminals], np.int32),
        "dfa_offsets": offsets,
        "dfa_transitions": (np.concatenate([d.transitions for d in stacked]) if stacked
                            else np.zeros((0, 256), np.int32)),
        "dfa_accepting": np.concatenate([d.accepting for d in stacked]) if stacked else np.zeros(0, bool),
        "dfa_initial": np.array([d.initial for d in stacked], np.int32),
        "ignore": np.array(sorted(ir.ignore), np.int32),
        **ir.flat.arrays(),
        "nonterminals": list(ir.nonterminals),
        "rule_names": list(ir.rule_names),
        "start_state": int(ir.start_state),
        "end_state": int(ir.end_state),
        "source": ir.source,
        "ignore_repeats": int(ir.ignore_repeats),
        "no_ignore_states": np.array(sorted(ir.no_ignore_states), np.int32),
        "nesting_states": np.array(sorted(ir.nesting_states), np.int32),
        "max_nesting": int(ir.max_nesting),
    }
    if ir.earley:
        out["rhs_offsets"] = np.cumsum([0] + [len(rhs) for rhs in ir.rule_rhs], dtype=np.int64)
        out["rhs_symbols"] = np.array([s for rhs in ir.rule_rhs for s in rhs], np.int32)
    names = ir.matched_names
    if names is not None:
        out["matched_names"] = np.array([names.name, names.open_start, names.open_end, names.empty_end,
                                         names.close_start, int(names.unique_attributes)], np.int64)
        out["matched_name_bytes"] = np.array(sorted(names.name_bytes), np.uint8)
    unique = ir.unique_items
    if unique is not None:
        out["unique_open_states"] = np.array(sorted(unique.open_states), np.int32)
        out["unique_item_rules"] = np.array(sorted(unique.item_rules), np.int32)
    items = ir.item_counts
    if items is not None:
        out["items_bounds"] = np.array([(q, lo, -1 if hi is None else hi) for q, lo, hi in sorted(items.bounds)],
                                       np.int64).reshape(-1, 3)
        out["items_rules"] = np.array(sorted(items.item_rules), np.int32)
        out["items_separator_states"] = np.array(sorted(items.separator_states), np.int32)
        out["items_close_states"] = np.array(sorted(items.close_states), np.int32)
    counted = [(i, t.count) for i, t in enumerate(ir.terminals) if t.count is not None]
    if counted:
        out["count_bounds"] = np.array([(i, c.min, -1 if c.max is None else c.max) for i, c in counted], np.int64)
        out["count_counted"] = np.concatenate([c.counted for _, c in counted])  # each terminal's DFA rows
    return out


def _encode(name: str, value: Any) -> bytes:
    head = bytes([len(name)]) + name.encode("ascii")
    if isinstance(value, (bool, int, np.integer)):
        return head + bytes([_INT]) + struct.pack("<q", int(value))
    if isinstance(value, str):
        data = value.encode("utf-8")
        return head + bytes([_STR]) + struct.pack("<I", len(data)) + data
    if isinstance(value, list):
        parts = [struct.pack("<I", len(value))]
        for s in value:
            data = s.encode("utf-8")
            parts += [struct.pack("<I", len(data)), data]
        return head + bytes([_STRS]) + b"".join(parts)
    arr = np.ascontiguousarray(value)
    dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    code = _DTYPE_CODES[np.dtype(dtype)]
    shape = struct.pack(f"<{arr.ndim}Q", *arr.shape)
    return head + bytes([_ARRAY, code, arr.ndim]) + shape + arr.astype(_DTYPES[code], copy=False).tobytes()


# ----------------------------------------------------------------------------------------------
# Reading


def from_bytes(data: bytes, *, expect: type[IR] | None = None, max_body: int = MAX_BODY) -> Any:
    """The IR serialised in ``data``, validated (`ByteDFA.validate` / `CfgIR.validate`).

    ``expect``: the class the caller wants (`ByteDFA` or `CfgIR`); another kind is an error.
    ``max_body``: refuse bodies larger than this uncompressed.
    Raises `guided.errors.InvalidIR` for anything that is not such IR.
    """
    try:
        return _from_bytes(memoryview(data).cast("B"), expect, max_body)
    except GuidedError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError, struct.error, zlib.error) as exc:
        # A guard: each check below raises InvalidIR itself; reaching here is a gap in them.
        raise InvalidIR(f"serialised IR: unreadable ({type(exc).__name__}: {exc})") from exc


def _from_bytes(data: memoryview, expect: type | None, max_body: int) -> Any:
    if not isinstance(data, memoryview) or data.nbytes < _HEADER.size + _DIGEST:
        raise InvalidIR(f"serialised IR: {data.nbytes} bytes, shorter than a header and a checksum")
    magic, version, kind, flags, stored_len, body_len = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise InvalidIR("serialised IR: wrong magic number (not guided IR, or mangled)")
    if version != FORMAT_VERSION:
        raise InvalidIR(f"serialised IR: format version {version}, this guided reads version {FORMAT_VERSION}")
    if kind not in (KIND_DFA, KIND_CFG):
        raise InvalidIR(f"serialised IR: unknown kind {kind}")
    if flags & ~FLAG_ZLIB:
        raise InvalidIR(f"serialised IR: unknown flags {flags:#x}")
    rest = data.nbytes - _HEADER.size
    if stored_len + _DIGEST != rest:
        raise InvalidIR(f"serialised IR: {rest} bytes after the header, expected {stored_len + _DIGEST} "
                        f"(truncated or padded)")
    if body_len > max_body:
        raise InvalidIR(f"serialised IR: a body of {body_len} bytes, more than the limit of {max_body}")
    end = _HEADER.size + stored_len
    if hashlib.blake2b(data[:end], digest_size=_DIGEST).digest() != bytes(data[end:]):
        raise InvalidIR("serialised IR: checksum mismatch (corrupted or tampered with)")
    stored = data[_HEADER.size:end]
    if flags & FLAG_ZLIB:
        inflate = zlib.decompressobj()
        body = inflate.decompress(stored, body_len)
        if len(body) != body_len or inflate.unconsumed_tail or not inflate.eof or inflate.unused_data:
            raise InvalidIR(f"serialised IR: the compressed body does not inflate to the {body_len} bytes announced")
    else:
        if stored_len != body_len:
            raise InvalidIR("serialised IR: stored and uncompressed lengths differ in an uncompressed body")
        body = bytes(stored)
    fields = _parse_fields(memoryview(body))
    want = ByteDFA if kind == KIND_DFA else CfgIR
    if expect is not None and expect is not want:
        raise InvalidIR(f"serialised IR holds a {want.__name__}, not a {expect.__name__}")
    if kind == KIND_DFA:
        _check_fields(fields, DFA_FIELDS, {})
        return ByteDFA(fields["transitions"], fields["accepting"], fields["initial"]).validate()
    _check_fields(fields, CFG_FIELDS, NAMES_FIELDS, UNIQUE_FIELDS, EARLEY_FIELDS, COUNT_FIELDS, ITEMS_FIELDS)
    return _build_cfg(fields).validate()


class _Reader:
    """Bounds-checked reads from the body."""

    def __init__(self, body: memoryview):
        self.body = body
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > self.body.nbytes:
            raise InvalidIR(f"serialised IR: {what} runs past the end of the body (at byte {self.pos})")
        out = self.body[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        s = struct.Struct(fmt)
        return s.unpack(self.take(s.size, what))

    def text(self, what: str) -> str:
        """One string: u32 length, UTF-8 bytes."""
        return self.texts(1, what)[0]

    def texts(self, count: int, what: str) -> list[str]:
        """``count`` strings, read in one loop (rule names are many)."""
        body, pos, end = self.body, self.pos, self.body.nbytes
        out = []
        for _ in range(count):
            if pos + 4 > end:
                raise InvalidIR(f"serialised IR: {what} runs past the end of the body (at byte {pos})")
            (n,) = _U32.unpack_from(body, pos)
            pos += 4
            if pos + n > end:
                raise InvalidIR(f"serialised IR: {what} runs past the end of the body (at byte {pos})")
            try:
                out.append(str(body[pos:pos + n], "utf-8"))
            except UnicodeDecodeError:
                raise InvalidIR(f"serialised IR: {what} is not UTF-8") from None
            pos += n
        self.pos = pos
        return out


def _parse_fields(body: memoryview) -> dict[str, Any]:
    r = _Reader(body)
    fields: dict[str, Any] = {}
    while r.pos < body.nbytes:
        (n,) = r.unpack("<B", "a field name")
        raw = bytes(r.take(n, "a field name"))
        if not raw or not all(0x61 <= c <= 0x7A or c == 0x5F for c in raw):
            raise InvalidIR(f"serialised IR: bad field name {raw[:40]!r} at byte {r.pos - n}")
        name = raw.decode("ascii")
        if name in fields:
            raise InvalidIR(f"serialised IR: field {name} appears twice")
        (kind,) = r.unpack("<B", f"field {name}")
        if kind == _INT:
            fields[name] = (_INT, r.unpack("<q", f"field {name}")[0])
        elif kind == _STR:
            fields[name] = (_STR, r.text(f"field {name}"))
        elif kind == _STRS:
            (count,) = r.unpack("<I", f"field {name}")
            if count * 4 > body.nbytes - r.pos:
                raise InvalidIR(f"serialised IR: field {name} announces {count} strings, more than the body holds")
            fields[name] = (_STRS, r.texts(count, f"field {name}"))
        elif kind == _ARRAY:
            code, ndim = r.unpack("<BB", f"field {name}")
            if code not in _DTYPES or ndim not in (1, 2):
                raise InvalidIR(f"serialised IR: field {name} has dtype code {code} and {ndim} dimensions")
            shape = r.unpack(f"<{ndim}Q", f"field {name}")
            if any(d > body.nbytes for d in shape):
                raise InvalidIR(f"serialised IR: field {name} has shape {list(shape)}, larger than the body")
            dtype = _DTYPES[code]
            size = dtype.itemsize
            for d in shape:
                size *= d
            raw_arr = r.take(size, f"field {name}")
            arr = np.frombuffer(raw_arr, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
            if dtype == np.bool_ and raw_arr.nbytes and np.frombuffer(raw_arr, np.uint8).max() > 1:
                raise InvalidIR(f"serialised IR: field {name} holds a bool that is neither 0 nor 1")
            fields[name] = (_ARRAY, arr, dtype.str if dtype != np.bool_ else "bool", ndim)
        else:
            raise InvalidIR(f"serialised IR: field {name} has unknown type {kind}")
    return fields


def _check_fields(fields: dict[str, Any], required: dict[str, tuple], *groups: dict[str, tuple]) -> None:
    """Every required field, each optional group all or none, nothing else; types as declared.
    Replaces each entry by its value."""
    names = set(fields)
    optional = {k: v for group in groups for k, v in group.items()}
    missing = sorted(set(required) - names)
    extra = sorted(names - set(required) - set(optional))
    if missing or extra:
        raise InvalidIR(f"serialised IR: missing fields {missing}, unknown fields {extra}")
    for group in groups:
        present = names & set(group)
        if present and present != set(group):
            raise InvalidIR(f"serialised IR: fields {sorted(group)} come together, got only {sorted(present)}")
    for name, value in fields.items():
        spec = required.get(name) or optional[name]
        if value[0] != spec[0] or (spec[0] == _ARRAY and (value[2], value[3]) != (_norm(spec[1]), spec[2])):
            raise InvalidIR(f"serialised IR: field {name} has the wrong type or shape")
        fields[name] = value[1]
    if "transitions" in fields and fields["transitions"].ndim == 2 and fields["transitions"].shape[1] != 256:
        raise InvalidIR("serialised IR: transitions must have 256 columns")


def _norm(dtype: str) -> str:
    return "bool" if dtype == "bool" else np.dtype(dtype).str


def _build_cfg(f: dict[str, Any]) -> CfgIR:
    n_terms = len(f["terminal_names"])
    for name in ("terminal_priority", "terminal_is_string", "terminal_order", "terminal_dfa"):
        if len(f[name]) != n_terms:
            raise InvalidIR(f"serialised IR: {name} has {len(f[name])} entries for {n_terms} terminals")
    offsets, table, accepting, initial = f["dfa_offsets"], f["dfa_transitions"], f["dfa_accepting"], f["dfa_initial"]
    n_dfas = len(initial)
    if (len(offsets) != n_dfas + 1 or offsets[0] != 0 or (np.diff(offsets) < 1).any()
            or offsets[-1] != len(table) or table.shape[1:] != (256,) or len(accepting) != len(table)):
        raise InvalidIR("serialised IR: dfa_offsets does not split dfa_transitions/dfa_accepting into DFAs")
    dfas = [ByteDFA(np.ascontiguousarray(table[offsets[d]:offsets[d + 1]]), accepting[offsets[d]:offsets[d + 1]].copy(),
                    int(initial[d])) for d in range(n_dfas)]
    which = f["terminal_dfa"]
    if which.size and (which.min() < 0 or which.max() >= n_dfas):
        raise InvalidIR("serialised IR: terminal_dfa names a DFA that is not there")
    terminals = tuple(Terminal(name, dfas[int(d)], int(p), bool(s), int(o)) for name, d, p, s, o in zip(
        f["terminal_names"], which, f["terminal_priority"], f["terminal_is_string"], f["terminal_order"]))
    if "count_bounds" in f:
        bounds, counted = f["count_bounds"], f["count_counted"]
        if bounds.shape[1:] != (3,) or len(set(bounds[:, 0].tolist())) != len(bounds):
            raise InvalidIR("serialised IR: count_bounds must be distinct rows (terminal, min, max)")
        listed = list(terminals)
        at = 0
        for t, lo, hi in bounds.tolist():
            if not 0 <= t < n_terms:
                raise InvalidIR("serialised IR: count_bounds names a terminal that is not there")
            old = listed[t]
            rows = old.dfa.num_states
            if at + rows > len(counted) or counted.shape[1:] != (256,):
                raise InvalidIR("serialised IR: count_counted does not hold the counted terminals' DFA rows")
            listed[t] = Terminal(old.name, old.dfa, old.priority, old.is_string, old.order,
                                 Count(counted[at:at + rows].copy(), int(lo), None if hi == -1 else int(hi)))
            at += rows
        if at != len(counted):
            raise InvalidIR("serialised IR: count_counted holds rows no counted terminal reads")
        terminals = tuple(listed)

    n_rules = len(f["rule_lhs"])
    if len(f["rule_len"]) != n_rules:
        raise InvalidIR("serialised IR: rule_lhs and rule_len differ in length")
    for which_table in ("action", "goto"):
        off, sym, val = (f[f"{which_table}_{x}"] for x in ("offsets", "symbols", "values"))
        if (len(off) < 2 or off[0] != 0 or (np.diff(off) < 0).any() or off[-1] != len(sym) or len(sym) != len(val)):
            raise InvalidIR(f"serialised IR: {which_table}_offsets does not split {which_table}_symbols into rows")
        within = np.ones(max(len(sym) - 1, 0), bool)  # consecutive entries of the same row
        cuts = off[1:-1] - 1
        within[cuts[(cuts >= 0) & (cuts < len(within))]] = False
        if (np.diff(sym)[within] <= 0).any():
            raise InvalidIR(f"serialised IR: a {which_table} row is not sorted by symbol or repeats one")
    if len(f["action_offsets"]) != len(f["goto_offsets"]):
        raise InvalidIR("serialised IR: action and goto tables have different numbers of states")
    flat = FlatTables(**{name: f[name] for name in FlatTables.__dataclass_fields__})
    if f["action_symbols"].size and (f["action_symbols"].min() < 0 or f["action_symbols"].max() > n_terms):
        raise InvalidIR("serialised IR: an action symbol is neither a terminal nor END")
    names = None
    if "matched_names" in f:
        mn, nb = f["matched_names"], f["matched_name_bytes"]
        if len(mn) != 6 or mn[5] not in (0, 1):
            raise InvalidIR("serialised IR: matched_names must hold 5 terminals and a 0/1 flag")
        roles = [int(x) for x in mn[:5]]
        names = MatchedNames(name=roles[0], open_start=roles[1], open_end=roles[2], empty_end=roles[3],
                             close_start=roles[4], name_bytes=frozenset(nb.tolist()), unique_attributes=bool(mn[5]))
    unique = None
    if "unique_open_states" in f:
        unique = UniqueItems(open_states=frozenset(f["unique_open_states"].tolist()),
                             item_rules=frozenset(f["unique_item_rules"].tolist()))
    items = None
    if "items_bounds" in f:
        rows = f["items_bounds"]
        if rows.shape[1:] != (3,) or (rows[:, 2] < -1).any():
            raise InvalidIR("serialised IR: items_bounds must be rows (open state, min, max or -1)")
        items = ItemCounts(bounds=tuple((q, lo, None if hi == -1 else hi) for q, lo, hi in rows.tolist()),
                           item_rules=frozenset(f["items_rules"].tolist()),
                           separator_states=frozenset(f["items_separator_states"].tolist()),
                           close_states=frozenset(f["items_close_states"].tolist()))
    if f["ignore_repeats"] not in (0, 1):
        raise InvalidIR("serialised IR: ignore_repeats must be 0 or 1")
    rule_rhs: tuple[tuple[int, ...], ...] = ()
    if "rhs_offsets" in f:
        off, syms = f["rhs_offsets"], f["rhs_symbols"].tolist()
        if len(off) != n_rules + 1 or off[0] != 0 or (np.diff(off) < 0).any() or off[-1] != len(syms):
            raise InvalidIR("serialised IR: rhs_offsets does not split rhs_symbols into one entry per rule")
        bounds = off.tolist()
        rule_rhs = tuple(tuple(syms[bounds[r]:bounds[r + 1]]) for r in range(n_rules))
    ir = CfgIR(
        terminals=terminals,
        ignore=frozenset(f["ignore"].tolist()),
        actions=flat.rows("action", n_terms),
        gotos=flat.rows("goto", None),
        rules=tuple(zip(f["rule_lhs"].tolist(), f["rule_len"].tolist())),
        nonterminals=tuple(f["nonterminals"]),
        start_state=f["start_state"],
        end_state=f["end_state"],
        source=f["source"],
        rule_names=tuple(f["rule_names"]),
        ignore_repeats=bool(f["ignore_repeats"]),
        no_ignore_states=frozenset(f["no_ignore_states"].tolist()),
        nesting_states=frozenset(f["nesting_states"].tolist()),
        max_nesting=f["max_nesting"],
        matched_names=names,
        unique_items=unique,
        item_counts=items,
        earley="rhs_offsets" in f,
        rule_rhs=rule_rhs,
    )
    ir.__dict__["flat"] = flat  # the cached property, already at hand
    return ir
