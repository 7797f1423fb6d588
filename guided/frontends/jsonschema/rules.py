"""Rule emission: normalised (flat) schemas to the rules of a context-free grammar over terminal
descriptions, and that grammar to `guided.ir.CfgIR` (LALR(1) tables from `guided.ir.lalr`).

Terminals are the lexemes of JSON text under the schema: a string or number with all its
constraints, an object key *with* its colon (``"name" :``), punctuation; the emitter names them by
description (`guided.frontends.jsonschema.terminals`), ``T0``, ``T1``, ... in the order they are
first used.  Whitespace between lexemes is one ignored terminal of at most ``max_whitespace`` bytes
that may not follow itself, so every run is bounded and a model can never loop on it.
Nonterminals carry the structure: objects as a chain over their properties in schema order, arrays
as a chain over item counts (past `COUNTED_ITEMS_FROM` items, a list whose bounds the engine counts:
`guided.ir.ItemCounts`), unions as alternatives, ``$ref`` cycles as recursion; open-ended values
are one recursive rule set whose nesting the engine bounds (`CfgIR.max_nesting`).

Soundness does not depend on the grammar being conflict-free: conflicts are resolved (shift over
reduce; earlier rule over later), which can only *lose* documents, never admit one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Literal

from guided.errors import GuidedError, LimitExceeded, RegexError
from guided.frontends.jsonschema import _strings
from guided.frontends.jsonschema.errors import SchemaTooLarge, UnsupportedSchema
from guided.frontends.jsonschema.normalise import (
    ANNOTATIONS,
    ANY,
    ArrayPart,
    Flat,
    NamePattern,
    Normaliser,
    SomeKey,
    json_equal,
    plain_schema,
)
from guided.frontends.jsonschema.options import Options
from guided.frontends.jsonschema.terminals import (
    ANY_NUMBER,
    ANY_STRING,
    BOOLEAN,
    NULL,
    Description,
    StringSpec,
    Terminals,
    key_type,
    number_key,
    union,
    ws_dfa,
)
from guided.ir import CfgIR, ItemCounts, Terminal, UniqueItems
from guided.ir import dfa_ops as _dfa
from guided.ir.lalr import Tables, lalr_tables

_EMPTY_SCHEMA: dict = {}  # one object: schemas are memoised by identity
MAX_WITNESSES = 6  # keys one object must have (negated object keywords): 2**n flags and value cases
# Item bounds (minItems/maxItems) past this many positions (or past max_repeat, if lower) are
# counted at run time (`guided.ir.ItemCounts`, the Python engine) instead of unrolled into one
# grammar position per item (exact masks on either engine, but compile time superlinear in the bound).
COUNTED_ITEMS_FROM = 256  # (max_repeat's default: what compiled before keeps its grammar and engine)
MAX_ANY_ORDER = 8  # defined properties of one object in property_order="any": 2**n states
MAX_INLINED = 8  # alternatives of a property's value written out in the object's rules (`inlined`)
MAX_ATOMS = 16  # pieces one group of overlapping terminals is split into (`refine_overlaps`)
REFINE_ROUNDS = 3  # splits, each after new tables (a split key exposes the values after it)
REFINE_GROWTH = 1.0  # rules all splits together may add, as a fraction of the grammar's own
REFINE_UP_TO = 2_000  # rules of the largest grammar split at all (past it, tables take seconds)


class Grammar:
    """The rules under construction, and the terminal descriptions they use (by name)."""

    def __init__(self, opts: Options):
        self.opts = opts
        self.term_index: dict[tuple, str] = {}
        self.term_keys: list[tuple] = []
        self.rules: list[tuple[str, tuple[str, ...]]] = []
        self.rule_set: set = set()
        self.nt_count = 0
        self.open_containers: tuple[str, ...] = ()  # the open value's object and array symbols
        # uniqueItems checked at run time: the rules of such arrays ("[" and the items) and of
        # their items (one wrapper rule per item symbol), see `guided.ir.UniqueItems`
        self.unique_open_rules: set[tuple[str, tuple[str, ...]]] = set()
        self.unique_item_rules: set[tuple[str, tuple[str, ...]]] = set()
        self.unique_wrappers: dict[str, str] = {}
        self.unique_pointers: dict[tuple[str, tuple[str, ...]], str] = {}
        # minItems/maxItems counted at run time (`guided.ir.ItemCounts`), one entry per array
        self.counted_arrays: list[CountedArray] = []

    def nt(self, hint: str = "n") -> str:
        self.nt_count += 1
        return f"{hint}_{self.nt_count}"

    def rule(self, lhs: str, rhs: tuple[str, ...], pointer: str = "") -> None:
        key = (lhs, rhs)
        if key in self.rule_set:
            return
        self.rule_set.add(key)
        self.rules.append(key)
        if len(self.rules) > self.opts.max_rules:
            raise SchemaTooLarge(pointer, f"the grammar needs more than {self.opts.max_rules} rules "
                                          f"(raise max_rules=, or simplify this part of the schema)")
        if len(self.rules) % 64 == 0:
            self.opts.check_time(pointer)

    def unique_item(self, sym: str | None, pointer: str = "") -> str | None:
        """The item symbol ``sym`` wrapped in a rule of its own, whose reductions rule 9 checks
        (`guided.ir.UniqueItems`).  One wrapper per symbol: arrays of the same items in one
        parser context (alternatives) then share it rather than collide on two wrappers."""
        if sym is None:
            return None
        wrapped = self.unique_wrappers.get(sym)
        if wrapped is None:
            wrapped = self.unique_wrappers[sym] = self.nt("uitem")
            self.rule(wrapped, (sym,), pointer)
            self.unique_item_rules.add((wrapped, (sym,)))
            self.unique_pointers[(wrapped, (sym,))] = pointer
        return wrapped

    def term(self, key: tuple) -> str:
        name = self.term_index.get(key)
        if name is None:
            name = self.term_index[key] = f"T{len(self.term_keys)}"
            self.term_keys.append(key)
        return name

    @staticmethod
    def is_terminal(symbol: str) -> bool:
        return symbol.startswith("T") and symbol[1:].isdigit()

    def terminal_ids(self) -> dict[str, int]:
        """Each terminal's name and its index (the order of `term_keys`)."""
        return {f"T{i}": i for i in range(len(self.term_keys))}

    def productive_rules(self) -> list[tuple[str, tuple[str, ...]]]:
        """The rules whose every symbol derives some terminal string (empty languages pruned)."""
        return productive_rules(self.rules, self.is_terminal)


class RuleEmitter:
    """Emits the grammar of one root schema, normalising each subschema as it reaches it."""

    def __init__(self, root: Any, opts: Options, resources: dict | None = None):
        self.opts = opts
        self.root = root
        self.t = Terminals(opts)
        self.n = Normaliser(root, opts, self.t, resources)
        self.g = Grammar(opts)
        self.memo: dict[Any, tuple] = {}
        self.referenced: set[str] = set()
        # The nonterminal of a value() in progress, by schema identity.
        self.in_progress: dict[Any, Any] = {}
        self.where = "#"  # the pointer of the value being compiled, for errors
        self.nesting = 0  # value() calls in progress
        self.any_sym: str | None = None
        self.alternatives: dict[tuple, str] = {}
        self.members: dict[str, list[str]] = {}  # an alternatives symbol (`one`, `any_value`): its symbols
        self.ir: CfgIR | None = None  # the result, once compiled

    @property
    def relaxed(self) -> list[str]:
        """Every keyword relaxed so far (lenient mode), as ``pointer: keyword: reason``."""
        return self.n.relaxed

    def value(self, node, resolver, ptr: str) -> list:
        """Grammar alternatives for a JSON value matching ``node``: list of symbols (terminals merged)."""
        self.where = ptr or "#"
        key = None
        # A bare reference stands for its target: follow chains of them in a loop (a chain of
        # thousands would otherwise be as many nested calls).  One that comes back to itself
        # never reaches a schema.
        chain: set[int] = set()
        while isinstance(node, dict):
            if not ("$ref" in node and (self.n.old_ref or all(k in ANNOTATIONS or k == "$ref" for k in node))):
                break  # `Normaliser.flat` enters the node's own base URI (once: an "$id" may be relative)
            if id(node) in chain:
                raise UnsupportedSchema(ptr, "$ref", "circular reference with no schema in between")
            chain.add(id(node))
            resolved = self.n.lookup(self.n.enter(node, resolver, ptr), node["$ref"], ptr)
            if len(chain) % 256 == 0:
                self.opts.check_time(ptr)
            node, resolver, ptr = resolved.contents, resolved.resolver, f"{ptr}/$ref"
        if isinstance(node, dict):
            key = ("node", id(node))
            hit = self.memo.get(key)
            if hit is not None:
                return hit[1]
            if key in self.in_progress:
                nt = self.in_progress[key]
                self.referenced.add(nt)
                return [nt]
        elif node is True:
            # As ``{}``: its own container counts towards ``max_depth`` like any schema's.
            return self.value(_EMPTY_SCHEMA, resolver, ptr)
        elif node is False:
            return []
        nt = self.g.nt("v")
        if key is not None:
            self.in_progress[key] = nt
        # Recursion is caught by node identity; a cycle that rebuilds its nodes on the way (a
        # $ref under a oneOf merge, say) would expand forever, so nesting is bounded as well.
        self.nesting += 1
        try:
            if self.nesting > self.opts.max_nesting:
                raise SchemaTooLarge(ptr, f"subschemas nest more than max_nesting={self.opts.max_nesting} levels "
                                          f"(or recurse in a way that "
                                          f"guided does not recognise as recursion)")
            alts = self.n.flat(node, resolver, ptr)
            syms = self.alts_symbols(alts, ptr)
        finally:
            self.nesting -= 1
            if key is not None:
                del self.in_progress[key]
        if nt in self.referenced:
            for s in syms:
                self.g.rule(nt, (s,), ptr)
            syms = [nt] if syms else []
        if key is not None:
            self.memo[key] = (node, syms)
        return syms

    def alts_symbols(self, alts: list[Flat], ptr: str) -> list:
        term_keys: list[tuple] = []
        nts: list[str] = []
        for flat in alts:
            tk, ns = self.flat_value(flat)
            term_keys.extend(tk)
            nts.extend(ns)
        out = []
        # A long plain string among other types stays a terminal of its own, so that its
        # length is counted (`Terminals.counted`) rather than unrolled inside the union's
        # automaton; the alternatives lead to the same value either way.
        counted = [k for k in dict.fromkeys(term_keys) if self.t.counted(k, ptr) is not None]
        term_keys = [k for k in term_keys if k not in counted]
        if term_keys:
            key = union(term_keys)
            if not self.t.is_empty(key, ptr):
                out.append(self.g.term(key))
        out.extend(self.g.term(k) for k in counted)
        out.extend(dict.fromkeys(nts))
        return out

    def flat_value(self, flat: Flat) -> tuple[list, list]:
        """(terminal descriptions, nonterminal symbols) for one flat schema."""
        if flat.enumerated:
            return self.finite(flat)
        types = self.n.types_of(flat)
        nots = flat.negated
        terms: list[Description] = []
        nts: list[str] = []
        for t in ("null", "boolean", "string", "number", "object", "array"):
            if t == "number" and not ({"number", "integer"} & types):
                continue
            if t != "number" and t not in types:
                continue
            if t in ("object", "array"):
                sym = self.object_value(flat) if t == "object" else self.array_value(flat)
                if sym is not None:
                    nts.append(sym)
                continue
            key = self.n.scalar_key(flat, t, types)
            if key is None:
                continue
            if key is ANY:
                key = {"null": NULL, "boolean": BOOLEAN, "string": ANY_STRING, "number": ANY_NUMBER}[t]
            for nf in nots:
                nk = self.not_key(nf, t)
                if nk is None:
                    continue
                if nk is ANY:
                    key = None
                    break
                key = ("minus", key, nk)
            if key is not None:
                terms.append(key)
        return terms, nts

    def not_key(self, a: Flat, t: str):
        """Terminal description of the values of scalar type ``t`` matching flat ``a`` (None: none; ANY: all)."""
        types = self.n.types_of(a) & ({"number", "integer"} if t == "number" else {t})
        if not types:
            return None
        if a.enumerated:  # the values are checked against the negations too
            tk, _ = self.finite(a)
            keys = [k for k in tk if key_type(k) == t]
            if not keys:
                return None
            return union(keys)
        key = self.n.scalar_key(a, t, self.n.types_of(a))
        if a.negated and key is not None:
            # a negation inside the negated schema: its values taken away (exact: the same
            # difference flat_value takes)
            if key is ANY:
                key = {"null": NULL, "boolean": BOOLEAN, "string": ANY_STRING, "number": ANY_NUMBER}[t]
            for nf in a.negated:
                nk = self.not_key(nf, t)
                if nk is ANY:
                    return None
                if nk is not None:
                    key = ("minus", key, nk)
        return key

    def finite(self, flat: Flat) -> tuple[list, list]:
        """(terminal descriptions, nonterminal symbols) for a flat schema's ``enum``/``const``."""
        ptr = flat.pointer
        keep = self.n.enum_kept(flat)
        # Under drafts 3 and 4 a value typed "integer" (not "number") may not be written 1.0.
        declared = flat.declared_types
        integer_only = not self.opts.int_fraction and "integer" in declared and "number" not in declared
        terms: list[Description] = []
        nts: list[str] = []
        for v in keep:
            if v is None:
                terms.append(NULL)
            elif isinstance(v, bool):
                terms.append(("lit", b"true" if v else b"false"))
            elif isinstance(v, (int, float)):
                terms.append(number_key(v, integer_only, typed=not self.opts.int_fraction))
            elif isinstance(v, str):
                terms.append(("strlit", v))
            elif isinstance(v, list):
                node = {"type": "array", "prefixItems": [{"const": x} for x in v], "items": False,
                        "minItems": len(v)}
                sym = self.array_value(Flat(node, flat.resolver, ptr))
                if sym:
                    nts.append(sym)
            elif isinstance(v, dict):
                node = {"type": "object", "properties": {k: {"const": x} for k, x in v.items()},
                        "required": list(v), "additionalProperties": False}
                sym = self.object_value(Flat(node, flat.resolver, ptr))
                if sym:
                    nts.append(sym)
        return terms, nts

    def any_value(self) -> str:
        """Any JSON value inside a schema's container, nested at most ``max_depth - 1`` levels.

        One recursive rule set: the bound is not in the rules but in the IR (`_opening_states`),
        which the engine enforces on the parser stack.
        """
        if self.any_sym is not None:
            return self.any_sym
        g = self.g
        sym = self.any_sym = g.nt("any")
        scalars = g.term(union([NULL, BOOLEAN, ANY_STRING, ANY_NUMBER]))
        g.rule(sym, (scalars,))
        if self.opts.max_depth > 1:
            inner = sym
            obj, arr = g.nt("anyobj"), g.nt("anyarr")
            g.open_containers = (obj, arr)
            more_o, more_a = g.nt("anyobj_more"), g.nt("anyarr_more")
            key = g.term(("key", ANY_STRING))
            ob, cb, lb, rb, comma = (g.term(("lit", b"{")), g.term(("lit", b"}")), g.term(("lit", b"[")),
                                     g.term(("lit", b"]")), g.term(("lit", b",")))
            g.rule(obj, (ob, cb))
            g.rule(obj, (ob, key, inner, more_o))
            g.rule(more_o, (cb,))
            g.rule(more_o, (comma, key, inner, more_o))
            g.rule(arr, (lb, rb))
            g.rule(arr, (lb, inner, more_a))
            g.rule(more_a, (rb,))
            g.rule(more_a, (comma, inner, more_a))
            g.rule(sym, (obj,))
            g.rule(sym, (arr,))
            self.members[sym] = [scalars, obj, arr]
        else:
            self.members[sym] = [scalars]
        return sym

    def one(self, syms: list, ptr: str) -> str | None:
        """A single symbol for a list of alternatives."""
        if not syms:
            return None
        if len(syms) == 1:
            return syms[0]
        # Equal alternatives share one symbol: two symbols deriving the same text in one parser
        # context would be a reduce/reduce conflict, which would drop one of them.
        key = tuple(syms)
        nt = self.alternatives.get(key)
        if nt is None:
            nt = self.alternatives[key] = self.g.nt("alt")
            self.members[nt] = list(syms)
            for s in syms:
                self.g.rule(nt, (s,), ptr)
        return nt

    def inlined(self, sym: str) -> list[str]:
        """The symbols an alternatives symbol stands for, nested ones flattened (at most
        `MAX_INLINED`; else ``[sym]``).  A property's value written as each of them in the object's
        rules: a terminal among them is then shifted where it is read, with no reduction to the
        alternatives symbol first, so that two objects of a union reading the same terminal there
        go on side by side instead of meeting in a conflict that keeps one."""
        out: list[str] = []
        todo = [sym]
        while todo:
            s = todo.pop(0)
            if s in self.members:
                todo[:0] = self.members[s]
            elif s not in out:
                out.append(s)
            if len(out) + len(todo) > MAX_INLINED:
                return [sym]
        return out

    def object_value(self, flat: Flat) -> str | None:
        g, ptr, res = self.g, flat.pointer, flat.resolver
        part = flat.object_part()
        props_schema = part.properties
        required = list(part.required)
        patterns = part.pattern_properties
        additional = part.additional
        # Closed by the option (generation's default), an object still holds the keys its schema
        # names: a required key without a property schema takes any value (else nothing fits).
        named_any = additional is None and self.opts.closed
        if additional is None:
            additional = False if self.opts.closed else True
        names = list(props_schema)
        depends = part.depends
        for r in required + [n for name, needed in depends for n in (name, *needed)]:
            if r not in names:
                names.append(r)
        pnames = part.property_names
        min_p, max_p = part.min_properties, part.max_properties
        if max_p is not None and max_p < min_p:
            return None
        compiled_patterns = [NamePattern(p, self.opts.max_states) for p in patterns]
        # Keys the object must have (each a negated additionalProperties, patternProperties or
        # propertyNames): the rules carry a flag per witness, set by a key of its region whose
        # value matches `SomeKey.value`; the region's other keys match `SomeKey.other` (so that
        # the cases never overlap).  The object closes only once every flag is set.
        some = part.witnesses
        if len(some) > MAX_WITNESSES:
            self.n.unsupported(ptr, "not", f"more than {MAX_WITNESSES} negated 'additionalProperties', "
                                           f"'patternProperties' or 'propertyNames' on one object")
            some = ()
        witnesses = [SomeRegion(sk, self, res, ptr) for sk in some]
        full = (1 << len(witnesses)) - 1

        def choices(inside: list[int]):
            """(extra schemas, flags set) for a value whose key lies in the regions ``inside``."""
            for chosen in range(1 << len(inside)):
                extra, flags = [], 0
                for bit, j in enumerate(inside):
                    if chosen >> bit & 1:
                        extra.append(witnesses[j].some.value)
                        flags |= 1 << j
                    else:
                        extra.append(witnesses[j].some.other)
                yield extra, flags

        # defined properties: (name, required, [(value symbol, flags it sets)])
        defined = []
        for name in names:
            parts = []
            if name in props_schema:
                parts.append(props_schema[name])
            for p, rx in zip(patterns, compiled_patterns):
                try:
                    matched = rx.search(name)
                except RegexError as exc:
                    self.n.unsupported(f"{ptr}/patternProperties", "patternProperties", f"{p!r}: {exc}")
                    continue
                if matched:
                    parts.append(patterns[p])
            if not parts:
                parts.append(True if named_any else additional)
            if pnames is not None and not self.n.validates(name, pnames, res):
                parts.append(False)
            sub_ptr = f"{ptr}/properties/{_esc(name)}"
            inside = [j for j, wit in enumerate(witnesses) if wit.contains(name)]
            values: list[tuple[str, int]] = []
            for extra, flags in choices(inside):
                sym = self.parts_symbol(parts + extra, res, sub_ptr)
                if sym is not None:
                    values.extend((s, flags) for s in self.inlined(sym))
            is_req = name in required
            if not values:
                if is_req:
                    return None
                continue
            defined.append((name, is_req, values))
        # extra key classes: (key content automaton description, value symbol)
        extras = []
        defined_names = tuple(sorted(set(names)))
        pn_key = None
        if pnames is not None and pnames is not True:
            pn_key = self.key_content(pnames, res, f"{ptr}/propertyNames")
            if pn_key is None:  # no name allowed
                extras_allowed = False
            else:
                extras_allowed = True
        else:
            extras_allowed = True
        if extras_allowed and (max_p is None or max_p > 0):
            pattern_keys = []
            for p, sub in patterns.items():
                k: Description = ("string", StringSpec(patterns=(p,), excluded=defined_names))
                try:
                    self.t.bare(k, ptr)
                except RegexError as exc:
                    self.n.unsupported(f"{ptr}/patternProperties", "patternProperties", f"{p!r}: {exc}")
                    continue
                if pn_key is not None:
                    k = ("dfa", _dfa.intersect(self.t.bare(k), self.t.bare(pn_key), self.opts.max_states))
                pattern_keys.append((p, k, sub))
            overlap = any(not _dfa.disjoint(self.t.bare(pattern_keys[i][1]), self.t.bare(pattern_keys[j][1]))
                          for i in range(len(pattern_keys)) for j in range(i + 1, len(pattern_keys)))
            if not overlap:
                for p, k, sub in pattern_keys:
                    if not _dfa.is_empty(self.t.bare(k)):
                        extras.append((k, [sub], f"{ptr}/patternProperties/{_esc(p)}"))
            elif len(pattern_keys) > 6:
                self.n.unsupported(f"{ptr}/patternProperties", "patternProperties",
                                 "more than 6 overlapping patterns")
            else:
                # keys matching several patterns must match all their schemas: one key class per
                # combination of matched patterns
                m = len(pattern_keys)
                for mask in range(1, 1 << m):
                    in_all = [pattern_keys[i] for i in range(m) if mask >> i & 1]
                    region = self.t.bare(in_all[0][1])
                    for _, k, _ in in_all[1:]:
                        region = _dfa.intersect(region, self.t.bare(k), self.opts.max_states)
                    for i in range(m):
                        if not mask >> i & 1 and not _dfa.is_empty(region):
                            region = _dfa.difference(region, self.t.bare(pattern_keys[i][1]), self.opts.max_states)
                    if _dfa.is_empty(region):
                        continue
                    extras.append((("dfa", region), [sub for _, _, sub in in_all], f"{ptr}/patternProperties"))
            if additional is not False:
                k = ("string", StringSpec(excluded=defined_names))
                if pn_key is not None:
                    k = ("dfa", _dfa.intersect(self.t.bare(k), self.t.bare(pn_key), self.opts.max_states))
                for _, pk, _ in pattern_keys:
                    k = ("minus", k, pk)
                if not _dfa.is_empty(self.t.bare(k)):
                    extras.append((k, [additional], f"{ptr}/additionalProperties"))
        # each key class with its value symbol and the flags it sets
        extra_syms: list[tuple[Description, str, int]] = []
        for k, parts, kptr in extras:
            pieces: list[tuple[Description, list[int]]] = [(k, [])]
            for j, wit in enumerate(witnesses):  # split by the regions each key lies in
                split = []
                for key, inside in pieces:
                    key_in, key_out = wit.split(key)
                    if key_in is not None:
                        split.append((key_in, inside + [j]))
                    if key_out is not None:
                        split.append((key_out, inside))
                pieces = split
            for key, inside in pieces:
                for extra, flags in choices(inside):
                    if parts == [True] and not extra:
                        sym = self.any_value()
                    else:
                        sym = self.parts_symbol(parts + extra, res, kptr)
                    if sym is not None:
                        extra_syms.extend((key, s, flags) for s in self.inlined(sym))
        n = len(defined)
        cap = max(1, min_p, max_p or 0)
        if cap > self.opts.max_repeat:
            raise SchemaTooLarge(ptr, f"minProperties/maxProperties {cap} is above max_repeat={self.opts.max_repeat}")
        counting = min_p > 1 or max_p is not None
        if not counting:
            cap = 1
        # O(i, c, w): next defined property is i, c properties emitted so far (capped), w the
        # witness flags set so far
        names_nt: dict[tuple[int, int, int], str] = {}

        def O(i, c, w):
            key = (i, c, w)
            if key not in names_nt:
                names_nt[key] = g.nt("obj")
            return names_nt[key]

        close, comma = g.term(("lit", b"}")), g.term(("lit", b","))
        if self.opts.any_order:
            return self.any_order_object(defined, extra_syms, min_p, max_p, cap, full, depends, ptr)
        todo = [(0, 0, 0)]
        seen = set()
        while todo:
            i, c, w = todo.pop()
            if (i, c, w) in seen:
                continue
            seen.add((i, c, w))
            lhs = O(i, c, w)
            nxt_c = min(c + 1, cap) if not (max_p is not None) else c + 1
            if i < n:
                name, is_req, values = defined[i]
                if max_p is None or c + 1 <= max_p:
                    kt = g.term(("key", ("strlit", name)))
                    for value_sym, flags in values:
                        g.rule(lhs, ((kt,) if c == 0 else (comma, kt)) + (value_sym, O(i + 1, nxt_c, w | flags)), ptr)
                        todo.append((i + 1, nxt_c, w | flags))
                if not is_req:
                    g.rule(lhs, (O(i + 1, c, w),), ptr)
                    todo.append((i + 1, c, w))
            else:
                if c >= min_p and w == full:
                    g.rule(lhs, (close,), ptr)
                if max_p is None or c + 1 <= max_p:
                    for k, sym, flags in extra_syms:
                        kt = g.term(("key", k))
                        g.rule(lhs, ((kt,) if c == 0 else (comma, kt)) + (sym, O(n, nxt_c, w | flags)), ptr)
                        todo.append((n, nxt_c, w | flags))
        obj = g.nt("object")
        g.rule(obj, (g.term(("lit", b"{")), O(0, 0, 0)), ptr)
        return obj

    def any_order_object(self, defined: list, extra_syms: list, min_p: int, max_p: int | None, cap: int,
                         full: int, depends: tuple, ptr: str) -> str:
        """An object whose defined properties come in any order (``property_order="any"``).

        One nonterminal per (defined properties written so far, properties counted, witness
        flags): each defined key can be written once, in any order, with additional keys before,
        between and after them; the object closes once every required one is written.  Exact,
        and 2**n states for n defined properties, hence the bound `MAX_ANY_ORDER`.  ``depends``
        (`normalise.Flat.depends`) is checked where the object closes: each key written has the keys it
        needs (a key that cannot be written at all has no bit, and nothing needing it closes).
        """
        g, n = self.g, len(defined)
        if n > MAX_ANY_ORDER:
            raise SchemaTooLarge(ptr, f"property_order='any' tracks which of an object's properties are written "
                                      f"(2**n states): {n} properties here, above {MAX_ANY_ORDER} "
                                      f"(property_order='declared' fixes their order instead)")
        required = sum(1 << i for i, (_, is_req, _) in enumerate(defined) if is_req)
        bit = {name: 1 << i for i, (name, _, _) in enumerate(defined)}
        impossible = 1 << n  # a key that no value allows: never in a mask
        needs = [(bit[name], sum(bit.get(k, impossible) for k in needed if k != name))
                 for name, needed in depends if name in bit]
        close, comma = g.term(("lit", b"}")), g.term(("lit", b","))
        keys = [g.term(("key", ("strlit", name))) for name, _, _ in defined]
        states: dict[tuple[int, int, int], str] = {}

        def O(mask: int, c: int, w: int) -> str:
            key = (mask, c, w)
            if key not in states:
                states[key] = g.nt("anyobj")
                todo.append(key)
            return states[key]

        todo: list[tuple[int, int, int]] = []
        start = O(0, 0, 0)
        while todo:
            mask, c, w = todo.pop()
            lhs = states[(mask, c, w)]
            if mask & required == required and c >= min_p and w == full and \
                    all(not mask & b or mask & need == need for b, need in needs):
                g.rule(lhs, (close,), ptr)
            if max_p is not None and c + 1 > max_p:
                continue
            nxt_c = c + 1 if max_p is not None else min(c + 1, cap)
            lead: tuple[str, ...] = () if c == 0 else (comma,)
            for i, (_, _, values) in enumerate(defined):
                if not mask >> i & 1:
                    for value_sym, flags in values:
                        g.rule(lhs, lead + (keys[i], value_sym, O(mask | 1 << i, nxt_c, w | flags)), ptr)
            for k, sym, flags in extra_syms:
                g.rule(lhs, lead + (g.term(("key", k)), sym, O(mask, nxt_c, w | flags)), ptr)
        obj = g.nt("object")
        g.rule(obj, (g.term(("lit", b"{")), start), ptr)
        return obj

    def parts_symbol(self, parts: list, res, ptr: str) -> str | None:
        """One symbol for a value matching every schema in ``parts`` (None: no value does)."""
        if len(parts) == 1:
            return self.one(self.value(parts[0], res, ptr), ptr)
        return self.one(self.alts_symbols(self.n.flat({"allOf": parts}, res, ptr), ptr), ptr)

    def key_content(self, pnames, res, ptr, formats: bool = True):
        """A key description for propertyNames (a string schema); ``formats=False`` reads its
        formats as annotations (the names it allows, exactly, as validators read them)."""
        alts = self.n.flat(pnames, res, ptr)
        if not formats:
            alts = [replace(a.without("format"), formats=()) for a in alts]
        keys = []
        for a in alts:
            values = self.n.finite_values([a])
            if values is not None:
                for v in values:
                    if isinstance(v, str) and self.n.validates(v, plain_schema(a), a.resolver):
                        keys.append(("strlit", v))
                continue
            if "string" not in self.n.types_of(a):
                continue
            k = self.n.scalar_key(a, "string")
            if k is ANY:
                k = ANY_STRING
            for nf in a.negated:  # the names a 'not' inside propertyNames rules out
                if k is None:
                    break
                nk = self.not_key(nf, "string")
                if nk is ANY:
                    k = None
                elif nk is not None:
                    k = ("minus", k, nk)
            if k is not None:
                keys.append(k)
        if not keys:
            return None
        return union(keys)

    def array_value(self, flat: Flat, part: ArrayPart | None = None) -> str | None:
        """The array symbol of a flat schema (None: no array matches it); ``part``: its array
        keywords, where the caller changed them (default: `Flat.array_part`)."""
        g, ptr, res = self.g, flat.pointer, flat.resolver
        part = flat.array_part() if part is None else part
        prefix, items = part.prefix, part.items
        min_i, max_i = part.min_items, part.max_items
        if max_i is not None and max_i < min_i:
            return None
        unique = False
        if part.unique and (max_i is None or max_i > 1):
            small = self.unique_array(flat, part, min_i, max_i)
            if small is not False:
                return small
            if part.contains is not None:
                self.n.unsupported(ptr, "uniqueItems", "uniqueItems together with contains is not supported")
            else:
                # Checked at run time (`guided.ir.UniqueItems`): each item is wrapped in a rule of
                # its own, whose reductions the engine compares with the array's earlier items.
                unique = True
                max_i = self.unique_bound(flat, part, max_i)
                if max_i is not None and max_i < min_i:
                    return None
        if part.contains is not None:
            return self.array_contains(flat, part, min_i, max_i)
        prefix_syms = []
        for i, sub in enumerate(prefix):
            prefix_syms.append(self.one(self.value(sub, res, f"{ptr}/prefixItems/{i}"), ptr))
        item_sym = self.one(self.value(items, res, f"{ptr}/items"), ptr) if items is not True else \
            self.any_value()
        if unique:
            prefix_syms = [g.unique_item(s, ptr) for s in prefix_syms]
            item_sym = g.unique_item(item_sym, ptr)
        # the longest possible array
        limit = None
        for i, s in enumerate(prefix_syms):
            if s is None:
                limit = i
                break
        if limit is None and item_sym is None:
            limit = len(prefix_syms)
        if limit is not None:
            max_i = limit if max_i is None else min(max_i, limit)
            if max_i < min_i:
                return None
        cap = max(len(prefix_syms), min_i, max_i or 0, 1)
        unroll = min(COUNTED_ITEMS_FROM, self.opts.max_repeat)
        if not unique and cap > unroll and len(prefix_syms) <= unroll and (max_i is None or max_i >= 1):
            # (maxItems 0 stays unrolled: the first item is preceded by no separator to refuse)
            return self.counted_array(prefix_syms, item_sym, min_i, max_i, ptr)
        if cap > self.opts.max_repeat:
            raise SchemaTooLarge(ptr, f"minItems/maxItems/prefixItems need {cap} positions, above "
                                      f"max_repeat={self.opts.max_repeat}")
        close, comma = g.term(("lit", b"]")), g.term(("lit", b","))
        nts: dict[int, str] = {}

        def A(k):
            if k not in nts:
                nts[k] = g.nt("arr")
            return nts[k]

        bounded = max_i is not None
        for k in range(0, cap + 1):
            if max_i is not None and k > max_i:
                break
            lhs = A(k)
            if k >= min_i:
                g.rule(lhs, (close,), ptr)
            if max_i is not None and k + 1 > max_i:
                continue
            sym = prefix_syms[k] if k < len(prefix_syms) else item_sym
            if sym is None:
                continue
            nxt = min(k + 1, cap) if not bounded else k + 1
            if k == 0:
                g.rule(lhs, (sym, A(nxt)), ptr)
            else:
                g.rule(lhs, (comma, sym, A(nxt)), ptr)
        arr = g.nt("array")
        g.rule(arr, (g.term(("lit", b"[")), A(0)), ptr)
        if unique:
            g.unique_open_rules.add((arr, (g.term(("lit", b"[")), A(0))))
        return arr

    def counted_array(self, prefix_syms: list, item_sym: str | None, min_i: int, max_i: int | None, ptr: str) -> str:
        """An array whose item bounds are counted at run time (`guided.ir.ItemCounts`) rather than
        unrolled: the prefix items position by position, then the items left-recursively
        (``items: items "," item``: each item reduced on the lookahead after it, the stack flat).

        The caller makes sure that every prefix symbol and the item symbol exist past the prefix
        (else the array is short and unrolled) and that the bounds are past the prefix.
        """
        assert item_sym is not None and all(s is not None for s in prefix_syms)
        counted = CountedArray(self.g, ptr, min_i, max_i)
        add, comma = counted.add, counted.comma
        arr, items = self.g.nt("array"), self.g.nt("items")
        add(arr, (counted.opener, counted.close))  # the empty array (refused by the count when minItems > 0)
        head = None  # the first k prefix items
        for k, sym in enumerate(prefix_syms):
            nxt = self.g.nt("head")
            add(nxt, (sym,) if head is None else (head, comma, sym), item=True)
            if k + 1 < len(prefix_syms):  # the whole prefix closes through ``items``
                add(arr, (counted.opener, nxt, counted.close))
            head = nxt
        if head is None:
            add(items, (item_sym,), item=True)
        else:
            add(items, (head,))
        add(items, (items, comma, item_sym), item=True)
        add(arr, (counted.opener, items, counted.close))
        self.g.counted_arrays.append(counted)
        return arr

    def counted_contains(self, yes: str | None, no: str | None, min_i: int, max_i: int | None, min_c: int,
                         max_c: int | None, ptr: str) -> str:
        """`contains` over an array whose item bounds are counted at run time: the items
        left-recursively, one list symbol per number of items matching ``contains`` so far (up to
        ``maxContains``, or ``minContains`` where there is no maximum: more are as good), each item
        a ``yes`` (matches) or a ``no``; the array closes from the counts ``contains`` accepts."""
        counted = CountedArray(self.g, ptr, min_i, max_i)
        add, comma = counted.add, counted.comma
        top = min_c if max_c is None else max_c
        lists = [self.g.nt("matched") for _ in range(top + 1)]

        def after(c: int) -> int | None:  # the count after one more matching item (None: too many)
            return min(c + 1, top) if max_c is None else (c + 1 if c + 1 <= max_c else None)

        if no is not None:
            add(lists[0], (no,), item=True)
        if yes is not None and after(0) is not None:
            add(lists[after(0)], (yes,), item=True)  # type: ignore[index]
        for c in range(top + 1):
            if no is not None:
                add(lists[c], (lists[c], comma, no), item=True)
            if yes is not None and after(c) is not None:
                add(lists[after(c)], (lists[c], comma, yes), item=True)  # type: ignore[index]
        arr = self.g.nt("array")
        if min_c == 0:
            add(arr, (counted.opener, counted.close))
        for c in range(min_c, top + 1):
            add(arr, (counted.opener, lists[c], counted.close))
        self.g.counted_arrays.append(counted)
        return arr

    def unique_bound(self, flat: Flat, part: ArrayPart, max_i: int | None) -> int | None:
        """maxItems for unique items of a finite domain: at most as many items as distinct values,
        so that once every value is used the separator is refused (no dead end there)."""
        if part.prefix or part.items is True:
            return max_i
        try:
            alts = self.n.flat(part.items, flat.resolver, f"{flat.pointer}/items")
        except GuidedError:
            return max_i
        values: list[Any] = []
        for a in alts:  # each alternative's values: an enum, or booleans and null
            found = self.n.finite_values([a])
            if found is None:
                types = self.n.types_of(a)
                if not types <= {"boolean", "null"} or a.negated:
                    return max_i
                found = ([True, False] if "boolean" in types else []) + ([None] if "null" in types else [])
            values.extend(found)
        keep: list[Any] = []
        for v in values:
            if any(json_equal(v, w) for w in keep):
                continue
            if all(self.n.validates(v, plain_schema(a), a.resolver) is False for a in alts):
                continue
            keep.append(v)
        if len(keep) > self.opts.max_repeat and (max_i is None or max_i > self.opts.max_repeat):
            return max_i  # too many to count items up to: unbounded (exhausting them is a dead end)
        return len(keep) if max_i is None else min(max_i, len(keep))

    def unique_array(self, flat: Flat, part: ArrayPart, min_i: int, max_i: int | None) -> str | Literal[False]:
        """uniqueItems over a finite set of scalar item values: track the subset used (False: not applicable)."""
        g, ptr, res = self.g, flat.pointer, flat.resolver
        if part.prefix or part.contains is not None or part.items is True:
            return False
        try:
            alts = self.n.flat(part.items, res, f"{ptr}/items")
        except GuidedError:
            return False
        values = self.n.finite_values(alts) if alts else None
        if values is None and len(alts) == 1 and self.n.types_of(alts[0]) <= {"boolean", "null"}:
            values = ([True, False] if "boolean" in self.n.types_of(alts[0]) else []) + \
                ([None] if "null" in self.n.types_of(alts[0]) else [])
        if values is None:
            return False
        keep: list[Any] = []
        for v in values:
            if isinstance(v, (dict, list)):
                return False
            if any(json_equal(v, w) for w in keep):
                continue
            if all(self.n.validates(v, plain_schema(a), a.resolver) is False for a in alts):
                continue
            keep.append(v)
        if len(keep) > 8:
            return False
        terms = []
        for v in keep:
            tk, _ = self.finite(Flat({"enum": [v]}, res, ptr))
            terms.append(g.term(tk[0]))
        close, comma = g.term(("lit", b"]")), g.term(("lit", b","))
        nts: dict[int, str] = {}

        def A(mask):
            if mask not in nts:
                nts[mask] = g.nt("uniq")
            return nts[mask]

        for mask in range(1 << len(keep)):
            count = bin(mask).count("1")
            if max_i is not None and count > max_i:
                continue
            lhs = A(mask)
            if count >= min_i:
                g.rule(lhs, (close,), ptr)
            if max_i is not None and count + 1 > max_i:
                continue
            for i, t in enumerate(terms):
                if not mask >> i & 1:
                    g.rule(lhs, ((t,) if mask == 0 else (comma, t)) + (A(mask | 1 << i),), ptr)
        arr = g.nt("array")
        g.rule(arr, (g.term(("lit", b"[")), A(0)), ptr)
        return arr

    def array_contains(self, flat: Flat, part: ArrayPart, min_i: int, max_i: int | None) -> str | None:
        """``contains``: each item (of the prefix, then the rest) split into those that match it
        and those that do not (its negation), counted in the array chain."""
        g, ptr, res = self.g, flat.pointer, flat.resolver
        cptr = f"{ptr}/contains"
        prefix, items, contains = part.prefix, part.items, part.contains
        min_c, max_c = part.min_contains, part.max_contains
        contains_alts = self.n.flat(contains, res, cptr)
        saved = self.opts.lenient
        self.opts.lenient = False
        try:
            not_contains = self.n.negate(contains, res, cptr, 1)
        except (UnsupportedSchema, SchemaTooLarge) as exc:
            self.opts.lenient = saved
            if min_c == 0 and max_c is None:
                return self.array_value(flat, part.without_contains())
            self.n.unsupported(cptr, "contains", f"the items that do not match 'contains' cannot be expressed ({exc})")
            return self.array_value(flat, part.without_contains())
        finally:
            self.opts.lenient = saved

        def split(schema, where):
            """(symbol of the items matching ``schema`` and contains, of those matching it but not contains)"""
            alts = self.n.flat(schema, res, where)
            return (self.one(self.alts_symbols(self.n.conj(alts, contains_alts, cptr), cptr), cptr),
                    self.one(self.alts_symbols(self.n.conj(alts, not_contains, cptr), cptr), cptr))

        # position by position through prefixItems (each counts when it matches contains), then the rest
        count_from = part.contains_from
        positions = [split(sub, f"{ptr}/prefixItems/{i}") if i >= count_from else
                     (None, self.one(self.value(sub, res, f"{ptr}/prefixItems/{i}"), ptr))
                     for i, sub in enumerate(prefix)]
        yes, no = split(items, f"{ptr}/items")
        cap_c = max(min_c, (max_c or 0)) + 1
        cap_i = max(min_i, (max_i or 0), len(prefix), 1)
        unroll = min(COUNTED_ITEMS_FROM, self.opts.max_repeat)
        if (not positions and cap_i > unroll and cap_c <= self.opts.max_repeat and (max_i is None or max_i >= 1)
                and (max_c is None or max_c >= min_c) and (yes is not None or min_c == 0)
                and (no is not None or max_c is None) and (max_i is None or min_c == 0)):
            # Many items, few of them counted by contains: the items by a run-time count.  Only
            # where the two counts never need each other (no dead end): with both a maxItems and a
            # minContains, 999 items that do not match leave no room for 3 that must (unrolled).
            return self.counted_contains(yes, no, min_i, max_i, min_c, max_c, ptr)
        if cap_i * cap_c > self.opts.max_repeat * 4:
            raise SchemaTooLarge(ptr, "minItems/maxItems/minContains/maxContains are too large together")
        close, comma = g.term(("lit", b"]")), g.term(("lit", b","))
        nts: dict = {}

        def A(k, c):
            if (k, c) not in nts:
                nts[(k, c)] = g.nt("arrc")
            return nts[(k, c)]

        todo, seen = [(0, 0)], set()
        while todo:
            k, c = todo.pop()
            if (k, c) in seen:
                continue
            seen.add((k, c))
            lhs = A(k, c)
            if k >= min_i and c >= min_c and (max_c is None or c <= max_c):
                g.rule(lhs, (close,), ptr)
            if max_i is not None and k + 1 > max_i:
                continue
            nk = k + 1 if max_i is not None else min(k + 1, cap_i)
            here = positions[k] if k < len(positions) else (yes, no)
            for sym, dc in zip(here, (1, 0)):
                if sym is None:
                    continue
                nc = c + dc
                if max_c is not None and nc > max_c:
                    continue
                if max_c is None:
                    nc = min(nc, min_c)
                g.rule(lhs, ((sym,) if k == 0 else (comma, sym)) + (A(nk, nc),), ptr)
                todo.append((nk, nc))
        arr = g.nt("array")
        g.rule(arr, (g.term(("lit", b"[")), A(0, 0)), ptr)
        return arr

    def emit(self) -> tuple[Grammar, str]:
        """The grammar of the root schema and its start symbol."""
        g = self.g
        syms = self.value(self.root, self.n.resolver, "")
        if not syms:
            raise UnsupportedSchema("#", "schema", "the schema accepts no JSON value at all")
        start = "start"
        for s in syms:
            g.rule(start, (s,))
        return g, start


class SomeRegion:
    """The keys a `SomeKey` ranges over: as a test on one name and as a key automaton."""

    def __init__(self, some: SomeKey, emitter: RuleEmitter, res, ptr: str):
        self.some, self.emitter, self.res, self.ptr = some, emitter, res, ptr
        t, max_states = emitter.t, emitter.opts.max_states
        any_key: Description = ANY_STRING
        if some.kind == "additional":
            key: Description = ("string", StringSpec(excluded=tuple(sorted(set(some.names)))))
            for p in some.patterns:
                key = ("minus", key, ("string", StringSpec(patterns=(p,))))
        elif some.kind == "pattern":
            key = ("string", StringSpec(patterns=(some.patterns[0],)))
        else:
            allowed = emitter.key_content(some.schema, res, f"{ptr}/propertyNames", formats=False)
            key = any_key if allowed is None else ("minus", any_key, allowed)
        try:
            self.dfa = t.bare(key, ptr)
        except RegexError as exc:
            raise UnsupportedSchema(ptr, "not", f"{exc}") from None
        self.max_states = max_states

    def contains(self, name: str) -> bool:
        """Whether key ``name`` lies in the region."""
        some = self.some
        if some.kind == "additional":
            return name not in some.names and not any(NamePattern(p, self.max_states).search(name)
                                                      for p in some.patterns)
        if some.kind == "pattern":
            return NamePattern(some.patterns[0], self.max_states).search(name)
        return not self.emitter.n.validates(name, some.schema, self.res)

    def split(self, key: Description) -> tuple[Description | None, Description | None]:
        """A key class split into its keys inside the region and those outside (None: none)."""
        bare = self.emitter.t.bare(key)
        inside = _dfa.intersect(bare, self.dfa, self.max_states)
        outside = _dfa.difference(bare, self.dfa, self.max_states)
        return (None if _dfa.is_empty(inside) else ("dfa", inside),
                None if _dfa.is_empty(outside) else ("dfa", outside))


class CountedArray:
    """The rules of one array whose items are counted at run time (`guided.ir.ItemCounts`), by role."""

    def __init__(self, g: Grammar, pointer: str, min_items: int, max_items: int | None):
        self.g = g
        self.pointer = pointer
        self.bounds = (min_items, max_items)
        self.opener, self.close, self.comma = g.term(("lit", b"[")), g.term(("lit", b"]")), g.term(("lit", b","))
        self.rules: set[tuple[str, tuple[str, ...]]] = set()
        self.open_rules: set[tuple[str, tuple[str, ...]]] = set()  # "[" ...: a frame opens after "["
        self.item_rules: set[tuple[str, tuple[str, ...]]] = set()  # one reduction per item
        self.separator_rules: set[tuple[str, tuple[str, ...]]] = set()  # ... "," item: checked after ","
        self.close_rules: set[tuple[str, tuple[str, ...]]] = set()  # ... "]": checked after "]"

    def add(self, lhs: str, rhs: tuple[str, ...], item: bool = False) -> None:
        """Emit a rule of this array, filed by its role (``item``: its reduction is one item)."""
        self.g.rule(lhs, rhs, self.pointer)
        rule = (lhs, rhs)
        self.rules.add(rule)
        if item:
            self.item_rules.add(rule)
        if rhs[0] == self.opener:
            self.open_rules.add(rule)
        if rhs[-1] == self.close:
            self.close_rules.add(rule)
        if self.comma in rhs:
            self.separator_rules.add(rule)


def _esc(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def productive_rules(rules, is_term) -> list:
    """The rules whose every symbol derives some terminal string (empty languages pruned)."""
    productive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for lhs, rhs in rules:
            if lhs not in productive and all(is_term(s) or s in productive for s in rhs):
                productive.add(lhs)
                changed = True
    return [(lhs, rhs) for lhs, rhs in rules if lhs in productive and all(is_term(s) or s in productive for s in rhs)]


def _opening_states(tables: Tables, containers: tuple[str, ...]) -> frozenset[int]:
    """Parser states just after the opening bracket of an open value's object or array.

    Each open container keeps one of them on the parser stack until it closes, so counting them
    bounds the nesting.
    """
    lhs = {tables.nonterminals.index(name) for name in containers if name in tables.nonterminals}
    return frozenset(state for state, kernel in enumerate(tables.kernels)
                     if any(dot == 1 and r < len(tables.rules) and tables.rules[r][0] in lhs for r, dot in kernel))


def refine_overlaps(g: Grammar, terminals: Terminals, tables: Tables, budget: int) -> bool:
    """Split terminals that overlap in one parser state into the pieces of their overlap; True if
    the grammar changed (its tables are then stale).

    The lexer reads each lexeme as one terminal (rule 3 of `guided.ir.cfg`): where two candidates
    of a state both match it (the key ``"a":`` named by one object of a union and left to another's
    additional properties), the tie-break keeps one and the other alternative dies, which loses
    documents.  Each group of terminals overlapping that way becomes the disjoint pieces of their
    Venn diagram, and a rule using a terminal is repeated once per piece inside it: the language
    is unchanged, and the pieces two alternatives share are one terminal, which the LR parser
    carries through both.  Groups past `MAX_ATOMS` pieces or the automaton limits, counted string
    terminals, and splits that would add more than ``budget`` rules are left as they were (lossy
    as before, never unsound): the tables grow with the rules, and so does the time to first mask.
    """
    names = g.terminal_ids()
    index = {i: name for name, i in names.items()}
    countless = {i for i in index if terminals.counted(g.term_keys[i]) is None}
    parent = {i: i for i in index}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    checked: dict[tuple[int, int], bool] = {}
    max_states = g.opts.max_states
    for actions in tables.actions:
        cands = sorted(t for t in actions if t in countless)
        for x in range(len(cands)):
            for y in range(x + 1, len(cands)):
                pair = (cands[x], cands[y])
                if pair not in checked:
                    checked[pair] = _overlap(terminals, g.term_keys[pair[0]], g.term_keys[pair[1]], max_states)
                    if checked[pair]:
                        parent[find(pair[0])] = find(pair[1])
    groups: dict[int, list[int]] = {}
    for (a, b), overlap in checked.items():
        if overlap:
            for i in (a, b):
                members = groups.setdefault(find(i), [])
                if i not in members:
                    members.append(i)
    split: dict[str, list[str]] = {}
    for members in groups.values():
        try:
            atoms: list[tuple[Any, frozenset[int]]] = []
            for t in sorted(members):
                d = rest = terminals.bare(g.term_keys[t])
                pieces = []
                for a, m in atoms:
                    inside = _dfa.intersect(a, d, max_states)
                    if _dfa.is_empty(inside):
                        pieces.append((a, m))
                        continue
                    pieces.append((inside, m | {t}))
                    outside = _dfa.difference(a, d, max_states)
                    if not _dfa.is_empty(outside):
                        pieces.append((outside, m))
                    rest = _dfa.difference(rest, a, max_states)
                if not _dfa.is_empty(rest):
                    pieces.append((rest, frozenset([t])))
                atoms = pieces
                if len(atoms) > MAX_ATOMS:
                    raise LimitExceeded("too many pieces")
        except LimitExceeded:
            continue
        for t in members:
            mine = [(a, m) for a, m in atoms if t in m]
            # A terminal inside every other it overlaps is a piece itself: it keeps its name.
            split[index[t]] = [index[t]] if len(mine) == 1 else [g.term(("dfa", a)) for a, _ in mine]
        for a, m in atoms:
            whole = [t for t in m if len(split[index[t]]) == 1]
            if whole:  # the other members use that terminal for this piece
                for t in m:
                    if len(split[index[t]]) > 1:
                        own = g.term(("dfa", a))
                        split[index[t]] = [index[whole[0]] if x == own else x for x in split[index[t]]]
    split = {t: pieces for t, pieces in split.items() if pieces != [t]}
    if not split:
        return False
    grown = sum(_product_size(rhs, split) - 1 for _, rhs in g.rules)
    if grown > budget or len(g.rules) + grown > g.opts.max_rules:
        return False
    old_rules = g.rules
    g.rules, g.rule_set = [], set()
    renamed: dict[tuple[str, tuple[str, ...]], list[tuple[str, tuple[str, ...]]]] = {}
    for lhs, rhs in old_rules:
        variants: list[tuple[str, ...]] = [()]
        for sym in rhs:
            variants = [v + (piece,) for v in variants for piece in split.get(sym, [sym])]
        renamed[(lhs, rhs)] = [(lhs, v) for v in variants]
        for v in variants:
            g.rule(lhs, v)
    for rule_set in (g.unique_open_rules, g.unique_item_rules):
        for rule in list(rule_set):
            if renamed.get(rule, [rule]) != [rule]:
                rule_set.discard(rule)
                rule_set.update(renamed[rule])
                for new in renamed[rule]:
                    g.unique_pointers[new] = g.unique_pointers.get(rule, "#")
    return True


def _overlap(terminals: Terminals, a: Description, b: Description, max_states: int) -> bool:
    """Whether two terminals share a lexeme (False where the automata are too large to tell)."""
    if a[0] == b[0] == "key":  # the same colon after both: their names tell
        a, b = a[1], b[1]
    if a[0] == b[0] == "strlit":  # two different texts: no spelling of one spells the other
        return a == b
    if b[0] == "strlit":
        a, b = b, a
    da, db = terminals.bare(a), terminals.bare(b)
    if a[0] == "strlit":
        # String terminals read decoded characters, whatever their spelling: one spelling of
        # the text tells (were one not to, the split is only left out, as where nothing overlaps).
        return db.fullmatch(b'"' + _strings.canonical_text(a[1]) + b'"')
    # Most pairs start apart (a key and a number, "{" and "["): their first bytes tell.
    first_a = da.transitions[da.initial] != 0
    first_b = db.transitions[db.initial] != 0
    if not (first_a & first_b).any():
        return False
    try:
        return not _dfa.disjoint(da, db, max_states)
    except LimitExceeded:
        return False


def _product_size(rhs: tuple[str, ...], split: dict[str, list[str]]) -> int:
    size = 1
    for sym in rhs:
        size *= len(split.get(sym, (sym,)))
    return size


def to_ir(g: Grammar, terminals: Terminals, start: str, source: Any, unsupported=None) -> CfgIR:
    """The grammar's LALR(1) tables and terminal automata as the intermediate form.

    ``unsupported(pointer, keyword, reason)`` (the normaliser's: raises in strict mode, records in
    lenient mode) hears of a ``uniqueItems`` whose item wrapper collides with another alternative
    in a parser state (a conflict that could lose documents); in lenient mode that array's items
    go unchecked."""
    rules = g.productive_rules()
    if not any(lhs == start for lhs, _ in rules):
        raise UnsupportedSchema("#", "schema", "the schema accepts no JSON value at all")
    tables = lalr_tables(rules, g.terminal_ids(), start, check=g.opts.check_time)
    limit = len(g.rules) * (1 + REFINE_GROWTH)
    for _ in range(REFINE_ROUNDS if len(g.rules) <= REFINE_UP_TO else 0):
        if not refine_overlaps(g, terminals, tables, int(limit - len(g.rules))):
            break
        rules = g.productive_rules()
        tables = lalr_tables(rules, g.terminal_ids(), start, check=g.opts.check_time)
    terms = g.term_keys
    terminal_list = []
    for i, key in enumerate(terms):
        counted = terminals.counted(key)
        if counted is not None:  # a long plain string: its length as a count (`guided.ir.Count`)
            terminal_list.append(Terminal(name=f"T{i}", dfa=counted[0], order=i, count=counted[1]))
        else:
            terminal_list.append(Terminal(name=f"T{i}", dfa=terminals.bare(key), order=i))
    ignore: frozenset[int] = frozenset()
    if g.opts.ws:
        # Whitespace between tokens is one ignored lexeme of at most ``ws`` bytes, which may not
        # follow another (``ignore_repeats=False``): every run is bounded.
        ignore = frozenset([len(terminal_list)])
        terminal_list.append(Terminal(name="WS", dfa=ws_dfa(g.opts.ws), order=len(terminal_list)))
    unique = None
    if g.unique_open_rules:
        index = {rule: r for r, rule in enumerate(rules)}
        opening = {index[rule] for rule in g.unique_open_rules if rule in index}
        items = {index[rule]: rule for rule in g.unique_item_rules if rule in index}
        for kernel in tables.kernels:
            done = [r for r, dot in kernel if r in items and dot == 1]
            if done and len(kernel) > 1:  # the wrapper shares its state: a conflict resolved silently
                for r in done:
                    reason = ("the array's items are also, in the same place, those of another alternative "
                              "(anyOf/oneOf/type list) without uniqueItems: the grammar cannot tell them apart")
                    if unsupported is None:
                        raise UnsupportedSchema(g.unique_pointers.get(items[r], "#"), "uniqueItems", reason)
                    unsupported(g.unique_pointers.get(items[r], "#"), "uniqueItems", reason)
                    items.pop(r, None)
        unique = UniqueItems(
            open_states=frozenset(state for state, kernel in enumerate(tables.kernels)
                                  if any(dot == 1 and r in opening for r, dot in kernel)),
            item_rules=frozenset(items))
    return CfgIR(
        terminals=tuple(terminal_list),
        ignore=ignore,
        ignore_repeats=False,
        unique_items=unique,
        item_counts=_item_counts(g, rules, tables, unique is not None, unsupported),
        nesting_states=_opening_states(tables, g.open_containers),
        max_nesting=max(0, g.opts.max_depth - 1),
        source=f"JSON Schema {json.dumps(source)[:180]}",
        **tables.ir_fields(),
    )


def _item_counts(g: Grammar, rules: list, tables: Tables, with_unique: bool, unsupported) -> ItemCounts | None:
    """The counted arrays' states and rules (`guided.ir.ItemCounts`), or None when there are none.

    A parser state whose kernel holds a counted array's rules past the ``[`` together with any
    other rule (an alternative array read by the same states: the counts would apply to it, or
    go to the wrong frame) is refused, through ``unsupported`` as in `to_ir` (in lenient mode that
    array's bounds are dropped: a superset); so is a grammar with unique items as well."""
    if not g.counted_arrays:
        return None
    if with_unique:
        raise SchemaTooLarge(g.counted_arrays[0].pointer,
                             f"minItems/maxItems past {min(COUNTED_ITEMS_FROM, g.opts.max_repeat)} are counted at run "
                             f"time, which uniqueItems elsewhere in the same schema does not support yet")
    index = {rule: r for r, rule in enumerate(rules)}
    owner: dict[int, int] = {}  # rule -> counted array
    for a, arr in enumerate(g.counted_arrays):
        for rule in arr.rules:
            if rule in index:
                owner[index[rule]] = a
    dropped: set[int] = set()
    for kernel in tables.kernels:
        inside = {owner[r] for r, dot in kernel if dot >= 1 and r in owner}
        if inside and (len(inside) > 1 or any(r not in owner for r, _ in kernel)):
            for a in sorted(inside - dropped):
                reason = ("the array is read, in the same place, by the same parser states as another "
                          "alternative (anyOf/oneOf/type list): its item count cannot be kept apart")
                if unsupported is None:
                    raise UnsupportedSchema(g.counted_arrays[a].pointer, "maxItems", reason)
                unsupported(g.counted_arrays[a].pointer, "maxItems", reason)
                dropped.add(a)
    bounds: dict[int, tuple[int, int | None]] = {}
    separators, closes = set(), set()
    for q, kernel in enumerate(tables.kernels):
        for r, dot in kernel:
            which = owner.get(r)
            if which is None or which in dropped:
                continue
            arr = g.counted_arrays[which]
            rule = rules[r]
            if dot == 1 and rule in arr.open_rules:
                bounds[q] = arr.bounds
            if dot == len(rule[1]) and rule in arr.close_rules:
                closes.add(q)
            if dot == 2 and rule in arr.separator_rules:
                separators.add(q)
    items = frozenset(index[rule] for a, arr in enumerate(g.counted_arrays) if a not in dropped
                      for rule in arr.item_rules if rule in index)
    if not bounds:
        return None
    return ItemCounts(bounds=tuple((q, lo, hi) for q, (lo, hi) in sorted(bounds.items())), item_rules=items,
                      separator_states=frozenset(separators), close_states=frozenset(closes))
