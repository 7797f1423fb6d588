"""Schema algebra: a JSON Schema (dict or boolean) to a disjunction of *flat* schemas.

A flat schema has no in-place applicator left (``$ref``, ``allOf``, ``anyOf``, ``oneOf``, ``not``,
``if``/``then``/``else``, dependencies): they are resolved, merged (``allOf`` as intersection of
keywords), distributed (unions) and negated (De Morgan) here, so that the rule emitter sees only
keywords it can turn into grammar rules directly.  Subschemas under ``properties``, ``items`` and
the like stay raw: they are normalised when the emitter reaches them.  What the emitter reads of a
flat schema is typed: its object and array keywords as `ObjectPart` and `ArrayPart`, its scalar
part as a terminal description (`Normaliser.scalar_key`) for the terminal builder.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Hashable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass, replace
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import referencing
import referencing.exceptions
import referencing.jsonschema as rjs

from guided.errors import GuidedError, LimitExceeded, RegexError
from guided.frontends.jsonschema import _numbers, _strings
from guided.frontends.jsonschema._exact import exact_validator_class
from guided.frontends.jsonschema._formats import DRAFT3_UNENFORCED, FORMATS, UNENFORCED
from guided.frontends.jsonschema.errors import InvalidSchema, SchemaTooLarge, UnsupportedSchema
from guided.frontends.jsonschema.options import Options
from guided.frontends.jsonschema.terminals import BOOLEAN, NULL, IntegerRange, NumberRange, StringSpec, Terminals
from guided.ir import dfa_ops as _dfa

if TYPE_CHECKING:
    from referencing._core import Resolver  # referencing exports the type only from here

ANNOTATIONS = {
    "title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly",
    "$schema", "$id", "id", "$anchor", "$defs", "definitions", "$vocabulary", "contentMediaType",
    "contentEncoding", "contentSchema", "$dynamicAnchor", "$recursiveAnchor", "example", "discriminator",
    "nullable", "x-", "markdownDescription", "errorMessage", "additionalItems", "unevaluatedProperties",
    "unevaluatedItems",
}
STRING_KW = {"minLength", "maxLength", "pattern", "format"}
NUMBER_KW = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
OBJECT_KW = {"properties", "required", "additionalProperties", "patternProperties", "propertyNames",
             "minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "dependencies",
             "unevaluatedProperties"}
ARRAY_KW = {"items", "prefixItems", "additionalItems", "minItems", "maxItems", "contains", "minContains",
            "maxContains", "uniqueItems", "unevaluatedItems"}
VALIDATION_KW = {"type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
                 "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains",
                 "minContains", "maxProperties", "minProperties", "required", "dependentRequired"}
"""The keywords of the validation vocabulary (2019-09 and later): a metaschema whose
``$vocabulary`` leaves it out makes them annotations."""
TYPES = ("null", "boolean", "object", "array", "number", "string")  # "integer" is a kind of number
KNOWN = STRING_KW | NUMBER_KW | OBJECT_KW | ARRAY_KW | {
    "type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref",
    "$dynamicRef", "$recursiveRef"} | ANNOTATIONS

ANY = object()  # marker: the unconstrained values of a scalar type (`Normaliser.scalar_key`)

@dataclass(frozen=True, eq=False)
class SomeKey:
    """The object has some key in a region whose value matches `value`.

    ``kind`` says which keyword was negated: ``"additional"`` (a key outside ``names`` and
    ``patterns`` whose value fails ``schema``), ``"pattern"`` (a key matching ``patterns[0]`` whose
    value fails ``schema``) or ``"names"`` (a key that fails the ``propertyNames`` ``schema``).
    """

    kind: str
    schema: Any
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @functools.cached_property
    def value(self) -> Any:
        """The schema the witness key's value matches (one object: the emitter memoises
        schemas by identity)."""
        return True if self.kind == "names" else {"not": self.schema}

    @property
    def other(self) -> Any:
        """Its negation: the schema every other key's value in the region matches."""
        return False if self.kind == "names" else self.schema

    def plain(self) -> dict:
        """The same constraint as a plain JSON Schema (for the jsonschema validator)."""
        if self.kind == "additional":
            return {"not": {"properties": {n: True for n in self.names},
                            "patternProperties": {p: True for p in self.patterns},
                            "additionalProperties": self.schema}}
        if self.kind == "pattern":
            return {"not": {"patternProperties": {self.patterns[0]: self.schema}}}
        return {"not": {"propertyNames": self.schema}}


def json_equal(a, b) -> bool:
    """Equal as JSON values: ``1 == 1.0`` but ``True != 1``, recursively."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def json_key(v) -> Hashable:
    """A hashable key, equal for two values exactly when :func:`json_equal` says they are equal.

    Python's ``1 == 1.0`` (and equal hashes) is JSON's number equality; booleans are tagged
    apart from numbers, objects compare as sets of members."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", v)
    if isinstance(v, dict):
        return ("o", frozenset((k, json_key(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("a", tuple(json_key(x) for x in v))
    return (type(v).__name__, v)


def distinct_json(values: Iterable) -> list:
    """``values`` without repeats under JSON equality, first occurrences in order."""
    seen: set = set()
    out = []
    for v in values:
        k = json_key(v)
        if k not in seen:
            seen.add(k)
            out.append(v)
    return out


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



@dataclass(frozen=True, eq=False, slots=True)
class Flat(Mapping[str, Any]):
    """One flat schema: JSON Schema keywords with no in-place applicator among them, where they
    came from, and what ``allOf`` and ``not`` added that one keyword cannot hold.

    It reads as the mapping of its keywords (``flat.get("minimum")``); it is never changed (the
    passes make new ones).  Property and item subschemas in ``keywords`` are raw schemas.  The
    rule emitter reads its object and array keywords as typed parts (`object_part`,
    `array_part`), its scalar ones as terminal descriptions (`Normaliser.scalar_key`).
    """

    keywords: Mapping[str, Any]
    resolver: Resolver[Any]  # resolves the ``$ref`` inside ``keywords``' subschemas
    pointer: str  # the JSON pointer of the schema it comes from, for errors
    patterns: tuple[str, ...] = ()  # further ``pattern``s (from allOf branches): all must match
    formats: tuple[str, ...] = ()  # further ``format``s, likewise
    negated: tuple[Flat, ...] = ()  # scalar schemas the value must not match (from ``not``)
    # Keys the object must have, each in a region of keys (what negating additionalProperties,
    # patternProperties or propertyNames leaves).
    witnesses: tuple[SomeKey, ...] = ()
    # (name, names): an object with key ``name`` also has every key of ``names`` (dependentRequired,
    # and draft 7's dependencies with a list), property_order="any" only: the any-order object
    # rules know which keys are written, so they check it where the object closes; otherwise it is
    # a union of "absent" and "present" objects, whose keys overlap.
    depends: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # (n, schema): ``contains`` counts only the items from position n on (what negating the items
    # after a tuple leaves); ``schema`` is the same constraint as a plain JSON Schema.
    contains_from: tuple[int, dict] | None = None

    # The mapping methods go straight to the keywords' dict: normalising reads them in its
    # innermost loops, where the generic `Mapping` ones (through __getitem__) cost 8% of compile time.
    def __getitem__(self, key: str) -> Any:
        return self.keywords[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keywords)

    def __len__(self) -> int:
        return len(self.keywords)

    def __contains__(self, key: object) -> bool:
        return key in self.keywords

    def get(self, key: str, default: Any = None) -> Any:
        return self.keywords.get(key, default)

    def keys(self) -> KeysView[str]:
        return self.keywords.keys()

    def items(self) -> ItemsView[str, Any]:
        return self.keywords.items()

    def values(self) -> ValuesView[Any]:
        return self.keywords.values()

    def with_keywords(self, keywords: Mapping[str, Any]) -> Flat:
        """The same flat schema with other keywords."""
        return replace(self, keywords=keywords)

    def without(self, *names: str) -> Flat:
        """The same flat schema less some keywords."""
        return self.with_keywords({k: v for k, v in self.keywords.items() if k not in names})

    @property
    def enumerated(self) -> bool:
        """Whether it lists its values (``enum`` or ``const``): the emitter writes each one."""
        return "enum" in self.keywords or "const" in self.keywords

    @property
    def declared_types(self) -> set[str]:
        """The type names its ``type`` keyword lists (none without one; `Normaliser.types_of`
        says which types its values may have)."""
        declared = self.keywords.get("type")
        if declared is None:
            return set()
        return set(declared if isinstance(declared, list) else [declared])

    def object_part(self) -> ObjectPart:
        """Its object keywords, read once (see `ObjectPart`)."""
        props = self.keywords.get("properties", {})
        if not isinstance(props, dict):
            raise UnsupportedSchema(self.pointer, "properties", "must be an object")
        max_p = self.keywords.get("maxProperties")
        return ObjectPart(
            properties=props,
            required=tuple(dict.fromkeys(self.keywords.get("required", []))),
            pattern_properties=self.keywords.get("patternProperties", {}) or {},
            additional=self.keywords.get("additionalProperties"),
            property_names=self.keywords.get("propertyNames"),
            min_properties=int(self.keywords.get("minProperties", 0)),
            max_properties=int(max_p) if max_p is not None else None,
            witnesses=self.witnesses,
            depends=self.depends)

    def array_part(self) -> ArrayPart:
        """Its array keywords, read once (see `ArrayPart`)."""
        kw = self.keywords
        items = kw.get("items", True)
        prefix = kw.get("prefixItems", [])
        if isinstance(items, list):  # draft 4-2019 tuple form
            prefix, items = items, kw.get("additionalItems", True)
        max_i = kw.get("maxItems")
        contains = kw.get("contains")
        max_c = kw.get("maxContains") if contains is not None else None
        return ArrayPart(
            prefix=tuple(prefix),
            items=items,
            min_items=int(kw.get("minItems", 0)),
            max_items=int(max_i) if max_i is not None else None,
            unique=kw.get("uniqueItems") is True,
            contains=contains,
            min_contains=int(kw.get("minContains", 1)) if contains is not None else 1,
            max_contains=int(max_c) if max_c is not None else None,
            contains_from=self.contains_from[0] if self.contains_from is not None else 0)


@dataclass(frozen=True, slots=True)
class ObjectPart:
    """The object keywords of a flat schema, as the rule emitter builds an object from them.

    Subschemas stay raw (the emitter normalises each when it reaches it).  Absent keywords are
    read as the specification reads them, except ``additional``: None when absent, since the
    emitter's ``closed`` option decides what an absent one means.
    """

    properties: Mapping[str, Any]  # name -> schema, in schema order (the order the output follows)
    required: tuple[str, ...]  # without repeats, in order
    pattern_properties: Mapping[str, Any]  # pattern -> schema
    additional: Any  # additionalProperties, None when absent
    property_names: Any  # the propertyNames schema, None when absent
    min_properties: int
    max_properties: int | None
    witnesses: tuple[SomeKey, ...]  # keys the object must have (`Flat.witnesses`)
    depends: tuple[tuple[str, tuple[str, ...]], ...]  # (name, names it needs), `Flat.depends`


@dataclass(frozen=True, slots=True)
class ArrayPart:
    """The array keywords of a flat schema, as the rule emitter builds an array from them: the
    tuple form of drafts 4 to 2019-09 (``items`` an array, then ``additionalItems``) and 2020-12's
    (``prefixItems``, then ``items``) read alike.  Subschemas stay raw."""

    prefix: tuple[Any, ...]  # the schemas of the first items, position by position
    items: Any  # the schema of every item after them (True: any value)
    min_items: int
    max_items: int | None
    unique: bool  # uniqueItems is true
    contains: Any  # the contains schema, None when absent
    min_contains: int  # (1 when contains is absent)
    max_contains: int | None
    contains_from: int  # contains counts the items from this position on (`Flat.contains_from`)

    def without_contains(self) -> ArrayPart:
        """The same array keywords less ``contains`` (and its counts)."""
        return replace(self, contains=None, min_contains=1, max_contains=None)


# Drafts before 7 have no if/then/else: there they are unknown keywords, which constrain nothing
# (read as conditions, a `not` around them would let invalid values through).
PRE_IF_DRAFTS = ("draft-03", "draft-04", "draft-06")


class Normaliser:
    """Normalises the subschemas of one root schema; records what it relaxes (lenient mode)."""

    def __init__(self, root: Any, opts: Options, terminals: Terminals, resources: dict | None = None):
        self.opts = opts
        self.terminals = terminals
        self.relaxed: list[str] = []
        # (pointer, name) of each string format nobody defines, ignored (unknown_formats="ignore")
        self.unknown_formats: dict[tuple[str, str], None] = {}
        self.root = root
        spec = rjs.DRAFT202012
        if isinstance(root, dict) and isinstance(root.get("$schema"), str):
            spec = rjs.specification_with(root["$schema"].rstrip("#") + ("#" if "draft-0" in root["$schema"] else ""),
                                          default=rjs.DRAFT202012)
        self.spec = spec
        self.draft = spec.name
        self.old_ref = self.draft in ("draft-03", "draft-04", "draft-06", "draft-07")
        self.old_draft = self.draft in ("draft-03", "draft-04")
        opts.int_fraction = not self.old_draft
        resource = spec.create_resource(root)
        base = resource.id() or "urn:guided:root"
        # Other documents the schema's references may name (`JsonSchema(resources=...)`), each
        # read as the draft its own "$schema" says, else as the root's.
        others = [(uri, referencing.Resource.from_contents(doc, default_specification=spec))
                  for uri, doc in (resources or {}).items()]
        self.registry = referencing.Registry().with_resources(others).with_resource(base, resource).crawl()
        # A metaschema given as a resource may choose vocabularies (2019-09 and later): without
        # the validation vocabulary its keywords constrain nothing; with format-assertion, formats
        # are asserted whatever `formats=` says.
        self.validation = True
        meta = (resources or {}).get(root.get("$schema")) if isinstance(root, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("$vocabulary"), dict) and \
                self.draft not in ("draft-03", "draft-04", "draft-06", "draft-07"):
            vocabularies = [uri for uri in meta["$vocabulary"] if isinstance(uri, str)]
            self.validation = any(uri.endswith("/vocab/validation") for uri in vocabularies)
            if any(uri.endswith("/vocab/format-assertion") for uri in vocabularies):
                opts.formats = "assert"
        self.resolver = self.registry.resolver(base)
        # A schema being applied in place (flattened) to the current value, with the 'not'
        # parity it entered at, by identity.
        self.in_progress: dict[Any, Any] = {}
        self.negations = 0  # 'not's between the value and the schema being flattened
        self._validator_cls: Any = None

    def unsupported(self, pointer: str, keyword: str, reason: str) -> None:
        """Strict: raise.  Lenient: record and go on (the caller then relaxes)."""
        if not self.opts.lenient:
            raise UnsupportedSchema(pointer, keyword, reason)
        self.relaxed.append(f"{pointer or '#'}: {keyword}: {reason}")


    def validates(self, value, schema, resolver) -> bool:
        return self.validator(schema, resolver)(value)

    def validator(self, schema, resolver) -> Callable[[Any], bool]:
        """``value -> valid?`` under ``schema``, one validator built for many values."""
        import jsonschema

        if self._validator_cls is None:
            # Numbers compared exactly (the specification's rule), as the compiled automata do.
            self._validator_cls = exact_validator_class(jsonschema.validators.validator_for(
                self.root if isinstance(self.root, dict) else {}, default=jsonschema.Draft202012Validator))
        cls = self._validator_cls
        v = cls(schema, registry=self.registry, _resolver=resolver) if _accepts_resolver(cls) else cls(
            schema, registry=self.registry)

        def is_valid(value) -> bool:
            try:
                return v.is_valid(value)
            except Exception:  # noqa: BLE001 - a schema jsonschema cannot run: count as not provable
                raise UnsupportedSchema("", "enum", "cannot check enum values against the sibling keywords")
        return is_valid

    def flat(self, node, resolver, ptr: str, depth: int = 0) -> list[Flat]:
        """The schema as a disjunction of flat schemas (no $ref/allOf/anyOf/oneOf/not/if left).

        Each flat schema (`Flat`) carries its resolver and its pointer.
        """
        if depth > 40:
            raise SchemaTooLarge(ptr, "references nest too deeply (a $ref cycle through allOf/anyOf?)")
        if node is True or node == {}:
            return [Flat({}, resolver, ptr)]
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
        if not self.validation:
            base = {k: v for k, v in base.items() if k not in VALIDATION_KW}
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
        alts = [Flat(base, resolver, ptr)]
        if "not" in node:
            alts = self.conj(alts, self.negate(node["not"], resolver, f"{ptr}/not", depth + 1), ptr)
        for key in ("$dynamicRef", "$recursiveRef"):
            if key in node:
                self.unsupported(ptr, key, "dynamic references are not supported")
        if "$ref" in node:
            ref = node["$ref"]
            resolved = self.lookup(resolver, ref, ptr)
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
        if "if" in node and ("then" in node or "else" in node) and self.draft not in PRE_IF_DRAFTS:
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
            if key == "dependentRequired" and not self.validation:
                continue
            if isinstance(node.get(key), dict):
                deps.update(node[key])
        required_deps = []
        for name, dep in deps.items():
            dptr = f"{ptr}/dependencies/{name}"
            if isinstance(dep, list) and self.opts.any_order and self.draft != "draft-03":
                required_deps.append((name, tuple(dep)))
                continue
            absent = [Flat({"properties": {name: False}}, resolver, dptr)]
            if isinstance(dep, list):
                present = [Flat({"required": [name] + list(dep)}, resolver, dptr)]
            else:
                present = self.conj([Flat({"required": [name]}, resolver, dptr)],
                                    self.flat(dep, resolver, dptr, depth + 1), ptr)
            alts = self.conj(alts, absent + present, ptr)
        if required_deps:
            alts = self.conj(alts, [Flat({}, resolver, ptr, depends=tuple(required_deps))], ptr)
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
        return [Flat({}, resolver, ptr)]

    def conj(self, left: list[Flat], right: list[Flat], ptr: str) -> list[Flat]:
        out = []
        for a in left:
            for b in right:
                m = self.merge(a, b, ptr)
                if m is not None:
                    out.append(m)
                    # Refused as soon as it is too many: finishing a product of thousands of
                    # merges only to refuse it took seconds (WashingtonPost---wp_26: 4.5 s).
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
                return [Flat({"enum": keep}, resolver, ptr)]
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

    def provably_disjoint(self, a: Flat, b: Flat, depth: int = 0) -> bool:
        """No value matches both (False: not proven).  Type by type: scalars by their automata,
        objects by a property that one of them requires and whose values the two keep apart (a
        discriminator, or a key one side forbids), either of them by disjoint size bounds."""
        ta, tb = self.types_of(a), self.types_of(b)
        if not (ta & tb):
            return True
        va, vb = self.finite_values([a]), self.finite_values([b])
        if va is not None and vb is not None:
            return not ({json_key(x) for x in va} & {json_key(y) for y in vb})
        if va is not None:
            return not any(self.validates(x, plain_schema(b), b.resolver) for x in va)
        if vb is not None:
            return not any(self.validates(x, plain_schema(a), a.resolver) for x in vb)
        common = ta & tb
        if "array" in common and not _ranges_apart(a, b, "minItems", "maxItems"):
            return False
        if "object" in common and not self.objects_disjoint(a, b, depth):
            return False
        scalars = common & {"string", "number", "integer", "boolean", "null"}
        if scalars:
            try:
                da = self.scalar_dfa(a, scalars)
                db = self.scalar_dfa(b, scalars)
            except GuidedError:
                return False
            if da is None or db is None or not _dfa.disjoint(da, db):
                return False
        return True

    def objects_disjoint(self, a: Flat, b: Flat, depth: int) -> bool:
        """No object matches both: size bounds apart, or a key one side requires whose value
        schemas on the two sides are disjoint (False where the other side forbids the key)."""
        if _ranges_apart(a, b, "minProperties", "maxProperties"):
            return True
        if depth > 6:
            return False
        required = [k for k in dict.fromkeys(list(a.get("required", [])) + list(b.get("required", [])))
                    if isinstance(k, str)]
        for k in required:
            try:
                sa, sb = self.schemas_for_key(a, k), self.schemas_for_key(b, k)
                if sa is False or sb is False:
                    return True
                fa = self.flat({"allOf": sa}, a.resolver, f"{a.pointer}/properties/{_esc(k)}", 1)
                fb = self.flat({"allOf": sb}, b.resolver, f"{b.pointer}/properties/{_esc(k)}", 1)
                if all(self.provably_disjoint(x, y, depth + 1) for x in fa for y in fb):
                    return True
            except GuidedError:
                continue
        return False

    def schemas_for_key(self, flat: Flat, name: str) -> list | bool:
        """The schemas ``flat`` applies to the value of key ``name`` (False: the key is forbidden),
        as the specification reads them (not ``closed``: a oneOf branch is compared before it is
        merged with its siblings, whose properties ``closed`` would also allow)."""
        props = flat.get("properties") or {}
        out = []
        if name in props:
            out.append(props[name])
        for p, sub in (flat.get("patternProperties") or {}).items():
            if NamePattern(p, self.opts.max_states).search(name):
                out.append(sub)
        if not out:
            out.append(flat.get("additionalProperties", True))
        names = flat.get("propertyNames")
        if names is not None and names is not True and not self.validates(name, names, flat.resolver):
            return False
        if any(s is False for s in out):
            return False
        return out

    def scalar_dfa(self, flat: Flat, types: set):
        keys = []
        if "integer" in types:
            types = (types - {"integer"}) | {"number"}
        for t in sorted(types):
            k = self.scalar_key(flat, t)
            if k is None:
                continue
            if k is ANY:
                return None
            keys.append(k)
        if not keys:
            return _dfa.EMPTY
        # Disjoint over the exact space means disjoint values: every number has a spelling there.
        return self.terminals.exact(("union", tuple(keys)) if len(keys) > 1 else keys[0])

    def negate(self, node, resolver, ptr, depth) -> list:
        """``not node`` as flat schemas (De Morgan over the flat alternatives), where expressible."""
        if node is True or node == {}:
            return []
        if node is False:
            return [Flat({}, resolver, ptr)]
        if isinstance(node, dict) and "not" in node and all(k == "not" or k in ANNOTATIONS for k in node):
            # not (not X) is X: exact, where negating X's flat schemas again might not be
            return self.flat(node["not"], self.enter(node, resolver, ptr), f"{ptr}/not", depth + 1)
        result = [Flat({}, resolver, ptr)]
        self.negations += 1
        try:
            alternatives = self.flat(node, resolver, ptr, depth + 1)
        finally:
            self.negations -= 1
        for f in alternatives:
            # guided asserts formats, while validators by default read them as annotations; under
            # 'not' only the annotation reading is sound for both (not {"format": "uuid"} allows
            # nothing, where asserting it would allow every non-UUID string).
            f = replace(f.without("format"), formats=())
            result = self.conj(result, self.negate_flat(f, ptr), ptr)
        return result

    def negate_flat(self, f: Flat, ptr: str) -> list:
        res = f.resolver
        types = self.types_of(f)
        num_in = bool({"number", "integer"} & types)
        other = [t for t in ("null", "boolean", "object", "array", "string") if t not in types]
        if not num_in:
            other.append("number")
        out = []
        if other:
            out.append(Flat({"type": other}, res, ptr))
        scalar = [t for t in ("null", "boolean", "string") if t in types] + (["number"] if num_in else [])
        if scalar:
            out.append(Flat({"type": scalar}, res, ptr, negated=(f,)))
        if "object" in types:
            out.extend(self.negate_object(f, ptr))
        if "array" in types:
            out.extend(self.negate_array(f, ptr))
        return out

    def negate_object(self, f: Flat, ptr: str) -> list:
        def obj(witnesses: tuple[SomeKey, ...] = (), **kw: Any) -> Flat:
            return Flat({"type": "object", **kw}, f.resolver, ptr, witnesses=witnesses)

        if "enum" in f or "const" in f:
            # the objects among the values the schema allows, each ruled out: a key missing, a
            # key with another value, or a key beyond the value's (a witness key)
            out = [obj()]
            for value in self.enum_kept(f):
                if isinstance(value, dict):
                    # disjoint: the first key (in the value's order) that is missing or differs
                    other: list = []
                    same: dict[str, Any] = {}
                    for k, v in value.items():
                        other.append(obj(properties={**same, k: False}, required=list(same)))
                        other.append(obj(properties={**same, k: {"not": {"const": v}}}, required=[*same, k]))
                        same[k] = {"const": v}
                    other.append(obj((SomeKey("additional", False, tuple(value)),), properties=same,
                                     required=list(same)))
                    out = self.conj(out, other, ptr)
            return out
        out = []
        for k in f.get("required", []):
            out.append(obj(properties={k: False}))
        for k, sub in (f.get("properties") or {}).items():
            if sub is True or sub == {}:
                continue
            out.append(obj(required=[k], properties={k: {"not": sub}}))
        for name, needed in f.depends:  # the key without one of the keys it needs
            out.extend(obj(required=[name], properties={k: False}) for k in needed if k != name)
        if f.get("minProperties", 0) > 0:
            out.append(obj(maxProperties=int(f["minProperties"]) - 1))
        if f.get("maxProperties") is not None:
            out.append(obj(minProperties=int(f["maxProperties"]) + 1))
        if f.witnesses:
            self.unsupported(ptr, "not", "negating a negated 'additionalProperties', 'patternProperties' or "
                                         "'propertyNames' is not supported")
        # Some key whose value fails its schema (or whose name fails propertyNames): the
        # emitter's object rules carry a flag for the witness key (`Flat.witnesses`).
        props = f.get("properties") or {}
        patterns = f.get("patternProperties") or {}
        additional = f.get("additionalProperties", True)
        some = []
        if additional is not True and additional != {}:
            some.append(SomeKey("additional", additional, tuple(props), tuple(patterns)))
        for p, sub in patterns.items():
            if sub is not True and sub != {}:
                some.append(SomeKey("pattern", sub, (), (p,)))
        names = f.get("propertyNames", True)
        if names is not True and names != {}:
            some.append(SomeKey("names", names))
        out.extend(obj((sk,)) for sk in some)
        if "unevaluatedProperties" in f and f["unevaluatedProperties"] not in (True, {}):
            self.unsupported(ptr, "not", "negating 'unevaluatedProperties' is not supported")
        return out

    def negate_array(self, f: Flat, ptr: str) -> list:
        def arr(**kw: Any) -> Flat:
            return Flat({"type": "array", **kw}, f.resolver, ptr)

        if "enum" in f or "const" in f:
            # the arrays among the values the schema allows, each ruled out at the first position
            # where it differs: an end, another item, or more items (disjoint alternatives, told
            # apart from left to right)
            tuple_key = "prefixItems" if self.draft in ("draft2020-12", "draft-next") else "items"
            out = [arr()]
            for value in self.enum_kept(f):
                if isinstance(value, list):
                    other = []
                    for i, v in enumerate(value):
                        same = [{"const": x} for x in value[:i]]
                        other.append(arr(**({tuple_key: same} if same else {}), minItems=i, maxItems=i))
                        other.append(arr(**{tuple_key: same + [{"not": {"const": v}}]}, minItems=i + 1))
                    same = [{"const": x} for x in value]
                    other.append(arr(**({tuple_key: same} if same else {}), minItems=len(value) + 1))
                    out = self.conj(out, other, ptr)
            return out
        out = []
        if f.get("minItems", 0) > 0:
            out.append(arr(maxItems=int(f["minItems"]) - 1))
        if f.get("maxItems") is not None:
            out.append(arr(minItems=int(f["maxItems"]) + 1))
        # Items: some item fails its schema.  Position i of a tuple: an array of at least i + 1
        # items whose item i fails (written in the schema's own form, prefixItems or an items
        # array); after the tuple, an item failing the rest's schema ('contains' its negation).
        items = f.get("items", True)
        if isinstance(items, list):
            prefix, prefix_key, rest = items, "items", f.get("additionalItems", True)
        else:
            prefix, prefix_key, rest = f.get("prefixItems", []), "prefixItems", items
        if not isinstance(prefix, list):
            prefix = []
        # Each alternative keeps the earlier positions matching (the alternatives are disjoint,
        # so that the grammar can tell them apart at the first item they differ on).
        for i, sub in enumerate(prefix):
            if sub is True or sub == {}:
                continue
            out.append(arr(**{prefix_key: list(prefix[:i]) + [{"not": sub}], "minItems": i + 1}))
        if rest is False:
            out.append(arr(**({prefix_key: list(prefix)} if prefix else {}), minItems=len(prefix) + 1))
        elif rest is not True and rest != {}:
            if prefix:
                rest_key = "additionalItems" if prefix_key == "items" else "items"
                plain = {"not": {prefix_key: [True] * len(prefix), rest_key: rest}}
                out.append(replace(arr(**{prefix_key: list(prefix), "minItems": len(prefix) + 1,
                                          "contains": {"not": rest}}), contains_from=(len(prefix), plain)))
            else:
                out.append(arr(contains={"not": rest}))
        # contains: fewer matching items than minContains (none: every item fails it), or more
        # than maxContains
        if f.contains_from is not None:
            self.unsupported(ptr, "not", "negating a negated 'items' after a tuple is not supported")
        elif "contains" in f:
            contains = f["contains"]
            low, high = f.get("minContains", 1), f.get("maxContains")
            if low > 0:
                if low == 1:
                    out.append(arr(items={"not": contains}))
                else:
                    out.append(arr(contains=contains, minContains=0, maxContains=int(low) - 1))
            if high is not None:
                out.append(arr(contains=contains, minContains=int(high) + 1))
        if f.get("uniqueItems") is True:
            self.unsupported(ptr, "not", "negating 'uniqueItems' is not supported")
        for k in ("unevaluatedItems",):
            if k in f and f[k] not in (True, {}):
                self.unsupported(ptr, "not", f"negating '{k}' is not supported")
        return out

    def merge(self, a: Flat, b: Flat, ptr: str) -> Flat | None:
        """``a`` and ``b`` together (allOf), or None when provably unsatisfiable."""
        a, b = _const_as_enum(a), _const_as_enum(b)
        ak, bk = a.keywords, b.keywords  # plain dicts: this is the innermost loop of normalising
        out = dict(ak)
        patterns, formats = list(a.patterns), list(a.formats)
        for k, vb in bk.items():
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
                kb = {json_key(y) for y in eb}
                out["enum"] = [x for x in ea if json_key(x) in kb]
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
            elif k == "pattern":
                patterns.append(vb)
            elif k == "format":
                formats.append(vb)
            elif k == "properties":
                props = dict(va)
                for name, s in vb.items():
                    props[name] = {"allOf": [props[name], s]} if name in props else s
                # keys of b not described by a fall under a's additionalProperties (and vice versa)
                out[k] = props
            elif k == "items" and (isinstance(va, list) or isinstance(vb, list)):
                # draft 4-2019 tuples: position by position, then the rest
                rest_a = ak.get("additionalItems", True) if isinstance(va, list) else va
                rest_b = bk.get("additionalItems", True) if isinstance(vb, list) else vb
                n = max(len(v) for v in (va, vb) if isinstance(v, list))
                out[k] = [{"allOf": [va[i] if isinstance(va, list) and i < len(va) else rest_a,
                                     vb[i] if isinstance(vb, list) and i < len(vb) else rest_b]} for i in range(n)]
                out["additionalItems"] = {"allOf": [rest_a, rest_b]}
            elif k == "contains" and not json_equal(va, vb) and \
                    (any(c in ak or c in bk for c in ("minContains", "maxContains"))
                     or a.contains_from is not None or b.contains_from is not None):
                # counted: one count of items matching both is not two counts
                self.unsupported(ptr, k, "cannot combine two different 'contains' keywords in allOf where one is "
                                         "counted (minContains/maxContains, or only after an item tuple)")
                out[k] = {"allOf": [va, vb]}
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
            elif json_equal(va, vb) or k in ANNOTATIONS or k not in KNOWN:
                pass  # equal, an annotation, or an unknown keyword (which constrains nothing)
            else:
                self.unsupported(ptr, k, f"cannot combine two '{k}' keywords in allOf")
        contains_from = a.contains_from if a.contains_from is not None else b.contains_from
        if a.contains_from is not None and b.contains_from is not None and a.contains_from != b.contains_from:
            self.unsupported(ptr, "contains", "cannot combine the negations of two item tuples' rest in allOf")
        for lower in (True, False):
            self.merge_bounds(a, b, out, lower)
        # cross-object keys: properties of one side under the other's additionalProperties
        if "properties" in ak or "properties" in bk or "additionalProperties" in ak or "additionalProperties" in bk:
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
        if ("patternProperties" in ak and "additionalProperties" in bk and bk["additionalProperties"] is not True) or \
                ("patternProperties" in bk and "additionalProperties" in ak and ak["additionalProperties"] is not True):
            self.unsupported(ptr, "patternProperties", "patternProperties of one allOf branch combined with "
                                                       "additionalProperties of another")
        if "prefixItems" in ak and "prefixItems" not in bk and "items" in bk:
            out["prefixItems"] = [{"allOf": [x, bk["items"]]} for x in ak["prefixItems"]]
        if "prefixItems" in bk and "prefixItems" not in ak and "items" in ak:
            out["prefixItems"] = [{"allOf": [x, ak["items"]]} for x in bk["prefixItems"]]
        return Flat(out, a.resolver, a.pointer, tuple(patterns + list(b.patterns)), tuple(formats + list(b.formats)),
                    a.negated + b.negated, a.witnesses + b.witnesses, a.depends + b.depends, contains_from)

    def bounds(self, flat: Flat, lower: bool) -> list[tuple[Decimal, bool]]:
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
            raise UnsupportedSchema(flat.pointer, bound, "bounds must be numbers") from None
        return out

    def merge_bounds(self, a: Flat, b: Flat, out: dict, lower: bool) -> None:
        """Both sides' bounds in ``out`` as the tighter one, exactly (exclusive where it is on either side)."""
        bound, flag = ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
        ak, bk = a.keywords, b.keywords
        if bound not in ak and flag not in ak and bound not in bk and flag not in bk:
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

    def types_of(self, flat: Flat) -> set:
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

    def scalar_key(self, flat: Flat, t: str, types: set | None = None):
        """Terminal description for the values of scalar type ``t`` (``ANY``: unconstrained)."""
        ptr = flat.pointer
        if types is None:
            types = self.types_of(flat)
        if t == "null":
            return NULL if "null" in types else None
        if t == "boolean":
            return BOOLEAN if "boolean" in types else None
        if t == "string":
            if "string" not in types:
                return None
            patterns = list(flat.patterns)
            if "pattern" in flat:
                patterns.insert(0, flat["pattern"])
            formats = list(flat.formats)
            if "format" in flat:
                formats.insert(0, flat["format"])
            fmts = []
            for f in formats:
                if self.opts.formats == "annotate" and (f in FORMATS or f in UNENFORCED or f in DRAFT3_UNENFORCED):
                    continue  # an annotation, as the specification reads a format by default
                if f in FORMATS:
                    fmts.append(f)
                elif f in UNENFORCED or (self.draft == "draft-03" and f in DRAFT3_UNENFORCED):
                    self.unsupported(ptr, "format", f"format {f!r} is defined by JSON Schema but guided cannot "
                                                    f"enforce it exactly (supported: {', '.join(sorted(FORMATS))})")
                elif self.opts.unknown_formats == "refuse":
                    self.unsupported(ptr, "format", f"unknown format {f!r} (supported: {', '.join(sorted(FORMATS))}; "
                                                    f"unknown_formats='ignore' reads it as the annotation it is)")
                else:
                    # Unknown to the specification: an annotation, which validators ignore.
                    self.unknown_formats[(ptr, f)] = None
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
                return ANY
            return ("string", StringSpec(tuple(pats), min_len, max_len, tuple(sorted(set(fmts)))))
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
                return ("int", IntegerRange(ilo, ihi, mult, self.opts.int_fraction))
            if lo is None and hi is None and mult is None:
                return ANY
            return ("num", NumberRange(None if lo is None else str(lo), lo_x, None if hi is None else str(hi), hi_x,
                                       mult))
        return None

    def enum_kept(self, flat: Flat) -> list:
        """The distinct values of a flat schema's ``enum``/``const`` that its other keywords allow."""
        ptr = flat.pointer
        flat = _const_as_enum(flat)
        values = flat["enum"]
        if not isinstance(values, list):
            raise UnsupportedSchema(ptr, "enum", "must be an array")
        others = {k: v for k, v in flat.items() if k not in ("enum", "const") and k not in ANNOTATIONS}
        extra = (flat.patterns or flat.formats or flat.negated or flat.witnesses or flat.depends
                 or flat.contains_from is not None)
        # `jsonschema` reads formats as annotations; asserted ones are checked here, by the same
        # automata a string with that format compiles to.
        formats = ([flat["format"]] if isinstance(flat.get("format"), str) else []) + list(flat.formats)
        asserted = [f for f in formats if self.opts.formats == "assert" and f in FORMATS]
        if self.opts.formats == "assert" and any(isinstance(v, str) for v in values):
            for f in formats:
                if f in UNENFORCED or (self.draft == "draft-03" and f in DRAFT3_UNENFORCED):
                    self.unsupported(ptr, "format", f"format {f!r} is defined by JSON Schema but guided cannot "
                                                    f"enforce it exactly (supported: {', '.join(sorted(FORMATS))})")
        keep = distinct_json(values)
        if others or extra:
            # Checked against the other keywords only: each value is one of the enum's, and
            # leaving the enum out keeps a 10,000-value enum linear rather than quadratic.
            valid = self.validator(plain_schema(flat.without("enum", "const")), flat.resolver)
            keep = [v for v in keep if valid(v)]
        if asserted:
            keep = [v for v in keep if not isinstance(v, str) or all(
                self.terminals.bare(("string", StringSpec(formats=(f,)))).fullmatch(
                    json.dumps(v, ensure_ascii=False).encode()) for f in asserted)]
        return keep


def _const_as_enum(d: Flat) -> Flat:
    """``const`` folded into ``enum`` (intersected with it when both are present)."""
    if "const" not in d:
        return d
    out = {k: v for k, v in d.items() if k != "const"}
    if "enum" in d and isinstance(d["enum"], list):
        out["enum"] = [v for v in d["enum"] if json_equal(v, d["const"])]
    else:
        out["enum"] = [d["const"]]
    return d.with_keywords(out)


@functools.lru_cache(maxsize=64)
def _accepts_resolver(cls) -> bool:
    """Whether this jsonschema's validator classes take ``_resolver`` (asked once per class:
    `inspect.signature` costs ~60 us, and a large schema builds tens of thousands of validators)."""
    import inspect

    try:
        return "_resolver" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def plain_schema(flat: Flat) -> dict:
    """A flat schema back as a plain JSON Schema (for the jsonschema validator)."""
    out = dict(flat.keywords)
    all_of: list[dict] = [sk.plain() for sk in flat.witnesses]
    # in every draft's words (draft 7 has no dependentRequired, 2020-12 no list dependencies)
    all_of.extend({"anyOf": [{"not": {"required": [name]}}, {"required": list(needed)}]}
                  for name, needed in flat.depends)
    if flat.contains_from is not None:
        all_of.append(flat.contains_from[1])
        out.pop("contains", None)
    all_of.extend({"pattern": p} for p in flat.patterns)
    all_of.extend({"format": f} for f in flat.formats)
    all_of.extend({"not": plain_schema(n)} for n in flat.negated)
    if all_of:
        out["allOf"] = all_of
    return out


def _schema_for_extra(side: Flat, name: str):
    """The schema ``side`` applies to a property it does not list."""
    for p, s in (side.get("patternProperties") or {}).items():
        try:
            if NamePattern(p).search(name):
                return s
        except RegexError:
            return True
    return side.get("additionalProperties", True)


class NamePattern:
    """A ``patternProperties`` pattern deciding a known property name, read as ECMA-262 (as the
    key automata read it): Python's ``re`` differs (``$`` before a final newline, Unicode ``\\w``).

    Its automaton (the one the key automata use: built once) is built when a name is asked about;
    `search` raises `RegexError` for a pattern guided cannot read.
    """

    def __init__(self, pattern: str, max_states: int = 100_000):
        self.pattern, self.max_states = pattern, max_states

    def search(self, name: str) -> bool:
        dfa = _strings.pattern_content(self.pattern, self.max_states)
        # A lone surrogate has no UTF-8 form: its only JSON spelling is its \u escape.
        return dfa.fullmatch(json.dumps(name, ensure_ascii=False)[1:-1].encode("utf-8", "backslashreplace"))


def _ranges_apart(a: Flat, b: Flat, low: str, high: str) -> bool:
    """The two ranges [a[low], a[high]] and [b[low], b[high]] (counts) do not meet."""
    try:
        return (a.get(high) is not None and a[high] < b.get(low, 0)) or \
            (b.get(high) is not None and b[high] < a.get(low, 0))
    except TypeError:
        return False


def _esc(name: str) -> str:
    """A property name as a JSON pointer token."""
    return name.replace("~", "~0").replace("/", "~1")


def _frac_lcm(a: Fraction, b: Fraction) -> Fraction:
    return Fraction(math.lcm(a.numerator, b.numerator), math.gcd(a.denominator, b.denominator))


