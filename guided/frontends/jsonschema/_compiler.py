"""JSON Schema to `guided.ir.CfgIR`: the schema becomes a context-free grammar over exact terminals.

Terminals are byte automata for the lexemes of JSON text under the schema: a string or number
with all its constraints, an object key *with* its colon (``"name" :``), punctuation.
Whitespace between lexemes is one ignored terminal of at most ``max_whitespace`` bytes that may
not follow itself, so every run is bounded and a model can never loop on it.  Nonterminals carry
the structure: objects as a chain over their properties in schema order, arrays as a chain over
item counts, unions as alternatives, ``$ref`` cycles as recursion; open-ended values are one
recursive rule set whose nesting the engine bounds (`CfgIR.max_nesting`).  The LALR(1) tables
come from `guided.ir.lalr` (Lark's construction, fast enough for a grammar per request).

Soundness does not depend on the grammar being conflict-free: conflicts are resolved (shift
over reduce; earlier rule over later), which can only *lose* documents, never admit one.
"""

from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any

import referencing
import referencing.exceptions
import referencing.jsonschema as rjs

from guided.errors import GuidedError, LimitExceeded, RegexError, SpecError
from guided.ir.dfa import ByteDFA
from guided.frontends.jsonschema import _numbers, _strings
from guided.frontends.jsonschema._exact import exact_validator_class
from guided.ir import dfa_ops as _dfa
from guided.frontends.jsonschema._formats import FORMAT_MAX_LENGTH, FORMATS
from guided.frontends.regex import Regex, regex_to_dfa
from guided.ir import CfgIR, Terminal
from guided.ir.lalr import Tables, lalr_tables


class UnsupportedSchema(SpecError):
    """A schema keyword guided cannot enforce exactly (strict mode), naming its JSON pointer."""

    def __init__(self, pointer: str, keyword: str, reason: str):
        self.pointer = pointer or "#"
        self.keyword = keyword
        self.reason = reason
        super().__init__(f"{self.pointer}: {keyword}: {reason}")


class InvalidSchema(UnsupportedSchema):
    """The schema is not valid JSON Schema (a keyword of the wrong type, an unknown type name, text
    that is not JSON); names the JSON pointer and the keyword."""


class SchemaTooLarge(LimitExceeded):
    """The schema's grammar went past a configured limit; names the part of the schema."""

    def __init__(self, pointer: str, message: str):
        self.pointer = pointer or "#"
        super().__init__(f"{self.pointer}: {message}")


class RelaxedSchemaWarning(UserWarning):
    """``lenient=True`` relaxed keywords it cannot enforce; the message lists every one."""


ANNOTATIONS = {
    "title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
    "$schema", "$id", "id", "$anchor", "$defs", "definitions", "$vocabulary", "contentMediaType",
    "contentEncoding", "contentSchema", "$dynamicAnchor", "$recursiveAnchor", "example", "discriminator",
    "nullable", "x-", "markdownDescription", "errorMessage", "additionalItems", "unevaluatedProperties",
    "unevaluatedItems",
}
STRING_KW = {"minLength", "maxLength", "pattern", "format", "_patterns", "_formats"}
NUMBER_KW = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
OBJECT_KW = {"properties", "required", "additionalProperties", "patternProperties", "propertyNames",
             "minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "dependencies",
             "unevaluatedProperties"}
ARRAY_KW = {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "contains", "minContains",
            "maxContains", "uniqueItems", "unevaluatedItems"}
TYPES = ("null", "boolean", "object", "array", "number", "string")  # "integer" is a kind of number
KNOWN = STRING_KW | NUMBER_KW | OBJECT_KW | ARRAY_KW | {
    "type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref",
    "$dynamicRef", "$recursiveRef", "_not", "_anyOf"} | ANNOTATIONS

_ANY = object()  # marker: the unconstrained schema


def _json_eq(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_eq(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _type_of(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "integer" if v == int(v) and math.isfinite(v) else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _dec(x) -> Decimal:
    if isinstance(x, bool):
        raise TypeError
    if isinstance(x, float):
        return Decimal(repr(x))
    return Decimal(x)


class _Options:
    def __init__(self, spec):
        self.lenient = spec.lenient
        self.ws = 0 if spec.whitespace == "compact" else spec.max_whitespace
        self.closed = spec.closed
        self.canonical = spec.canonical
        self.max_depth = spec.max_depth
        self.max_states = spec.max_states
        self.max_rules = spec.max_rules
        self.max_seconds = spec.max_seconds
        self.max_repeat = spec.max_repeat
        self.max_alternatives = spec.max_alternatives
        self.max_multiple_of = spec.max_multiple_of
        self.max_string_length = spec.max_string_length
        self.max_nesting = spec.max_nesting


# ------------------------------------------------------------------------------------------------
# Terminal automata, cached across schemas by description.


_BARE_CACHE: dict[tuple, ByteDFA] = {}
_EMPTY_SCHEMA: dict = {}  # one object: schemas are memoised by identity
_SPELLED = frozenset({"strlit", "string", "key", "union", "minus"})  # descriptions holding JSON strings
_CACHE_LIMIT = 20_000


def _cache_put(cache: dict, key, value):
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> ByteDFA:
    return regex_to_dfa(Regex(pattern))


def _ws_dfa(n: int) -> ByteDFA:
    return _regex(f"[ \\t\\n\\r]{{1,{n}}}")


class _Grammar:
    """Terminals (by description) and rules under construction."""

    def __init__(self, opts: _Options):
        self.opts = opts
        self.term_index: dict[tuple, str] = {}
        self.term_keys: list[tuple] = []
        self.rules: list[tuple[str, tuple[str, ...]]] = []
        self.rule_set: set = set()
        self.nt_count = 0
        self.open_containers: tuple[str, ...] = ()  # the open value's object and array symbols
        self.deadline = time.monotonic() + opts.max_seconds
        self.total_states = 0
        # Drafts 6 and later: an integer may be written with a zero fraction (1.0); 3 and 4: not.
        self.int_fraction = True

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
            self.check_time(pointer)

    def check_time(self, pointer: str = "") -> None:
        """`SchemaTooLarge` once compiling has taken longer than ``max_seconds``."""
        if time.monotonic() > self.deadline:
            raise SchemaTooLarge(pointer, f"compiling took longer than max_seconds={self.opts.max_seconds} s")

    def term(self, key: tuple) -> str:
        name = self.term_index.get(key)
        if name is None:
            name = self.term_index[key] = f"T{len(self.term_keys)}"
            self.term_keys.append(key)
        return name

    # -- building automata -------------------------------------------------------------------

    def bare(self, key: tuple, pointer: str = "") -> ByteDFA:
        """The automaton of a terminal description, without leading whitespace."""
        # A key's automaton holds the whitespace before its colon, so the bound is part of its name;
        # string automata depend on the spelling (every one JSON allows, or the canonical one).
        name = (key, self.opts.ws if key[0] == "key" else None, self.opts.canonical and key[0] in _SPELLED)
        dfa = _BARE_CACHE.get(name)
        if dfa is None:
            self.check_time(pointer)
            dfa = _cache_put(_BARE_CACHE, name, self._build(key, pointer))
        return dfa

    def exact(self, key: tuple, pointer: str = "") -> ByteDFA:
        """The automaton of a terminal description over the exact spelling space.

        Numbers in the exact space are those written without an exponent (see
        `guided.frontends.jsonschema._numbers`); every other lexeme is in it.  Over that space
        the automaton accepts a lexeme if and only if its value matches the description, so a
        difference of two such automata is exact.  `bare` is this automaton plus, for numbers
        whose value is not compared, their exponent spellings.
        """
        kind = key[0]
        if kind == "union" and any(k[0] in ("num", "numlit", "union", "minus") for k in key[1]):
            name = ("exact", key)
            dfa = _BARE_CACHE.get(name)
            if dfa is None:
                dfa = _cache_put(_BARE_CACHE, name, _dfa.union_dfas(
                    [self.exact(k, pointer) for k in key[1]], self.opts.max_states))
            return dfa
        if kind == "num" and key[1:] == (None, False, None, False, None):
            return _regex(_numbers.PLAIN_NUMBER)
        if kind == "numlit":
            r = _numbers.literal(Decimal(key[1]), key[2])
            return _regex(r) if r is not None else _dfa.EMPTY
        return self.bare(key, pointer)

    def _build(self, key: tuple, pointer: str) -> ByteDFA:
        kind = key[0]
        ws = self.opts.ws
        if kind == "lit":
            return _dfa.literal_dfa(key[1])
        if kind == "alt":  # alternation of literal byte strings
            return _dfa.union_dfas([_dfa.literal_dfa(b) for b in key[1]])
        if kind == "regex":
            return _regex(key[1])
        if kind == "strlit":
            return _strings.quoted(_strings.literal_content(key[1], self.opts.canonical))
        if kind == "string":
            return _strings.quoted(self.string_content(key[1], pointer))
        if kind == "key":  # "name" ws :
            return _strings.concat_fast(self.bare(key[1], pointer), _strings.with_ws(_dfa.literal_dfa(b":"), ws))
        if kind == "dfa":
            return key[1]
        if kind == "union":
            # An enum's strings share one trie instead of a subset construction over many parts.
            texts = tuple(k[1] for k in key[1] if k[0] == "strlit")
            parts = [self.bare(k, pointer) for k in key[1] if k[0] != "strlit"]
            if len(texts) > 1:
                parts.append(_strings.quoted(_strings.literals_content(texts, self.opts.canonical)))
            elif texts:
                parts.append(self.bare(("strlit", texts[0]), pointer))
            return _dfa.union_dfas(parts, self.opts.max_states)
        if kind == "minus":
            # Exact over the exact space on both sides: exponent spellings are left out, since
            # the subtracted automaton could not know every one of its values' spellings.
            return _dfa.difference(self.exact(key[1], pointer), self.exact(key[2], pointer), self.opts.max_states)
        if kind == "numlit":  # a number's exact spellings and the one json.dumps writes
            extra = [_dfa.literal_dfa(key[3])] if key[3] else []
            own = self.exact(key, pointer)
            if key[4] is not None:  # drafts 3 and 4: spelt as the enum value is typed (1 or 1.0)
                r = _numbers.literal(Decimal(key[1]), integer_only=key[4] == "int", fraction_only=key[4] == "frac")
                own = _regex(r) if r is not None else _dfa.EMPTY
            return _dfa.union_dfas([own] + extra, self.opts.max_states)
        if kind == "int":
            return self.int_dfa(*key[1:], pointer=pointer)
        if kind == "num":
            return self.num_dfa(*key[1:], pointer=pointer)
        raise AssertionError(key)

    def string_content(self, c: tuple, pointer: str) -> ByteDFA:
        patterns, min_len, max_len, formats, literals_out = c
        ms = self.opts.max_states
        canonical = self.opts.canonical
        parts: list[ByteDFA] = []
        if max_len is not None and max_len > self.opts.max_string_length:
            raise SchemaTooLarge(pointer, f"maxLength {max_len} is above max_string_length="
                                          f"{self.opts.max_string_length}")
        if min_len > self.opts.max_string_length:
            raise SchemaTooLarge(pointer, f"minLength {min_len} is above max_string_length="
                                          f"{self.opts.max_string_length}")
        for f in formats:
            parts.append(_strings.regex_content(FORMATS[f], ms, canonical))
            if f in FORMAT_MAX_LENGTH:
                parts.append(_strings.length_content(0, FORMAT_MAX_LENGTH[f], canonical))
        for p in patterns:
            parts.append(_strings.pattern_content(p, ms, canonical))
        if min_len > 0 or max_len is not None:
            parts.append(_strings.length_content(min_len, max_len, canonical))
        if not parts:
            parts.append(_strings.any_content(canonical))
        # smallest first: cheaper products
        parts.sort(key=lambda d: d.num_states)
        out = parts[0]
        for p in parts[1:]:
            out = _dfa.intersect(out, p, ms, what=f"string constraints at {pointer or '#'}")
        if literals_out:
            out = _dfa.difference(out, _strings.literals_content(tuple(sorted(set(literals_out)))), ms)
        return out

    def int_dfa(self, lo, hi, mult, fraction, pointer=""):
        r = _numbers.integers(lo, hi, fraction)
        if r is None:
            return _dfa.EMPTY
        d = _regex(r)
        if mult is not None:
            p, q = mult
            p2 = p // math.gcd(p, 10 ** q)
            if p2 > 1:
                if p2 > self.opts.max_multiple_of:
                    raise UnsupportedSchema(pointer, "multipleOf", f"modulus {p2} is above max_multiple_of="
                                                                   f"{self.opts.max_multiple_of}")
                d = _dfa.intersect(d, _numbers.multiple_of_dfa(p2, 0, fraction), self.opts.max_states)
        return d

    def num_dfa(self, lo, lo_x, hi, hi_x, mult, pointer=""):
        if lo is None and hi is None and mult is None:
            return _regex(_numbers.NUMBER)
        parts = []
        if lo is not None:
            r = _numbers.number_ge(Decimal(lo), lo_x)
            if r is None:
                return _dfa.EMPTY
            parts.append(_regex(r))
        if hi is not None:
            r = _numbers.number_le(Decimal(hi), hi_x)
            if r is None:
                return _dfa.EMPTY
            parts.append(_regex(r))
        if mult is not None:
            p, q = mult
            if p > self.opts.max_multiple_of:
                raise UnsupportedSchema(pointer, "multipleOf", f"modulus {p} is above max_multiple_of="
                                                               f"{self.opts.max_multiple_of}")
            parts.append(_numbers.multiple_of_dfa(p, q, True))
        if not parts:
            parts.append(_regex(_numbers.PLAIN_NUMBER))
        out = parts[0]
        for p in parts[1:]:
            out = _dfa.intersect(out, p, self.opts.max_states)
        return out


# ------------------------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, root: Any, opts: _Options):
        self.opts = opts
        self.g = _Grammar(opts)
        self.relaxed: list[str] = []
        self.root = root
        spec = rjs.DRAFT202012
        if isinstance(root, dict) and isinstance(root.get("$schema"), str):
            spec = rjs.specification_with(root["$schema"].rstrip("#") + ("#" if "draft-0" in root["$schema"] else ""),
                                          default=rjs.DRAFT202012)
        self.spec = spec
        self.draft = spec.name
        self.old_ref = self.draft in ("draft-03", "draft-04", "draft-06", "draft-07")
        self.old_draft = self.draft in ("draft-03", "draft-04")
        self.g.int_fraction = not self.old_draft
        resource = spec.create_resource(root)
        base = resource.id() or "urn:guided:root"
        self.registry = referencing.Registry().with_resource(base, resource).crawl()
        self.resolver = self.registry.resolver(base)
        self.memo: dict[Any, tuple] = {}
        self.referenced: set[str] = set()
        # ("node", id): the nonterminal of a value() in progress; ("ref", id): a schema being
        # applied in place (flattened) to the current value, with the 'not' parity it entered at.
        self.in_progress: dict[Any, Any] = {}
        self.negations = 0  # 'not's between the value and the schema being flattened
        self.where = "#"  # the pointer of the value being compiled, for errors
        self.nesting = 0  # value() calls in progress
        self._validator_cls = None
        self.any_sym: str | None = None
        self.alternatives: dict[tuple, str] = {}

    # -- errors ------------------------------------------------------------------------------

    def unsupported(self, pointer: str, keyword: str, reason: str) -> None:
        """Strict: raise.  Lenient: record and go on (the caller then relaxes)."""
        if not self.opts.lenient:
            raise UnsupportedSchema(pointer, keyword, reason)
        self.relaxed.append(f"{pointer or '#'}: {keyword}: {reason}")

    # -- validation with the jsonschema library (finite sets only) ----------------------------

    def validates(self, value, schema, resolver) -> bool:
        import jsonschema

        if self._validator_cls is None:
            # Numbers compared exactly (the specification's rule), as the compiled automata do.
            self._validator_cls = exact_validator_class(jsonschema.validators.validator_for(
                self.root if isinstance(self.root, dict) else {}, default=jsonschema.Draft202012Validator))
        cls = self._validator_cls
        v = cls(schema, registry=self.registry, _resolver=resolver) if _accepts_resolver(cls) else cls(
            schema, registry=self.registry)
        try:
            return v.is_valid(value)
        except Exception:  # noqa: BLE001 - a schema jsonschema cannot run: count as not provable
            raise UnsupportedSchema("", "enum", "cannot check enum values against the sibling keywords")

    # -- flattening: $ref / allOf / anyOf / oneOf / if / dependencies -> list of flat schemas ---

    def flat(self, node, resolver, ptr: str, depth: int = 0) -> list:
        """The schema as a disjunction of flat schemas (dicts without $ref/allOf/anyOf/oneOf).

        Each flat schema carries its resolver under "_res" and its pointer under "_ptr".
        """
        if depth > 40:
            raise SchemaTooLarge(ptr, "references nest too deeply (a $ref cycle through allOf/anyOf?)")
        if node is True or node == {}:
            return [{"_res": resolver, "_ptr": ptr}]
        if node is False:
            return []
        if not isinstance(node, dict):
            raise UnsupportedSchema(ptr, "schema", f"a schema must be an object or a boolean, not {type(node).__name__}")
        key = ("ref", id(node))
        entered = self.in_progress.get(key)
        if entered is not None:
            return self.in_place_cycle(entered, resolver, ptr)
        self.in_progress[key] = (ptr, self.negations % 2)
        try:
            return self._flat(node, resolver, ptr, depth)
        finally:
            del self.in_progress[key]

    def _flat(self, node: dict, resolver, ptr: str, depth: int) -> list:
        resolver = self.enter(node, resolver, ptr)
        base = {k: v for k, v in node.items() if k not in ("$ref", "allOf", "anyOf", "oneOf", "if", "then", "else",
                                                            "$dynamicRef", "$recursiveRef", "dependentRequired",
                                                            "dependentSchemas", "dependencies")}
        base.pop("not", None)
        applicators = [k for k in ("allOf", "anyOf", "oneOf", "$ref", "if", "dependentSchemas", "dependencies",
                                   "not", "$dynamicRef", "$recursiveRef", "contains") if k in node]
        if "unevaluatedProperties" in base:
            uprops = base.pop("unevaluatedProperties")
            if uprops is not True and uprops != {}:
                if applicators:
                    self.unsupported(ptr, "unevaluatedProperties", "only supported without in-place applicators "
                                                                   f"({', '.join(applicators)}) next to it")
                elif "additionalProperties" not in base:
                    base["additionalProperties"] = uprops
        if "unevaluatedItems" in base:
            uitems = base.pop("unevaluatedItems")
            if uitems is not True and uitems != {}:
                if applicators:
                    self.unsupported(ptr, "unevaluatedItems", "only supported without in-place applicators "
                                                              f"({', '.join(applicators)}) next to it")
                elif isinstance(base.get("items"), list):
                    base.setdefault("additionalItems", uitems)
                elif "items" not in base:
                    base["items"] = uitems
        base["_res"] = resolver
        base["_ptr"] = ptr
        alts = [base]
        if "not" in node:
            alts = self.conj(alts, self.negate(node["not"], resolver, f"{ptr}/not", depth + 1), ptr)
        for key in ("$dynamicRef", "$recursiveRef"):
            if key in node:
                self.unsupported(ptr, key, "dynamic references are not supported")
        if "$ref" in node:
            ref = node["$ref"]
            resolved = self.lookup(resolver, ref, ptr)
            key = ("ref", id(resolved.contents))
            target_ptr = f"{ptr}/$ref"
            if self.old_ref:
                # draft-07 and older: $ref replaces its siblings
                return self.ref_alts(resolved, target_ptr, depth)
            alts = self.conj(alts, self.ref_alts(resolved, target_ptr, depth), ptr)
        if "allOf" in node:
            for i, sub in enumerate(node["allOf"]):
                alts = self.conj(alts, self.flat(sub, resolver, f"{ptr}/allOf/{i}", depth + 1), ptr)
        if "anyOf" in node:
            union = []
            for i, sub in enumerate(node["anyOf"]):
                union.extend(self.flat(sub, resolver, f"{ptr}/anyOf/{i}", depth + 1))
            alts = self.conj(alts, union, ptr)
        if "oneOf" in node:
            branches = [self.flat(sub, resolver, f"{ptr}/oneOf/{i}", depth + 1) for i, sub in enumerate(node["oneOf"])]
            alts = self.conj(alts, self.one_of(branches, node["oneOf"], resolver, ptr), ptr)
        if "if" in node and ("then" in node or "else" in node):
            cond = node["if"]
            then = node.get("then", True)
            other = node.get("else", True)
            yes = self.conj(self.flat(cond, resolver, f"{ptr}/if", depth + 1),
                            self.flat(then, resolver, f"{ptr}/then", depth + 1), ptr)
            no = self.conj(self.negate(cond, resolver, f"{ptr}/if", depth + 1),
                           self.flat(other, resolver, f"{ptr}/else", depth + 1), ptr)
            alts = self.conj(alts, yes + no, ptr)
        deps = {}
        if isinstance(node.get("dependencies"), dict):
            deps.update(node["dependencies"])
        for key in ("dependentRequired", "dependentSchemas"):
            if isinstance(node.get(key), dict):
                deps.update(node[key])
        for name, dep in deps.items():
            dptr = f"{ptr}/dependencies/{name}"
            absent = [{"_res": resolver, "_ptr": dptr, "properties": {name: False}}]
            if isinstance(dep, list):
                present = [{"_res": resolver, "_ptr": dptr, "required": [name] + list(dep)}]
            else:
                present = self.conj([{"_res": resolver, "_ptr": dptr, "required": [name]}],
                                    self.flat(dep, resolver, dptr, depth + 1), ptr)
            alts = self.conj(alts, absent + present, ptr)
        return alts

    def lookup(self, resolver, ref: str, ptr: str):
        """The schema ``ref`` points to, or `UnsupportedSchema` naming the reference."""
        try:
            resolved = resolver.lookup(ref)
        except referencing.exceptions.Unresolvable as exc:
            raise UnsupportedSchema(ptr, "$ref", f"cannot resolve {ref!r} ({exc.__class__.__name__}); "
                                                 f"only references inside the schema are supported") from None
        except (TypeError, KeyError, IndexError, ValueError, AttributeError):
            # referencing walks a JSON pointer into a boolean or a number as into an object
            raise UnsupportedSchema(ptr, "$ref", f"cannot resolve {ref!r}: its JSON pointer leads through a value "
                                                 f"that is not an object or an array") from None
        if not isinstance(resolved.contents, (dict, bool)):
            raise InvalidSchema(ptr, "$ref", f"{ref!r} points to a {type(resolved.contents).__name__}, not a "
                                             f"schema")
        return resolved

    def enter(self, node: dict, resolver, ptr: str):
        """The resolver inside ``node`` (a new base URI where it has an id)."""
        idkey = "id" if self.draft in ("draft-03", "draft-04") else "$id"
        if ptr and isinstance(node.get(idkey), str):
            try:
                return resolver.in_subresource(self.spec.create_resource(node))
            except Exception:  # noqa: BLE001
                return resolver
        return resolver

    def ref_alts(self, resolved, ptr, depth):
        return self.flat(resolved.contents, resolved.resolver, ptr, depth + 1)

    def in_place_cycle(self, entered: tuple[str, int], resolver, ptr: str) -> list:
        """The flat schemas of a schema reached again while it is being applied to the same value.

        With no object or array in between ({"allOf": [{"$ref": "#"}, ...]}), the application
        in progress checks that schema, so reaching it again adds nothing: read as true (the
        specification leaves such cycles undefined, and validators recurse forever on them).
        Through a 'not' the schema would have to be the negation of itself: refused.
        """
        if entered[1] != self.negations % 2:
            self.unsupported(ptr, "$ref", f"refers back to {entered[0] or '#'} through 'not': a schema that must "
                                          f"be its own negation has no meaning")
        return [{"_res": resolver, "_ptr": ptr}]

    def conj(self, left: list, right: list, ptr: str) -> list:
        out = []
        for a in left:
            for b in right:
                m = self.merge(a, b, ptr)
                if m is not None:
                    out.append(m)
        if len(out) > self.opts.max_alternatives:
            raise SchemaTooLarge(ptr, f"allOf/anyOf/oneOf combinations expand to more than "
                                      f"{self.opts.max_alternatives} alternatives")
        return out

    def one_of(self, branches: list[list], raw, resolver, ptr) -> list:
        flat = [alt for b in branches for alt in b]
        # exact when the branches are pairwise disjoint
        ok = True
        for i in range(len(branches)):
            for j in range(i + 1, len(branches)):
                for a in branches[i]:
                    for b in branches[j]:
                        if not self.provably_disjoint(a, b):
                            ok = False
                            break
                    if not ok:
                        break
        if not ok:
            # finite branches: exact by filtering values that match exactly one branch
            values = self.finite_values(flat)
            if values is not None:
                keep = []
                for v in values:
                    n = sum(1 for sub in raw if self.validates(v, sub, resolver))
                    if n == 1:
                        keep.append(v)
                return [{"_res": resolver, "_ptr": ptr, "enum": keep}]
            # exact: each branch together with the negation of every other one
            saved = self.opts.lenient
            self.opts.lenient = False
            try:
                out = []
                for i, b in enumerate(branches):
                    alts = b
                    for j, other in enumerate(raw):
                        if j != i:
                            alts = self.conj(alts, self.negate(other, resolver, f"{ptr}/oneOf/{j}", 1), ptr)
                    out.extend(alts)
                return out
            except (UnsupportedSchema, SchemaTooLarge) as exc:
                self.opts.lenient = saved
                self.unsupported(ptr, "oneOf", f"the branches are not provably disjoint and 'exactly one' cannot "
                                               f"be expressed ({exc}); lenient: treated as anyOf")
            finally:
                self.opts.lenient = saved
        return flat

    def finite_values(self, alts):
        values = []
        for a in alts:
            if "enum" in a:
                values.extend(a["enum"])
            elif "const" in a:
                values.append(a["const"])
            else:
                return None
        return values

    def provably_disjoint(self, a: dict, b: dict) -> bool:
        ta, tb = self.types_of(a), self.types_of(b)
        if not (ta & tb):
            return True
        va, vb = self.finite_values([a]), self.finite_values([b])
        if va is not None and vb is not None:
            return not any(_json_eq(x, y) for x in va for y in vb)
        if va is not None:
            return not any(self.validates(x, _clean(b), b["_res"]) for x in va)
        if vb is not None:
            return not any(self.validates(x, _clean(a), a["_res"]) for x in vb)
        if ta & tb <= {"object"} and "object" in ta:
            # a required property whose values are disjoint
            pa, pb = a.get("properties", {}), b.get("properties", {})
            for k in set(a.get("required", [])) | set(b.get("required", [])):
                if k in pa and k in pb and k in a.get("required", []) and k in b.get("required", []):
                    fa = self.flat(pa[k], a["_res"], "", 1)
                    fb = self.flat(pb[k], b["_res"], "", 1)
                    if all(self.provably_disjoint(x, y) for x in fa for y in fb):
                        return True
                if k in a.get("required", []) and b.get("additionalProperties") is False and k not in pb and \
                        not b.get("patternProperties"):
                    return True
                if k in b.get("required", []) and a.get("additionalProperties") is False and k not in pa and \
                        not a.get("patternProperties"):
                    return True
        common = ta & tb
        if common <= {"string", "number", "integer", "boolean", "null"}:
            try:
                da = self.scalar_dfa(a, common)
                db = self.scalar_dfa(b, common)
            except GuidedError:
                return False
            if da is not None and db is not None:
                return _dfa.disjoint(da, db)
        return False

    def scalar_dfa(self, flat: dict, types: set):
        keys = []
        if "integer" in types:
            types = (types - {"integer"}) | {"number"}
        for t in sorted(types):
            k = self.scalar_key(flat, t)
            if k is None:
                continue
            if k is _ANY:
                return None
            keys.append(k)
        if not keys:
            return _dfa.EMPTY
        # Disjoint over the exact space means disjoint values: every number has a spelling there.
        return self.g.exact(("union", tuple(keys)) if len(keys) > 1 else keys[0])

    def negate(self, node, resolver, ptr, depth) -> list:
        """``not node`` as flat schemas (De Morgan over the flat alternatives), where expressible."""
        if node is True or node == {}:
            return []
        if node is False:
            return [{"_res": resolver, "_ptr": ptr}]
        result = [{"_res": resolver, "_ptr": ptr}]
        self.negations += 1
        try:
            alternatives = self.flat(node, resolver, ptr, depth + 1)
        finally:
            self.negations -= 1
        for f in alternatives:
            # guided asserts formats, while validators by default read them as annotations; under
            # 'not' only the annotation reading is sound for both (not {"format": "uuid"} allows
            # nothing, where asserting it would allow every non-UUID string).
            f = {k: v for k, v in f.items() if k not in ("format", "_formats")}
            result = self.conj(result, self.negate_flat(f, ptr), ptr)
        return result

    def negate_flat(self, f: dict, ptr: str) -> list:
        res = f["_res"]
        if "_anyOf" in f:
            self.unsupported(ptr, "not", "negating a nested union schema is not supported")
            return [{"_res": res, "_ptr": ptr}]
        types = self.types_of(f)
        num_in = bool({"number", "integer"} & types)
        other = [t for t in ("null", "boolean", "object", "array", "string") if t not in types]
        if not num_in:
            other.append("number")
        out = []
        if other:
            out.append({"_res": res, "_ptr": ptr, "type": other})
        scalar = [t for t in ("null", "boolean", "string") if t in types] + (["number"] if num_in else [])
        if scalar:
            out.append({"_res": res, "_ptr": ptr, "type": scalar, "_not": [f]})
        if "object" in types:
            out.extend(self.negate_object(f, ptr))
        if "array" in types:
            out.extend(self.negate_array(f, ptr))
        return out

    def negate_object(self, f: dict, ptr: str) -> list:
        res = f["_res"]
        obj = lambda **kw: {"_res": res, "_ptr": ptr, "type": "object", **kw}  # noqa: E731
        if "enum" in f or "const" in f:
            self.unsupported(ptr, "not", "negating an enum of objects is not supported")
            return []
        out = []
        for k in f.get("required", []):
            out.append(obj(properties={k: False}))
        for k, sub in (f.get("properties") or {}).items():
            if sub is True or sub == {}:
                continue
            out.append(obj(required=[k], properties={k: {"not": sub}}))
        if f.get("minProperties", 0) > 0:
            out.append(obj(maxProperties=int(f["minProperties"]) - 1))
        if f.get("maxProperties") is not None:
            out.append(obj(minProperties=int(f["maxProperties"]) + 1))
        for k in ("additionalProperties", "patternProperties", "propertyNames", "unevaluatedProperties"):
            if k in f and f[k] not in (True, {}):
                self.unsupported(ptr, "not", f"negating '{k}' is not supported")
        return out

    def negate_array(self, f: dict, ptr: str) -> list:
        res = f["_res"]
        arr = lambda **kw: {"_res": res, "_ptr": ptr, "type": "array", **kw}  # noqa: E731
        if "enum" in f or "const" in f:
            self.unsupported(ptr, "not", "negating an enum of arrays is not supported")
            return []
        out = []
        if f.get("minItems", 0) > 0:
            out.append(arr(maxItems=int(f["minItems"]) - 1))
        if f.get("maxItems") is not None:
            out.append(arr(minItems=int(f["maxItems"]) + 1))
        for k in ("items", "prefixItems", "contains", "uniqueItems", "additionalItems", "unevaluatedItems"):
            if k in f and f[k] not in (True, {}, False) or (k == "uniqueItems" and f.get(k) is True):
                self.unsupported(ptr, "not", f"negating '{k}' is not supported")
        return out

    def merge(self, a: dict, b: dict, ptr: str) -> dict | None:
        """``a`` and ``b`` together (allOf), or None when provably unsatisfiable."""
        a, b = _const_as_enum(a), _const_as_enum(b)
        out = dict(a)
        for k, vb in b.items():
            if k in ("_res", "_ptr"):
                continue
            if k not in out:
                out[k] = vb
                continue
            va = out[k]
            if k == "type":
                ta = set(va if isinstance(va, list) else [va])
                tb = set(vb if isinstance(vb, list) else [vb])
                common = ta & tb
                if "integer" in ta and "number" in tb:
                    common.add("integer")
                if "integer" in tb and "number" in ta:
                    common.add("integer")
                if not common:
                    return None
                out[k] = sorted(common)
            elif k in ("enum", "const"):
                ea = va if k == "enum" else [va]
                eb = vb if k == "enum" else [vb]
                out.pop("const", None)
                out["enum"] = [x for x in ea if any(_json_eq(x, y) for y in eb)]
            elif k in ("minimum", "minLength", "minItems", "minProperties", "minContains"):
                out[k] = max(va, vb)
            elif k in ("maximum", "maxLength", "maxItems", "maxProperties", "maxContains"):
                out[k] = min(va, vb)
            elif k == "exclusiveMinimum":
                out[k] = max(va, vb) if not isinstance(va, bool) else (va or vb)
            elif k == "exclusiveMaximum":
                out[k] = min(va, vb) if not isinstance(va, bool) else (va or vb)
            elif k == "required":
                out[k] = list(dict.fromkeys(list(va) + list(vb)))
            elif k == "uniqueItems":
                out[k] = va or vb
            elif k == "multipleOf":
                fa, fb = Fraction(_dec(va)), Fraction(_dec(vb))
                lcm = _frac_lcm(fa, fb)
                out[k] = Decimal(lcm.numerator) / Decimal(lcm.denominator)
            elif k in ("pattern", "format"):
                lst = "_patterns" if k == "pattern" else "_formats"
                out[lst] = list(out.get(lst, [])) + [vb]
            elif k in ("_patterns", "_formats", "_not"):
                out[k] = list(va) + list(vb)
            elif k == "properties":
                props = dict(va)
                for name, s in vb.items():
                    props[name] = {"allOf": [props[name], s]} if name in props else s
                # keys of b not described by a fall under a's additionalProperties (and vice versa)
                out[k] = props
            elif k in ("additionalProperties", "items", "propertyNames", "contains", "additionalItems"):
                out[k] = {"allOf": [va, vb]}
            elif k == "prefixItems":
                n = max(len(va), len(vb))
                out[k] = [{"allOf": [va[i] if i < len(va) else a.get("items", True),
                                     vb[i] if i < len(vb) else b.get("items", True)]} for i in range(n)]
            elif k == "patternProperties":
                pp = dict(va)
                for name, s in vb.items():
                    pp[name] = {"allOf": [pp[name], s]} if name in pp else s
                out[k] = pp
            elif k == "_anyOf":
                res = [self.merge(x, y, ptr) for x in va for y in vb]
                out[k] = [r for r in res if r is not None]
            elif _json_eq(va, vb) or k in ANNOTATIONS or k not in KNOWN:
                pass  # equal, an annotation, or an unknown keyword (which constrains nothing)
            else:
                self.unsupported(ptr, k, f"cannot combine two '{k}' keywords in allOf")
        for lower in (True, False):
            self.merge_bounds(a, b, out, lower)
        # cross-object keys: properties of one side under the other's additionalProperties
        if "properties" in a or "properties" in b or "additionalProperties" in a or "additionalProperties" in b:
            props = dict(out.get("properties", {}))
            for side, other in ((a, b), (b, a)):
                for name in other.get("properties", {}):
                    if name in side.get("properties", {}):
                        continue
                    extra = _schema_for_extra(side, name)
                    if extra is not True:
                        props[name] = {"allOf": [props[name], extra]}
            if props:
                out["properties"] = props
        # patternProperties combined with another side's additionalProperties is not exact
        if ("patternProperties" in a and "additionalProperties" in b and b["additionalProperties"] is not True) or \
                ("patternProperties" in b and "additionalProperties" in a and a["additionalProperties"] is not True):
            self.unsupported(ptr, "patternProperties", "patternProperties of one allOf branch combined with "
                                                       "additionalProperties of another")
        if "prefixItems" in a and "prefixItems" not in b and "items" in b:
            out["prefixItems"] = [{"allOf": [x, b["items"]]} for x in a["prefixItems"]]
        if "prefixItems" in b and "prefixItems" not in a and "items" in a:
            out["prefixItems"] = [{"allOf": [x, a["items"]]} for x in b["prefixItems"]]
        out["_res"] = a.get("_res") or b.get("_res")
        out["_ptr"] = a.get("_ptr", ptr)
        return out

    def bounds(self, flat: dict, lower: bool) -> list[tuple[Decimal, bool]]:
        """The (value, exclusive) bounds on one side, read as the schema's draft reads them.

        Drafts 3 and 4: ``exclusiveMinimum`` is a flag on ``minimum`` (any true value; alone it
        does nothing), as `jsonschema` reads it.  Later drafts: a number of its own, or a
        boolean flag as in draft 4 (what such a schema's author meant).
        """
        bound, flag = ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
        value, ex = flat.get(bound), flat.get(flag)
        out = []
        try:
            if value is not None:
                modifier = bool(ex) if (self.old_draft or isinstance(ex, bool)) else False
                out.append((_dec(value), modifier))
            if ex is not None and not self.old_draft and not isinstance(ex, bool):
                out.append((_dec(ex), True))
        except (TypeError, ValueError, ArithmeticError):
            raise UnsupportedSchema(flat.get("_ptr", ""), bound, "bounds must be numbers") from None
        return out

    def merge_bounds(self, a: dict, b: dict, out: dict, lower: bool) -> None:
        """Both sides' bounds in ``out`` as the tighter one, exactly (exclusive where it is on either side)."""
        bound, flag = ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
        if not any(k in d for d in (a, b) for k in (bound, flag)):
            return
        sides = self.bounds(a, lower) + self.bounds(b, lower)
        out.pop(bound, None)
        out.pop(flag, None)
        if not sides:
            return
        value = max(v for v, _ in sides) if lower else min(v for v, _ in sides)
        exclusive = any(x for v, x in sides if v == value)
        number = int(value) if value == value.to_integral_value() else float(value)
        if self.old_draft:
            out[bound] = number
            if exclusive:
                out[flag] = True
        else:
            out[flag if exclusive else bound] = number

    # -- types ---------------------------------------------------------------------------------

    def types_of(self, flat: dict) -> set:
        t = flat.get("type")
        if t is None:
            types = {"null", "boolean", "object", "array", "number", "integer", "string"}
        else:
            types = set(t if isinstance(t, list) else [t])
            if "number" in types:
                types.add("integer")
        if "enum" in flat or "const" in flat:
            vals = flat["enum"] if "enum" in flat else [flat["const"]]
            vt = set()
            for v in vals:
                tv = _type_of(v)
                vt.add(tv)
                if tv == "integer":
                    vt.add("number")
            types &= vt
        return types

    # -- values ----------------------------------------------------------------------------------

    def value(self, node, resolver, ptr: str) -> list:
        """Grammar alternatives for a JSON value matching ``node``: list of symbols (terminals merged)."""
        self.where = ptr or "#"
        key = None
        # A bare reference stands for its target: follow chains of them in a loop (a chain of
        # thousands would otherwise be as many nested calls).  One that comes back to itself
        # never reaches a schema.
        chain: set[int] = set()
        while isinstance(node, dict):
            resolver = self.enter(node, resolver, ptr)
            if not ("$ref" in node and (self.old_ref or all(k in ANNOTATIONS or k == "$ref" for k in node))):
                break
            if id(node) in chain:
                raise UnsupportedSchema(ptr, "$ref", "circular reference with no schema in between")
            chain.add(id(node))
            resolved = self.lookup(resolver, node["$ref"], ptr)
            if len(chain) % 256 == 0:
                self.g.check_time(ptr)
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
            alts = self.flat(node, resolver, ptr)
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

    def alts_symbols(self, alts: list, ptr: str) -> list:
        term_keys: list[tuple] = []
        nts: list[str] = []
        for flat in alts:
            if "_anyOf" in flat:
                rest = {k: v for k, v in flat.items() if k != "_anyOf"}
                sub = [self.merge(rest, x, ptr) for x in flat["_anyOf"]]
                nts.extend(self.alts_symbols([s for s in sub if s is not None], ptr))
                continue
            tk, ns = self.flat_value(flat)
            term_keys.extend(tk)
            nts.extend(ns)
        out = []
        if term_keys:
            uniq = list(dict.fromkeys(term_keys))
            key = uniq[0] if len(uniq) == 1 else ("union", tuple(sorted(uniq, key=repr)))
            if not _dfa.is_empty(self.g.bare(key, ptr)):
                out.append(self.g.term(key))
        out.extend(dict.fromkeys(nts))
        return out

    def flat_value(self, flat: dict) -> tuple[list, list]:
        """(terminal descriptions, nonterminal symbols) for one flat schema."""
        if "enum" in flat or "const" in flat:
            return self.finite(flat)
        types = self.types_of(flat)
        nots = flat.get("_not", [])
        terms, nts = [], []
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
            key = self.scalar_key(flat, t, types)
            if key is None:
                continue
            if key is _ANY:
                key = {"null": ("lit", b"null"), "boolean": ("alt", (b"true", b"false")),
                       "string": ("string", ((), 0, None, (), ())), "number": ("num", None, False, None, False, None)}[t]
            for nf in nots:
                nk = self.not_key(nf, t)
                if nk is None:
                    continue
                if nk is _ANY:
                    key = None
                    break
                key = ("minus", key, nk)
            if key is not None:
                terms.append(key)
        return terms, nts

    def not_key(self, a: dict, t: str):
        """Terminal description of the values of scalar type ``t`` matching flat ``a`` (None: none; _ANY: all)."""
        if "_not" in a:
            self.unsupported(a.get("_ptr", ""), "not", "nested negation is not supported")
            return None
        types = self.types_of(a) & ({"number", "integer"} if t == "number" else {t})
        if not types:
            return None
        if "enum" in a or "const" in a:
            tk, _ = self.finite(a)
            keys = [k for k in tk if self._key_type(k) == t]
            if not keys:
                return None
            return keys[0] if len(keys) == 1 else ("union", tuple(sorted(set(keys), key=repr)))
        return self.scalar_key(a, t, self.types_of(a))

    @staticmethod
    def _key_type(k):
        if k[0] == "lit":
            return "null" if k[1] == b"null" else "boolean" if k[1] in (b"true", b"false") else "number"
        if k[0] == "alt":
            return "boolean"
        if k[0] in ("strlit", "string"):
            return "string"
        return "number"

    def scalar_key(self, flat: dict, t: str, types: set | None = None):
        """Terminal description for the values of scalar type ``t`` (``_ANY``: unconstrained)."""
        ptr = flat.get("_ptr", "")
        if types is None:
            types = self.types_of(flat)
        if t == "null":
            return ("lit", b"null") if "null" in types else None
        if t == "boolean":
            return ("alt", (b"true", b"false")) if "boolean" in types else None
        if t == "string":
            if "string" not in types:
                return None
            patterns = list(flat.get("_patterns", []))
            if "pattern" in flat:
                patterns.insert(0, flat["pattern"])
            formats = list(flat.get("_formats", []))
            if "format" in flat:
                formats.insert(0, flat["format"])
            fmts = []
            for f in formats:
                if f in FORMATS:
                    fmts.append(f)
                else:
                    self.unsupported(ptr, "format", f"unknown format {f!r} (supported: {', '.join(sorted(FORMATS))})")
            pats = []
            for p in patterns:
                try:
                    _strings.pattern_content(p, self.opts.max_states)
                    pats.append(p)
                except RegexError as exc:
                    self.unsupported(ptr, "pattern", f"{p!r}: {exc}")
                except LimitExceeded as exc:
                    if not self.opts.lenient:
                        raise SchemaTooLarge(ptr, f"pattern {p!r}: {exc}") from None
                    self.relaxed.append(f"{ptr or '#'}: pattern: {exc}")
            min_len = int(flat.get("minLength", 0))
            max_len = flat.get("maxLength")
            max_len = int(max_len) if max_len is not None else None
            if max_len is not None and max_len < min_len:
                return None
            if not pats and not fmts and min_len == 0 and max_len is None:
                return _ANY
            return ("string", (tuple(pats), min_len, max_len, tuple(sorted(set(fmts))), ()))
        if t == "number":
            is_int = "number" not in types and "integer" in types
            if not ({"number", "integer"} & types):
                return None
            lo, lo_x, hi, hi_x = None, False, None, False
            lows, highs = self.bounds(flat, True), self.bounds(flat, False)
            if lows:
                lo = max(v for v, _ in lows)
                lo_x = any(x for v, x in lows if v == lo)
            if highs:
                hi = min(v for v, _ in highs)
                hi_x = any(x for v, x in highs if v == hi)
            try:
                mult = None
                if "multipleOf" in flat:
                    m = _dec(flat["multipleOf"])
                    if m <= 0:
                        raise UnsupportedSchema(ptr, "multipleOf", "must be positive")
                    mult = _numbers.decimal_ratio(m)
            except (TypeError, ValueError, ArithmeticError):
                raise UnsupportedSchema(ptr, "minimum", "bounds must be numbers") from None
            if is_int:
                ilo = None if lo is None else (math.floor(lo) + 1 if lo_x else math.ceil(lo))
                ihi = None if hi is None else (math.ceil(hi) - 1 if hi_x else math.floor(hi))
                return ("int", ilo, ihi, mult, self.g.int_fraction)
            if lo is None and hi is None and mult is None:
                return _ANY
            if mult is not None and mult[1] == 0 and mult[0] >= 1 and False:
                pass
            return ("num", None if lo is None else str(lo), lo_x, None if hi is None else str(hi), hi_x, mult)
        return None

    def finite(self, flat: dict) -> tuple[list, list]:
        ptr = flat.get("_ptr", "")
        flat = _const_as_enum(flat)
        values = flat["enum"]
        if not isinstance(values, list):
            raise UnsupportedSchema(ptr, "enum", "must be an array")
        others = {k: v for k, v in flat.items() if k not in ("enum", "const") and not k.startswith("_")
                  and k not in ANNOTATIONS}
        extra = [k for k in flat if k in ("_patterns", "_formats", "_not", "_anyOf")]
        keep = []
        for v in values:
            if any(_json_eq(v, w) for w in keep):
                continue
            if (others or extra) and not self.validates(v, _clean(flat), flat["_res"]):
                continue
            keep.append(v)
        # Under drafts 3 and 4 a value typed "integer" (not "number") may not be written 1.0.
        declared = flat.get("type")
        declared = set(declared if isinstance(declared, list) else [declared])
        integer_only = not self.g.int_fraction and "integer" in declared and "number" not in declared
        terms, nts = [], []
        for v in keep:
            if v is None:
                terms.append(("lit", b"null"))
            elif isinstance(v, bool):
                terms.append(("lit", b"true" if v else b"false"))
            elif isinstance(v, (int, float)):
                terms.append(_number_key(v, integer_only, typed=not self.g.int_fraction))
            elif isinstance(v, str):
                terms.append(("strlit", v))
            elif isinstance(v, list):
                node = {"type": "array", "prefixItems": [{"const": x} for x in v], "items": False,
                        "minItems": len(v)}
                sym = self.array_value({**node, "_res": flat["_res"], "_ptr": ptr})
                if sym:
                    nts.append(sym)
            elif isinstance(v, dict):
                node = {"type": "object", "properties": {k: {"const": x} for k, x in v.items()},
                        "required": list(v), "additionalProperties": False}
                sym = self.object_value({**node, "_res": flat["_res"], "_ptr": ptr})
                if sym:
                    nts.append(sym)
        return terms, nts

    # -- the open-ended value ------------------------------------------------------------------

    def any_value(self) -> str:
        """Any JSON value inside a schema's container, nested at most ``max_depth - 1`` levels.

        One recursive rule set: the bound is not in the rules but in the IR (`_opening_states`),
        which the engine enforces on the parser stack.
        """
        if self.any_sym is not None:
            return self.any_sym
        g = self.g
        sym = self.any_sym = g.nt("any")
        scalars = g.term(("union", tuple(sorted([("lit", b"null"), ("alt", (b"true", b"false")),
                                                  ("string", ((), 0, None, (), ())),
                                                  ("num", None, False, None, False, None)], key=repr))))
        g.rule(sym, (scalars,))
        if self.opts.max_depth > 1:
            inner = sym
            obj, arr = g.nt("anyobj"), g.nt("anyarr")
            g.open_containers = (obj, arr)
            more_o, more_a = g.nt("anyobj_more"), g.nt("anyarr_more")
            key = g.term(("key", ("string", ((), 0, None, (), ()))))
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
            for s in syms:
                self.g.rule(nt, (s,), ptr)
        return nt

    # -- objects ---------------------------------------------------------------------------------

    def object_value(self, flat: dict) -> str | None:
        g, ptr, res = self.g, flat.get("_ptr", ""), flat["_res"]
        props_schema = flat.get("properties", {})
        if not isinstance(props_schema, dict):
            raise UnsupportedSchema(ptr, "properties", "must be an object")
        required = list(dict.fromkeys(flat.get("required", [])))
        patterns = flat.get("patternProperties", {}) or {}
        additional = flat.get("additionalProperties", None)
        if additional is None:
            additional = False if self.opts.closed else True
        names = list(props_schema)
        for r in required:
            if r not in props_schema:
                names.append(r)
        pnames = flat.get("propertyNames")
        min_p = int(flat.get("minProperties", 0))
        max_p = flat.get("maxProperties")
        max_p = int(max_p) if max_p is not None else None
        if max_p is not None and max_p < min_p:
            return None
        compiled_patterns = [_NamePattern(p, self.opts.max_states) for p in patterns]
        # defined properties: (name, value symbol, required)
        defined = []
        for name in names:
            parts = []
            if name in props_schema:
                parts.append(props_schema[name])
            for p, rx in zip(patterns, compiled_patterns):
                try:
                    matched = rx.search(name)
                except RegexError as exc:
                    self.unsupported(f"{ptr}/patternProperties", "patternProperties", f"{p!r}: {exc}")
                    continue
                if matched:
                    parts.append(patterns[p])
            if not parts:
                parts.append(additional)
            if pnames is not None and not self.validates(name, pnames if not isinstance(pnames, dict) else pnames,
                                                         res):
                parts.append(False)
            sub_ptr = f"{ptr}/properties/{_esc(name)}"
            if len(parts) == 1:
                syms = self.value(parts[0], res, sub_ptr)
            else:
                syms = self.alts_symbols(self.flat({"allOf": parts}, res, sub_ptr), sub_ptr)
            sym = self.one(syms, sub_ptr)
            is_req = name in required
            if sym is None:
                if is_req:
                    return None
                continue
            defined.append((name, sym, is_req))
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
                k = ("string", ((p,), 0, None, (), defined_names))
                try:
                    self.g.bare(k, ptr)
                except RegexError as exc:
                    self.unsupported(f"{ptr}/patternProperties", "patternProperties", f"{p!r}: {exc}")
                    continue
                if pn_key is not None:
                    k = ("dfa", _dfa.intersect(self.g.bare(k), self.g.bare(pn_key), self.opts.max_states))
                pattern_keys.append((p, k, sub))
            overlap = any(not _dfa.disjoint(g.bare(pattern_keys[i][1]), g.bare(pattern_keys[j][1]))
                          for i in range(len(pattern_keys)) for j in range(i + 1, len(pattern_keys)))
            if not overlap:
                for p, k, sub in pattern_keys:
                    sym = self.one(self.value(sub, res, f"{ptr}/patternProperties/{_esc(p)}"), ptr)
                    if sym is not None and not _dfa.is_empty(g.bare(k)):
                        extras.append((k, sym))
            elif len(pattern_keys) > 6:
                self.unsupported(f"{ptr}/patternProperties", "patternProperties",
                                 "more than 6 overlapping patterns")
            else:
                # keys matching several patterns must match all their schemas: one key class per
                # combination of matched patterns
                m = len(pattern_keys)
                for mask in range(1, 1 << m):
                    inside = [pattern_keys[i] for i in range(m) if mask >> i & 1]
                    region = g.bare(inside[0][1])
                    for _, k, _ in inside[1:]:
                        region = _dfa.intersect(region, g.bare(k), self.opts.max_states)
                    for i in range(m):
                        if not mask >> i & 1 and not _dfa.is_empty(region):
                            region = _dfa.difference(region, g.bare(pattern_keys[i][1]), self.opts.max_states)
                    if _dfa.is_empty(region):
                        continue
                    subs = [sub for _, _, sub in inside]
                    rptr = f"{ptr}/patternProperties"
                    syms = self.value(subs[0], res, rptr) if len(subs) == 1 else \
                        self.alts_symbols(self.flat({"allOf": subs}, res, rptr), rptr)
                    sym = self.one(syms, rptr)
                    if sym is not None:
                        extras.append((("dfa", region), sym))
            if additional is not False:
                k = ("string", ((), 0, None, (), defined_names))
                if pn_key is not None:
                    k = ("dfa", _dfa.intersect(self.g.bare(k), self.g.bare(pn_key), self.opts.max_states))
                for _, pk, _ in pattern_keys:
                    k = ("minus", k, pk)
                if additional is True:
                    sym = self.any_value()
                else:
                    sym = self.one(self.value(additional, res, f"{ptr}/additionalProperties"), ptr)
                if sym is not None and not _dfa.is_empty(g.bare(k)):
                    extras.append((k, sym))
        n = len(defined)
        cap = max(1, min_p, max_p or 0)
        if cap > self.opts.max_repeat:
            raise SchemaTooLarge(ptr, f"minProperties/maxProperties {cap} is above max_repeat={self.opts.max_repeat}")
        counting = min_p > 1 or max_p is not None
        if not counting:
            cap = 1
        # O(i, c): next defined property is i, c properties emitted so far (capped)
        names_nt: dict[tuple[int, int], str] = {}

        def O(i, c):
            key = (i, c)
            if key not in names_nt:
                names_nt[key] = g.nt("obj")
            return names_nt[key]

        close, comma = g.term(("lit", b"}")), g.term(("lit", b","))
        todo = [(0, 0)]
        seen = set()
        while todo:
            i, c = todo.pop()
            if (i, c) in seen:
                continue
            seen.add((i, c))
            lhs = O(i, c)
            nxt_c = min(c + 1, cap) if not (max_p is not None) else c + 1
            if i < n:
                name, sym, is_req = defined[i]
                if max_p is None or c + 1 <= max_p:
                    kt = g.term(("key", ("strlit", name)))
                    g.rule(lhs, ((kt,) if c == 0 else (comma, kt)) + (sym, O(i + 1, nxt_c)), ptr)
                    todo.append((i + 1, nxt_c))
                if not is_req:
                    g.rule(lhs, (O(i + 1, c),), ptr)
                    todo.append((i + 1, c))
            else:
                if c >= min_p:
                    g.rule(lhs, (close,), ptr)
                if max_p is None or c + 1 <= max_p:
                    for k, sym in extras:
                        kt = g.term(("key", k))
                        g.rule(lhs, ((kt,) if c == 0 else (comma, kt)) + (sym, O(n, nxt_c)), ptr)
                        todo.append((n, nxt_c))
        obj = g.nt("object")
        g.rule(obj, (g.term(("lit", b"{")), O(0, 0)), ptr)
        return obj

    def key_content(self, pnames, res, ptr):
        """A key description for propertyNames (a string schema)."""
        alts = self.flat(pnames, res, ptr)
        keys = []
        for a in alts:
            if "enum" in a or "const" in a:
                for v in (a["enum"] if "enum" in a else [a["const"]]):
                    if isinstance(v, str) and self.validates(v, _clean(a), a["_res"]):
                        keys.append(("strlit", v))
                continue
            if "string" not in self.types_of(a):
                continue
            k = self.scalar_key(a, "string")
            if k is _ANY:
                k = ("string", ((), 0, None, (), ()))
            if k is not None:
                keys.append(k)
        if not keys:
            return None
        return keys[0] if len(keys) == 1 else ("union", tuple(sorted(set(keys), key=repr)))

    # -- arrays ----------------------------------------------------------------------------------

    def array_value(self, flat: dict) -> str | None:
        g, ptr, res = self.g, flat.get("_ptr", ""), flat["_res"]
        items = flat.get("items", True)
        prefix = flat.get("prefixItems", [])
        if isinstance(items, list):  # draft 4-2019 tuple form
            prefix = items
            items = flat.get("additionalItems", True)
        min_i = int(flat.get("minItems", 0))
        max_i = flat.get("maxItems")
        max_i = int(max_i) if max_i is not None else None
        if max_i is not None and max_i < min_i:
            return None
        if flat.get("uniqueItems") is True and (max_i is None or max_i > 1):
            unique = self.unique_array(flat, prefix, items, min_i, max_i)
            if unique is not False:
                return unique
            self.unsupported(ptr, "uniqueItems", "uniqueness is only enforced for items from a finite set of at most "
                                                 "8 scalar values (it is not a context-free constraint in general)")
        contains = flat.get("contains")
        if contains is not None:
            return self.array_contains(flat, prefix, items, min_i, max_i, contains)
        prefix_syms = []
        for i, sub in enumerate(prefix):
            prefix_syms.append(self.one(self.value(sub, res, f"{ptr}/prefixItems/{i}"), ptr))
        item_sym = self.one(self.value(items, res, f"{ptr}/items"), ptr) if items is not True else \
            self.any_value()
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
            if bounded and k > max_i:
                break
            lhs = A(k)
            if k >= min_i:
                g.rule(lhs, (close,), ptr)
            if bounded and k + 1 > max_i:
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
        return arr

    def unique_array(self, flat, prefix, items, min_i, max_i):
        """uniqueItems over a finite set of scalar item values: track the subset used (False: not applicable)."""
        g, ptr, res = self.g, flat.get("_ptr", ""), flat["_res"]
        if prefix or "contains" in flat or items is True:
            return False
        try:
            alts = self.flat(items, res, f"{ptr}/items")
        except GuidedError:
            return False
        values = self.finite_values(alts) if alts else None
        if values is None and len(alts) == 1 and self.types_of(alts[0]) <= {"boolean", "null"}:
            values = ([True, False] if "boolean" in self.types_of(alts[0]) else []) + \
                ([None] if "null" in self.types_of(alts[0]) else [])
        if values is None:
            return False
        keep = []
        for v in values:
            if isinstance(v, (dict, list)):
                return False
            if any(_json_eq(v, w) for w in keep):
                continue
            if all(self.validates(v, _clean(a), a["_res"]) is False for a in alts):
                continue
            keep.append(v)
        if len(keep) > 8:
            return False
        terms = []
        for v in keep:
            tk, _ = self.finite({"_res": res, "_ptr": ptr, "enum": [v]})
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

    def array_contains(self, flat, prefix, items, min_i, max_i, contains):
        """``contains`` where the item schema and ``contains`` split into disjoint scalar terminals."""
        g, ptr, res = self.g, flat.get("_ptr", ""), flat["_res"]
        cptr = f"{ptr}/contains"
        min_c = int(flat.get("minContains", 1))
        max_c = flat.get("maxContains")
        max_c = int(max_c) if max_c is not None else None
        if prefix:
            self.unsupported(cptr, "contains", "contains together with prefixItems is not supported")
            return self.array_value({k: v for k, v in flat.items() if k != "contains"})
        item_alts = self.flat(items, res, f"{ptr}/items")
        yes_alts = self.conj(item_alts, self.flat(contains, res, cptr), cptr)
        saved = self.opts.lenient
        self.opts.lenient = False
        try:
            no_alts = self.conj(item_alts, self.negate(contains, res, cptr, 1), cptr)
        except (UnsupportedSchema, SchemaTooLarge) as exc:
            self.opts.lenient = saved
            if min_c == 0 and max_c is None:
                return self.array_value({k: v for k, v in flat.items() if k != "contains"})
            self.unsupported(cptr, "contains", f"the items that do not match 'contains' cannot be expressed ({exc})")
            return self.array_value({k: v for k, v in flat.items() if k != "contains"})
        finally:
            self.opts.lenient = saved
        yes = self.one(self.alts_symbols(yes_alts, cptr), cptr)
        no = self.one(self.alts_symbols(no_alts, cptr), cptr)
        cap_c = max(min_c, (max_c or 0)) + 1
        cap_i = max(min_i, (max_i or 0), 1)
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
            for sym, dc in ((yes, 1), (no, 0)):
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

    def alts_terminal(self, alts):
        keys = []
        for a in alts:
            if "_anyOf" in a:
                raise _NotTerminal
            tk, nts = self.flat_value(a)
            if nts:
                raise _NotTerminal
            keys.extend(tk)
        if not keys:
            return None
        keys = list(dict.fromkeys(keys))
        return keys[0] if len(keys) == 1 else ("union", tuple(sorted(keys, key=repr)))

    # -- the whole grammar -----------------------------------------------------------------------

    def compile(self) -> CfgIR:
        g = self.g
        syms = self.value(self.root, self.resolver, "")
        if not syms:
            raise UnsupportedSchema("#", "schema", "the schema accepts no JSON value at all")
        start = "start"
        for s in syms:
            g.rule(start, (s,))
        return _to_ir(g, start, self.root)


class _NotTerminal(Exception):
    pass


def _const_as_enum(d: dict) -> dict:
    """``const`` folded into ``enum`` (intersected with it when both are present)."""
    if "const" not in d:
        return d
    out = {k: v for k, v in d.items() if k != "const"}
    if "enum" in d and isinstance(d["enum"], list):
        out["enum"] = [v for v in d["enum"] if _json_eq(v, d["const"])]
    else:
        out["enum"] = [d["const"]]
    return out


def _accepts_resolver(cls) -> bool:
    import inspect

    try:
        return "_resolver" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def _clean(flat: dict):
    """A flat schema back as a plain JSON Schema (for the jsonschema validator)."""
    out = {}
    all_of = []
    for k, v in flat.items():
        if k in ("_res", "_ptr"):
            continue
        if k == "_patterns":
            all_of.extend({"pattern": p} for p in v)
        elif k == "_formats":
            all_of.extend({"format": f} for f in v)
        elif k == "_not":
            all_of.extend({"not": _clean(n)} for n in v)
        elif k == "_anyOf":
            all_of.append({"anyOf": [_clean(x) for x in v]})
        else:
            out[k] = v
    if all_of:
        out["allOf"] = all_of
    return out


def _schema_for_extra(side: dict, name: str):
    """The schema ``side`` applies to a property it does not list."""
    for p, s in (side.get("patternProperties") or {}).items():
        try:
            if _NamePattern(p).search(name):
                return s
        except RegexError:
            return True
    return side.get("additionalProperties", True)


class _NamePattern:
    """A ``patternProperties`` pattern deciding a known property name, read as ECMA-262 (as the
    key automata read it): Python's ``re`` differs (``$`` before a final newline, Unicode ``\\w``).

    Its automaton (the one the key automata use: built once) is built when a name is asked about;
    `search` raises `RegexError` for a pattern guided cannot read.
    """

    def __init__(self, pattern: str, max_states: int = 100_000):
        self.pattern, self.max_states = pattern, max_states

    def search(self, name: str) -> bool:
        dfa = _strings.pattern_content(self.pattern, self.max_states)
        return dfa.fullmatch(json.dumps(name, ensure_ascii=False)[1:-1].encode())


def _frac_lcm(a: Fraction, b: Fraction) -> Fraction:
    return Fraction(math.lcm(a.numerator, b.numerator), math.gcd(a.denominator, b.denominator))


def _esc(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _number_key(v, integer_only: bool, typed: bool = False) -> tuple:
    """The terminal of one enum number: every exponent-free spelling of its value (``1``,
    ``1.0``, ``1.00``; ``-0`` for 0), and the one ``json.dumps`` writes when it has an exponent.

    ``typed`` (drafts 3 and 4, where ``1`` is an integer and ``1.0`` is not): the value is produced
    only in spellings of its own type, so that a sibling ``not: {"type": "integer"}`` holds for
    every spelling; its exact automaton (what a negation takes away) still has them all.
    """
    d = _dec(v)
    text = format(d.normalize(), "f") if d else "0"
    dumped = json.dumps(v).encode()
    spelled = None if not typed else "int" if isinstance(v, int) else "frac"
    return ("numlit", text, integer_only, dumped if b"e" in dumped.lower() and not integer_only else b"", spelled)


# ------------------------------------------------------------------------------------------------
# LALR tables


def _productive_rules(rules, is_term) -> list:
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


def _to_ir(g: _Grammar, start: str, source) -> CfgIR:
    terms = g.term_keys
    is_term = lambda s: s.startswith("T") and s[1:].isdigit()  # noqa: E731
    rules = _productive_rules(g.rules, is_term)
    if not any(lhs == start for lhs, _ in rules):
        raise UnsupportedSchema("#", "schema", "the schema accepts no JSON value at all")
    tables = lalr_tables(rules, {f"T{i}": i for i in range(len(terms))}, start, check=g.check_time)
    terminals = [Terminal(name=f"T{i}", dfa=g.bare(key), order=i) for i, key in enumerate(terms)]
    ignore = frozenset()
    if g.opts.ws:
        # Whitespace between tokens is one ignored lexeme of at most ``ws`` bytes, which may not
        # follow another (``ignore_repeats=False``): every run is bounded.
        ignore = frozenset([len(terminals)])
        terminals.append(Terminal(name="WS", dfa=_ws_dfa(g.opts.ws), order=len(terminals)))
    return CfgIR(
        terminals=tuple(terminals),
        ignore=ignore,
        ignore_repeats=False,
        nesting_states=_opening_states(tables, g.open_containers),
        max_nesting=max(0, g.opts.max_depth - 1),
        source=f"JSON Schema {json.dumps(source)[:180]}",
        **tables.ir_fields(),
    )
