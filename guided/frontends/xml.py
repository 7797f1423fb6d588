"""The XML front-end: well-formed XML, or XML shaped by a schema, as a `guided.ir.CfgIR`; and back.

`Xml` is the spec.  ``Xml()`` is any well-formed document: the syntax (`XML_GRAMMAR`, a Lark
grammar with every lexical rule Python's parser enforces) plus the one thing no context-free
grammar can say, that a close tag repeats its open tag's name, stated as the IR's
`guided.ir.MatchedNames` (the XML engine, `guided.engine.xml`, enforces it).

``Xml(schema)`` is XML shaped by a Pydantic model or a JSON Schema: one element per property (in
schema order; optional properties may be left out), arrays as repeated elements named after the
property, nested objects as nested elements, scalars as escaped text.  A property whose schema
says ``{"xml": {"attribute": true}}`` (the OpenAPI convention; in Pydantic
``Field(json_schema_extra={"xml": {"attribute": True}})``) is written as an attribute of its
parent's start tag instead.  ``{"xml": {"name": "..."}}`` renames an element.  A nullable
property may be an empty element (read back as ``None``).  Element names are fixed by the schema,
so a plain context-free grammar is exact there.

Every keyword of the schema holds on the value `parse_xml` reads back, or the schema is refused at
compile time (`UnsupportedSchema` naming its JSON pointer and keyword; `SchemaTooLarge` past a
limit).  A scalar's text is one terminal whose automaton is exact on the value: numbers through
the JSON Schema front-end's number automata (bounds, ``multipleOf``; integers are written
without a fraction, bounded numbers without an exponent), strings through its string
constructions over XML spellings (`guided.frontends.xml_text`: ``pattern``, ``format``,
``minLength``/``maxLength`` on the decoded text), ``enum``/``const`` as the values the node's
other keywords allow.  ``minItems``/``maxItems`` are counted repeats (up to ``max_repeat``),
``$ref`` and ``allOf`` are merged (parts that disagree on a keyword are refused), ``anyOf`` with
``null`` is ``Optional``.  Annotations, and keywords about properties or items never written
(``additionalProperties``...), have no effect; ``oneOf``, other unions, ``not``, conditionals,
``uniqueItems``, ``contains``, tuples, ``patternProperties``, ``propertyNames``, dependencies,
unmet ``minProperties``/``maxProperties`` and recursive schemas are refused.

>>> from pydantic import BaseModel
>>> class Point(BaseModel):
...     x: int
...     tags: list[str] = []
>>> print(schema_grammar(Point).splitlines()[1])
start: _WS? e0
>>> parse_xml("<Point><x>3</x><tags>a &amp; b</tags><tags>c</tags></Point>", Point)
Point(x=3, tags=['a & b', 'c'])
>>> Xml().to_ir().matched_names is not None, Xml(Point).to_ir().matched_names is None
(True, True)
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jsonschema
import jsonschema.validators

from guided.errors import LimitExceeded, RegexError, SpecError, UsageError, warn_caller
from guided.frontends import xml_text
from guided.frontends.jsonschema import JsonSchema, _numbers, _strings
from guided.frontends.jsonschema._exact import exact_validator_class
from guided.frontends.jsonschema._formats import FORMATS, is_unknown
from guided.frontends.jsonschema.errors import InvalidSchema, SchemaTooLarge, UnknownFormatWarning, UnsupportedSchema
from guided.frontends.jsonschema.normalise import ANNOTATIONS, json_equal
from guided.frontends.jsonschema.options import Options
from guided.frontends.jsonschema.terminals import StringSpec, Terminals
from guided.frontends.lark import Grammar, lark_to_ir
from guided.frontends.regex import Regex, check_limits, regex_to_dfa
from guided.ir import CfgIR, MatchedNames
from guided.ir import dfa_ops as _dfa
from guided.ir.dfa import ByteDFA

__all__ = ["XML_GRAMMAR", "Xml", "parse_xml", "range_regex", "schema_grammar", "schema_ir", "to_xml", "xml_schema"]


@dataclass(frozen=True)
class Xml:
    """The XML constraint: any well-formed document (``schema=None``), or one shaped by a schema.

    ``schema`` is a Pydantic model class or a JSON Schema dict; `guided.compile` compiles it.
    Every keyword of the schema is enforced exactly or refused at compile time with
    `guided.frontends.jsonschema.UnsupportedSchema` naming its JSON pointer (see `schema_ir`);
    ``max_repeat`` bounds the ``minItems``/``maxItems`` counted out as repeated elements.
    A string ``format`` that neither guided nor JSON Schema defines (Pydantic's ``path``,
    ``password``) is an annotation: by default it constrains nothing and one
    `UnknownFormatWarning` lists each pointer; ``unknown_formats="refuse"`` refuses it, as the
    JSON Schema front-end does.

    >>> Xml().schema is None
    True
    """

    schema: object = None
    root: str | None = None  # root element name for schema-shaped XML (default: the model's title)
    max_repeat: int = 256
    unknown_formats: str = "ignore"  # string formats nobody defines: "ignore" (warn) or "refuse"

    def __post_init__(self) -> None:
        shape = self.schema
        if self.unknown_formats not in ("ignore", "refuse"):
            raise UsageError(f"Xml(unknown_formats=...) takes 'ignore' or 'refuse', got {self.unknown_formats!r}")
        if not (shape is None or isinstance(shape, dict) or (isinstance(shape, type)
                                                             and hasattr(shape, "model_json_schema"))):
            raise UsageError(f"guided.Xml takes a JSON Schema dict or a Pydantic model class (or nothing), got "
                             f"{type(shape).__name__}")
        if self.root is not None and (not isinstance(self.root, str) or not self.root):
            raise UsageError(f"Xml(root=...) takes an element name, got {self.root!r}")
        check_limits(self, max_repeat=int)

    def __hash__(self) -> int:
        return hash((_hashable(self.schema), self.root, self.max_repeat, self.unknown_formats))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Xml) and _hashable(self.schema) == _hashable(other.schema) and self.root == other.root
                and self.max_repeat == other.max_repeat and self.unknown_formats == other.unknown_formats)

    def to_ir(self) -> CfgIR:
        """The intermediate form: `XML_GRAMMAR` with matched names, or the schema's grammar."""
        if self.schema is None:
            return well_formed_ir()
        return schema_ir(self.schema, root=self.root, max_repeat=self.max_repeat, unknown_formats=self.unknown_formats)


def _hashable(schema):
    if isinstance(schema, dict):
        return json.dumps(schema, sort_keys=True)
    return schema


# ------------------------------------------------------------------------------------------
# Well-formed XML: the grammar, and the names that must match


def _digit_class(lo: int, hi: int, base: int) -> str:
    chars = []
    for v in range(lo, hi + 1):
        c = "0123456789abcdef"[v]
        chars.append(c if not c.isalpha() else c + c.upper())
    return "[" + "".join(chars) + "]"


def _same_length(a: list[int], b: list[int], base: int) -> str:
    """Regex for the digit strings of a's length between ``a`` and ``b`` (digit value lists)."""
    if not a:
        return ""
    if a == [0] * len(a) and b == [base - 1] * len(b):
        return _digit_class(0, base - 1, base) + (f"{{{len(a)}}}" if len(a) > 1 else "")
    if a[0] == b[0]:
        return _digit_class(a[0], a[0], base) + _same_length(a[1:], b[1:], base)
    rest = len(a) - 1
    parts = [_digit_class(a[0], a[0], base) + _same_length(a[1:], [base - 1] * rest, base)]
    if b[0] - a[0] > 1:
        parts.append(_digit_class(a[0] + 1, b[0] - 1, base) + _same_length([0] * rest, [base - 1] * rest, base))
    parts.append(_digit_class(b[0], b[0], base) + _same_length([0] * rest, b[1:], base))
    return "(?:" + "|".join(parts) + ")"


def _digits(n: int, base: int) -> list[int]:
    out = []
    while True:
        out.append(n % base)
        n //= base
        if not n:
            return out[::-1]


def range_regex(lo: int, hi: int, base: int = 10) -> str:
    """A regex for the numbers ``lo..hi`` written in ``base`` (10 or 16), leading zeros allowed.

    >>> import re
    >>> r = range_regex(32, 55295)
    >>> [bool(re.fullmatch(r, s)) for s in ("31", "32", "0032", "55295", "55296")]
    [False, True, True, True, False]
    """
    parts = []
    length = len(_digits(lo, base))
    while True:
        start = max(lo, base ** (length - 1) if length > 1 else 0)
        end = min(hi, base ** length - 1)
        if start > end:
            break
        parts.append(_same_length(_digits(start, base), _digits(end, base), base))
        if end == hi:
            break
        length += 1
    return "0*(?:" + "|".join(parts) + ")"


_XML_CHAR_RANGES = [(0x9, 0x9), (0xA, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
_DEC = "|".join(range_regex(lo, hi, 10) for lo, hi in _XML_CHAR_RANGES)
_HEX = "|".join(range_regex(lo, hi, 16) for lo, hi in _XML_CHAR_RANGES)
_NOT_CHAR = r"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"  # excluded from every kind of character data
_REF = rf"&(?:lt|gt|amp|apos|quot|#(?:{_DEC})|#x(?:{_HEX}));"
MAX_WHITESPACE = 40
"""The longest whitespace run between markup (JSON Schema's default bound): a model that keeps
writing newlines cannot spend the token budget on them."""
_WS = r"[ \t\r\n]"

#: The syntax of well-formed XML documents (Lark, LALR(1)); see the module docstring.
#: A subset of XML 1.0 that Python's parser (expat, as used by `xml.etree.ElementTree`) accepts
#: whole: ASCII names without ``:`` (no namespace prefixes to declare), the five predefined
#: entities and character references to valid characters, comments, CDATA sections, an optional
#: ``<?xml version="1.0"?>`` declaration; no DOCTYPE, no processing instructions.
XML_GRAMMAR = rf"""
start: XMLDECL? _S? (COMMENT _S?)* element

element: LT NAME _tag_end
_tag_end: _S? SLASHGT
        | _S? GT content LTSLASH NAME _S? GT
        | _S attribute _tag_end
attribute: NAME _S? EQ _S? ATTVALUE

// Character data never follows character data directly: a TEXT lexeme is cut only by "<" or
// "&" (or by the ">" of a forbidden "]]>", which then cannot start anything).
content: _chars? (_markup _chars?)*
_chars: TEXT | _S
_markup: REFERENCE | CDATA | COMMENT | element

LT: "<"
LTSLASH: "</"
GT: ">"
SLASHGT: "/>"
EQ: "="
NAME: /[A-Za-z_][A-Za-z0-9._-]*/
ATTVALUE: /"(?:[^<&"{_NOT_CHAR}]|{_REF})*"/ | /'(?:[^<&'{_NOT_CHAR}]|{_REF})*'/
TEXT: /(?:[^<&\]{_NOT_CHAR}]|\][^<&\]{_NOT_CHAR}]|\]\]+[^<&\]>{_NOT_CHAR}])+\]*|\]+/
REFERENCE: /{_REF}/
CDATA: /<!\[CDATA\[(?:[^\]{_NOT_CHAR}]|\][^\]{_NOT_CHAR}]|\]\]+[^\]>{_NOT_CHAR}])*\]*\]\]>/
COMMENT: /<!--(?:[^-{_NOT_CHAR}]|-[^-{_NOT_CHAR}])*-->/
XMLDECL: /<\?xml{_WS}+version{_WS}*={_WS}*(?:"1\.0"|'1\.0')(?:{_WS}+encoding{_WS}*={_WS}*(?:"[Uu][Tt][Ff]-8"|'[Uu][Tt][Ff]-8'))?(?:{_WS}+standalone{_WS}*={_WS}*(?:"(?:yes|no)"|'(?:yes|no)'))?{_WS}*\?>/
_S.2: /{_WS}{{1,{MAX_WHITESPACE}}}/
"""

NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def well_formed_ir() -> CfgIR:
    """`XML_GRAMMAR`'s intermediate form, with the close-tag names matched (`guided.ir.MatchedNames`)."""
    # Written for guided's greedy lexer (TEXT takes a run of text whole); the reference is expat.
    # (parser="lalr": the matched names ride on the LR tables; rule 10 takes none)
    ir = lark_to_ir(Grammar(XML_GRAMMAR, parser="lalr"), lark_lexing=False)
    names = MatchedNames(name=ir.terminal_index("NAME"), open_start=ir.terminal_index("LT"),
                         open_end=ir.terminal_index("GT"), empty_end=ir.terminal_index("SLASHGT"),
                         close_start=ir.terminal_index("LTSLASH"), name_bytes=NAME_BYTES)
    return dataclasses.replace(ir, matched_names=names)


# ------------------------------------------------------------------------------------------
# Schema-shaped XML

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")
MAX_ELEMENT_DEPTH = 64  # schema-shaped documents nest at most this deep (a recursive $ref is refused)

#: Keywords with no effect on the values XML is written and read as: annotations, and keywords
#: that only speak about properties or items this shape never produces.
_VACUOUS = ANNOTATIONS | {"xml", "additionalProperties", "unevaluatedProperties", "additionalItems",
                          "unevaluatedItems"}
#: JSON Schema keywords the XML shape cannot enforce: refused wherever they would constrain a value.
_REFUSED = {
    "oneOf": "unions other than Optional[...] are not supported in XML",
    "not": "negation is not supported in XML",
    "patternProperties": "pattern properties cannot be written as XML elements",
    "propertyNames": "property name constraints are not supported in XML",
    "dependentRequired": "dependencies between properties are not supported in XML",
    "dependentSchemas": "dependencies between properties are not supported in XML",
    "dependencies": "dependencies between properties are not supported in XML",
    "contains": "contains is not supported in XML",
    "minContains": "contains is not supported in XML",
    "maxContains": "contains is not supported in XML",
    "prefixItems": "tuples are not supported in XML",
    "$dynamicRef": "dynamic references are not supported in XML",
    "$recursiveRef": "dynamic references are not supported in XML",
    "divisibleBy": "draft-3 keywords are not supported in XML",
    "disallow": "draft-3 keywords are not supported in XML",
    "extends": "draft-3 keywords are not supported in XML",
}


def xml_schema(schema: Any) -> dict:
    """The JSON Schema of ``schema`` (a Pydantic model class, a dict or JSON text)."""
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema(by_alias=True, mode="validation")
    if isinstance(schema, str):
        return json.loads(schema)
    if isinstance(schema, dict):
        return schema
    raise SpecError(f"expected a Pydantic model class or a JSON Schema dict, got {type(schema).__name__}")


@dataclass(frozen=True)
class _Shape:
    """One schema node as XML reads it: its keywords with ``$ref``/``allOf``/``Optional`` merged in,
    whether an empty element stands for ``None``, and its kind (``"object"``, ``"array"`` or
    the scalar kinds ``"enum"``, ``"string"``, ``"integer"``, ``"number"``, ``"boolean"``, ``"null"``)."""

    node: dict
    pointer: str
    nullable: bool
    kind: str
    values: tuple = ()  # the enum values the node's other keywords allow (kind "enum")


def _esc(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class _Builder:
    """Reads a schema's nodes (`shape`) and emits the grammar of the XML they describe."""

    def __init__(self, root_schema: Any, max_repeat: int = 256, unknown_formats: str = "ignore"):
        self.root = root_schema
        self.unknown_formats = unknown_formats
        self.ignored_formats: dict[tuple[str, str], None] = {}  # (pointer, name), in order
        self.max_repeat = max_repeat
        self.rules: list[str] = []
        self.terms: dict[tuple, tuple[str | None, bool]] = {}  # value description -> (terminal, may be empty)
        self.automata: dict[str, ByteDFA] = {}
        self.comments: dict[str, str] = {}
        self.count = 0
        self.depth = 0
        self.opts = Options(JsonSchema({}))  # the JSON Schema front-end's default limits
        self.json_terminals = Terminals(self.opts)
        draft = str(root_schema.get("$schema", "")) if isinstance(root_schema, dict) else ""
        self.old_draft = "draft-03" in draft or "draft-04" in draft
        self._validator: Any = None

    # -- reading nodes ---------------------------------------------------------------------

    def merged(self, node: Any, ptr: str, depth: int = 0) -> dict:
        """``node`` with its ``$ref`` target and ``allOf`` parts merged in (they must not disagree)."""
        if depth > 64:
            raise SchemaTooLarge(ptr, "$ref/allOf chains nest too deeply (a reference cycle?)")
        if node is True:
            return {}
        if node is False:
            raise UnsupportedSchema(ptr, "schema", "false allows no value: no XML can be written for it")
        if not isinstance(node, dict):
            raise InvalidSchema(ptr, "schema", f"a schema must be an object or a boolean, not {type(node).__name__}")
        out = {k: v for k, v in node.items() if k not in ("$ref", "allOf")}
        if "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
                raise UnsupportedSchema(ptr, "$ref", f"only references inside the schema are supported, got {ref!r}")
            target: Any = self.root
            try:
                for part in ref[2:].split("/") if ref != "#" else []:
                    target = target[int(part) if isinstance(target, list) else part.replace("~1", "/").replace("~0", "~")]
            except (KeyError, IndexError, TypeError, ValueError):
                raise UnsupportedSchema(ptr, "$ref", f"cannot resolve {ref!r}") from None
            out = self.merge(out, self.merged(target, ref[1:], depth + 1), ptr)
        for i, part in enumerate(node.get("allOf", [])):
            out = self.merge(out, self.merged(part, f"{ptr}/allOf/{i}", depth + 1), ptr)
        return out

    def merge(self, a: dict, b: dict, ptr: str) -> dict:
        out = dict(b)
        for k, v in a.items():
            if k not in out or k in ANNOTATIONS or k == "xml" or json_equal(out[k], v):
                out[k] = v
            elif k == "required" and isinstance(v, list) and isinstance(out[k], list):
                out[k] = list(dict.fromkeys(out[k] + v))
            else:
                raise UnsupportedSchema(ptr, k, "$ref/allOf parts give it different values; merge them in the "
                                                "schema (XML takes one value per keyword)")
        return out

    def shape(self, raw: Any, ptr: str) -> _Shape:
        """The node at ``ptr`` as XML reads it, or `UnsupportedSchema` naming the keyword it cannot keep."""
        node = self.merged(raw, ptr)
        nullable = False  # whether null is one of the node's types (checked against all its keywords below)
        if "anyOf" in node:
            alts = [(a, self.merged(a, f"{ptr}/anyOf/{i}")) for i, a in enumerate(node["anyOf"]) if a is not False]
            rest = [m for _, m in alts if m.get("type") != "null" or len(set(m) - _VACUOUS) > 1]
            nullable = len(rest) < len(alts)
            if len(rest) > 1:
                raise UnsupportedSchema(ptr, "anyOf", "unions other than Optional[...] are not supported in XML")
            node = {k: v for k, v in node.items() if k != "anyOf"}
            node = self.merge(node, rest[0], ptr) if rest else {**node, "type": "null"}
        for k in node:
            if k in _REFUSED:
                raise UnsupportedSchema(ptr, k, _REFUSED[k])
        if "required" in node and not isinstance(node["required"], list):
            raise UnsupportedSchema(ptr, "required", "must be an array of property names (draft-3 booleans are not "
                                                     "supported in XML)")
        if "if" in node and ("then" in node or "else" in node):
            raise UnsupportedSchema(ptr, "if", "conditionals are not supported in XML")
        types = node.get("type")
        if isinstance(types, str):
            types = [types]
        if types is not None:
            if not isinstance(types, list):
                raise InvalidSchema(ptr, "type", f"must be a string or a list, got {types!r}")
            if "null" in types:
                nullable = True
            types = [t for t in types if t != "null"] or ["null"]
            if "number" in types and "integer" in types:
                types.remove("integer")
            if len(types) > 1:
                raise UnsupportedSchema(ptr, "type", f"one type per XML element (or one and null), got {types}")
        kind = types[0] if types else ("object" if "properties" in node or "required" in node else
                                       "array" if "items" in node else "string")
        if kind == "null":
            nullable = True
        # An empty element reads back as None: only where the whole node allows null.
        nullable = nullable and self.allows(raw, None, ptr)
        if "enum" in node or "const" in node:
            return _Shape(node, ptr, nullable, "enum", tuple(self.enum_values(node, ptr)))
        if kind not in ("object", "array", "string", "integer", "number", "boolean", "null"):
            raise InvalidSchema(ptr, "type", f"unknown type {kind!r}")
        if kind == "null" and not nullable:
            raise UnsupportedSchema(ptr, "type", "null is the only type, and the node's other keywords refuse it")
        return _Shape(node, ptr, nullable, kind)

    def allows(self, node: Any, value: Any, ptr: str) -> bool:
        """Is ``value`` valid under ``node`` (a subschema of the root), numbers compared exactly?"""
        if self._validator is None:
            base = jsonschema.validators.validator_for(self.root if isinstance(self.root, dict) else {},
                                                       default=jsonschema.Draft202012Validator)
            cls = exact_validator_class(base)
            self._validator = cls(self.root if isinstance(self.root, (dict, bool)) else {},
                                  format_checker=cls.FORMAT_CHECKER)
        try:
            return bool(self._validator.evolve(schema=node).is_valid(value))
        except Exception:  # noqa: BLE001 - a schema jsonschema cannot run
            raise UnsupportedSchema(ptr, "enum", "cannot check a value against the node's keywords") from None

    def enum_values(self, node: dict, ptr: str) -> list:
        values = [node["const"]] if "const" in node else node["enum"]
        if not isinstance(values, list):
            raise InvalidSchema(ptr, "enum", "must be an array")
        kept: list = []
        for v in values:
            if not any(json_equal(v, w) for w in kept) and self.allows(node, v, ptr):
                kept.append(v)
        if not kept:
            raise UnsupportedSchema(ptr, "enum", "no value of the enum satisfies the other keywords")
        return kept

    # -- value automata ----------------------------------------------------------------------

    def bounds(self, node: dict, ptr: str, lower: bool) -> tuple[Decimal | None, bool]:
        """The tighter (value, exclusive) bound on one side, as the schema's draft reads it."""
        bound, flag = ("minimum", "exclusiveMinimum") if lower else ("maximum", "exclusiveMaximum")
        sides = []
        try:
            if node.get(bound) is not None:
                ex = node.get(flag)
                sides.append((_dec(node[bound]), bool(ex) if (self.old_draft or isinstance(ex, bool)) else False))
            if node.get(flag) is not None and not self.old_draft and not isinstance(node[flag], bool):
                sides.append((_dec(node[flag]), True))
        except (TypeError, ValueError, ArithmeticError):
            raise InvalidSchema(ptr, bound, "bounds must be numbers") from None
        if not sides:
            return None, False
        value = max(v for v, _ in sides) if lower else min(v for v, _ in sides)
        return value, any(x for v, x in sides if v == value)

    def value_automaton(self, shape: _Shape, attribute: bool) -> ByteDFA:
        """The XML text of every value of a scalar ``shape`` (may accept the empty text)."""
        node, ptr, kind = shape.node, shape.pointer, shape.kind
        ms = self.opts.max_states
        try:
            if kind == "enum":
                texts = [_value_text(v, None) for v in shape.values]
                return xml_text.value_automaton(xml_text.literal_texts(texts, ms), attribute, ms)
            if kind == "null":
                return xml_text.value_automaton(xml_text.literal_texts([""], ms), attribute, ms)
            if kind == "boolean":
                return _dfa.union_dfas([_dfa.literal_dfa(b"true"), _dfa.literal_dfa(b"false")])
            if kind in ("integer", "number"):
                return self.number_automaton(node, ptr, kind)
            return xml_text.value_automaton(lambda chars: self.json_terminals.string_content(
                self.string_description(node, ptr), ptr, chars), attribute, ms)
        except LimitExceeded as exc:
            if isinstance(exc, SchemaTooLarge):
                raise
            raise SchemaTooLarge(ptr, str(exc)) from None

    def number_automaton(self, node: dict, ptr: str, kind: str) -> ByteDFA:
        lo, lo_x = self.bounds(node, ptr, True)
        hi, hi_x = self.bounds(node, ptr, False)
        mult = None
        if "multipleOf" in node:
            try:
                m = _dec(node["multipleOf"])
            except (TypeError, ValueError, ArithmeticError):
                raise InvalidSchema(ptr, "multipleOf", "must be a number") from None
            if not m > 0:
                raise InvalidSchema(ptr, "multipleOf", "must be positive")
            mult = _numbers.decimal_ratio(m)
        if kind == "integer":
            # Read back with int(): spellings without a fraction or an exponent only.
            ilo = None if lo is None else (math.floor(lo) + 1 if lo_x else math.ceil(lo))
            ihi = None if hi is None else (math.ceil(hi) - 1 if hi_x else math.floor(hi))
            return self.json_terminals.int_dfa(ilo, ihi, mult, False, ptr)
        if lo is None and hi is None and mult is None:
            return _dfa_of_regex(_numbers.NUMBER)
        return self.json_terminals.num_dfa(None if lo is None else str(lo), lo_x, None if hi is None else str(hi), hi_x,
                                    mult, ptr)

    def string_description(self, node: dict, ptr: str) -> StringSpec:
        """The JSON Schema front-end's description of a string's constraints (``Terminals.string_content``)."""
        patterns, formats = [], []
        if "pattern" in node:
            p = node["pattern"]
            if not isinstance(p, str):
                raise InvalidSchema(ptr, "pattern", "must be a string")
            try:
                _strings.pattern_content(p, self.opts.max_states)
            except RegexError as exc:
                raise UnsupportedSchema(ptr, "pattern", f"{p!r}: {exc}") from None
            patterns.append(p)
        if "format" in node:
            f = node["format"]
            if f in FORMATS:
                formats.append(f)
            elif not isinstance(f, str) or not is_unknown(f, self.old_draft) or self.unknown_formats == "refuse":
                raise UnsupportedSchema(ptr, "format", f"format {f!r} cannot be enforced (supported: "
                                                       f"{', '.join(sorted(FORMATS))})")
            else:  # unknown to the specification: an annotation, which validators ignore
                self.ignored_formats[(ptr, f)] = None
        try:
            min_len = int(node.get("minLength", 0))
            max_len = None if node.get("maxLength") is None else int(node["maxLength"])
        except (TypeError, ValueError):
            raise InvalidSchema(ptr, "minLength", "lengths must be integers") from None
        return StringSpec(tuple(patterns), min_len, max_len, tuple(formats))

    def term(self, shape: _Shape, attribute: bool) -> tuple[str | None, bool]:
        """(the terminal of a scalar's non-empty XML text, None where it has none; whether the text
        may be empty), one terminal per distinct constraint."""
        key = (shape.kind, json.dumps({k: v for k, v in shape.node.items() if k not in _VACUOUS}, sort_keys=True,
                                      default=repr), json.dumps(shape.values, default=repr), attribute)
        found = self.terms.get(key)
        if found is None:
            dfa = self.value_automaton(shape, attribute)
            empty = xml_text.accepts_empty(dfa)
            body = xml_text.non_empty(dfa, self.opts.max_states)
            name = None
            if not xml_text.is_empty(body):
                name = f"V{len(self.automata)}"
                self.automata[name] = body
                self.comments[name] = (f"{shape.kind} at {shape.pointer or '#'}" + (" (attribute)" if attribute else "")
                                       + (", or empty" if empty else ""))
            found = self.terms[key] = (name, empty)
        if found[0] is None and not found[1] and not shape.nullable:
            raise UnsupportedSchema(shape.pointer, _main_keyword(shape), "no value of this schema can be written as "
                                                                         "XML text")
        return found

    # -- elements ------------------------------------------------------------------------------

    def nt(self) -> str:
        self.count += 1
        return f"e{self.count - 1}"

    def element(self, name: str, raw: Any, ptr: str) -> str:
        """A rule for element ``name`` holding a value of ``raw``; returns the rule's name."""
        if not _NAME.match(name):
            raise UnsupportedSchema(ptr, "xml", f"{name!r} is not an XML element name (letters, digits, '_', '-', "
                                                f"'.'; no ':')")
        self.depth += 1
        try:
            return self._element(name, raw, ptr)
        finally:
            self.depth -= 1

    def _element(self, name: str, raw: Any, ptr: str) -> str:
        if self.depth > MAX_ELEMENT_DEPTH:
            raise UnsupportedSchema(ptr, "$ref", f"elements nest deeper than {MAX_ELEMENT_DEPTH} levels: recursive "
                                                 f"schemas are not supported in XML")
        shape = self.shape(raw, ptr)
        rule = self.nt()
        open_, close = _lit(f"<{name}>"), _lit(f"</{name}>")
        if shape.kind == "array":
            raise UnsupportedSchema(ptr, "type", f"an array is written as repeated elements of an object's property; "
                                                 f"it cannot be the root or an item of another array ({name!r})")
        if shape.kind != "object":
            v, may_be_empty = self.term(shape, attribute=False)
            empty = may_be_empty or shape.nullable
            alts = [f"{open_} {v} {close}"] if v is not None else []
            if empty:
                alts += [f"{open_} {close}", _lit(f"<{name}/>")]
            self.rules.append(f"{rule}: {' | '.join(alts)}")
            return rule
        node = shape.node
        props = node.get("properties", {})
        if not isinstance(props, dict):
            raise InvalidSchema(ptr, "properties", "must be an object")
        required = node.get("required", [])
        if not isinstance(required, list):
            raise InvalidSchema(ptr, "required", "must be an array")
        missing = [k for k in required if k not in props or props[k] is False]
        if missing:
            raise UnsupportedSchema(ptr, "required", f"{missing[0]!r} has no schema under properties to write it by")
        try:
            n_min = int(node.get("minProperties", 0))
            n_max = None if node.get("maxProperties") is None else int(node["maxProperties"])
        except (TypeError, ValueError):
            raise InvalidSchema(ptr, "minProperties", "property counts must be integers") from None
        if n_min > len(set(required)):
            raise UnsupportedSchema(ptr, "minProperties", "only supported where the required properties satisfy it")
        if n_max is not None and n_max < len([k for k, s in props.items() if s is not False]):
            raise UnsupportedSchema(ptr, "maxProperties", "only supported where all properties together satisfy it")
        attrs, children, names = [], [], set()
        for key, sub in props.items():
            if sub is False:
                continue
            sub_ptr = f"{ptr}/properties/{_esc(key)}"
            info = _xml_info(self.merged(sub, sub_ptr))
            elem_name = info.get("name", key)
            if (elem_name, bool(info.get("attribute"))) in names:
                raise UnsupportedSchema(sub_ptr, "xml", f"two properties are written as {elem_name!r}")
            names.add((elem_name, bool(info.get("attribute"))))
            if info.get("attribute"):
                sub_shape = self.shape(sub, sub_ptr)
                if sub_shape.kind in ("object", "array"):
                    raise UnsupportedSchema(sub_ptr, "xml", f"attribute {key!r} must be a scalar")
                if not _NAME.match(elem_name):
                    raise UnsupportedSchema(sub_ptr, "xml", f"{elem_name!r} is not an XML attribute name")
                v, may_be_empty = self.term(sub_shape, attribute=True)
                may_be_empty = may_be_empty or sub_shape.nullable  # an empty value reads back as None
                value = f"{v}{'?' if may_be_empty else ''}" if v is not None else ""
                part = f'{_lit(f" {elem_name}=" + chr(34))} {value} {_lit(chr(34))}'
                attrs.append(part if key in required else f"({part})?")
            else:
                child = self.child(elem_name, sub, sub_ptr, key in required)
                if child:
                    children.append(child)
        start = _lit(f"<{name}")
        inner = " ".join(f"{c} _WS?" for c in children)
        empty = f" | {_lit(f'<{name}/>')}" if shape.nullable else ""  # read back as None
        self.rules.append(f"{rule}: {start} {' '.join(attrs)} {_lit('>')} _WS? {inner} {close}{empty}")
        return rule

    def child(self, name: str, raw: Any, ptr: str, required: bool) -> str:
        shape = self.shape(raw, ptr)
        if shape.kind != "array":
            one = self.element(name, raw, ptr)
            return one if required else f"{one}?"
        node = shape.node
        if node.get("uniqueItems") and (node.get("maxItems") is None or node["maxItems"] > 1):
            raise UnsupportedSchema(ptr, "uniqueItems", "unique items are not supported in XML")
        try:
            lo = int(node.get("minItems", 0))
            hi = None if node.get("maxItems") is None else int(node["maxItems"])
        except (TypeError, ValueError):
            raise InvalidSchema(ptr, "minItems", "item counts must be integers") from None
        items = node.get("items", True)
        if isinstance(items, list):
            raise UnsupportedSchema(ptr, "items", "tuples are not supported in XML")
        if items is False or (hi is not None and hi < lo):
            hi = 0
            if lo > 0:
                raise UnsupportedSchema(ptr, "minItems", "no array satisfies both the item count and the items")
        for keyword, n in (("minItems", lo), ("maxItems", hi)):
            if n is not None and n > self.max_repeat:
                raise SchemaTooLarge(ptr, f"{keyword} {n} is above max_repeat={self.max_repeat} (Xml(max_repeat=...))")
        if hi == 0:
            return ""
        one = self.element(name, items, f"{ptr}/items")
        # lo repeats, then the optional ones nested (one way to read every count: no ambiguity).
        tail = ""
        if hi is None:
            tail = f"({one} _WS?)*"
        else:
            for _ in range(hi - lo):
                nested = self.nt()
                self.rules.append(f"{nested}: ({one} _WS? {tail})?")
                tail = nested
        rule = self.nt()
        body = f"{' '.join([f'{one} _WS?'] * lo)} {tail}".strip()
        if lo and not required:  # an optional array may be left out (read back as absent)
            body = f"({body})?"
        self.rules.append(f"{rule}: {body}")
        return rule

    def grammar(self, name: str) -> tuple[str, dict[str, ByteDFA]]:
        """Lark text and the automata of its value terminals, for the document rooted at element ``name``."""
        top = self.element(name, self.root, "")
        lines = [f"// XML shaped by a schema (root <{name}>)", f"start: _WS? {top}"]
        lines += self.rules
        for term, dfa in self.automata.items():
            lines.append(f"// {term}: {self.comments[term]} (an automaton: the pattern below only declares it)")
            lines.append(f"{term}: /[^<]+/")
        lines.append(rf"_WS: /[ \t\r\n]{{1,{MAX_WHITESPACE}}}/")
        return "\n".join(lines) + "\n", dict(self.automata)


def _dec(x) -> Decimal:
    if isinstance(x, bool):
        raise TypeError
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


def _dfa_of_regex(pattern: str) -> ByteDFA:
    return regex_to_dfa(Regex(pattern))


def _main_keyword(shape: _Shape) -> str:
    for k in ("enum", "const", "pattern", "format", "minLength", "maxLength", "minimum", "maximum",
              "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        if k in shape.node:
            return k
    return "type"


def _xml_info(node: dict) -> dict:
    info = node.get("xml") or {}
    return info if isinstance(info, dict) else {}


def _lit(text: str) -> str:
    return json.dumps(text)


def _value_text(value: Any, kind: str | None) -> str:
    """The decoded text a scalar value is written as (numbers without an exponent)."""
    if isinstance(value, str):
        return value
    if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(int(value))
    if kind == "number" and isinstance(value, float) and math.isfinite(value):
        return format(Decimal(repr(value)), "f")
    return json.dumps(value)


def _as_kept(value: Any, shape: _Shape) -> Any:
    """An enum value as the schema spells it (``1.0`` for ``1`` where the enum says ``1.0``)."""
    for v in shape.values:
        if json_equal(v, value):
            return v
    return value


def _root_name(schema: Any, root: str | None, js: dict) -> str:
    name = root or _xml_info(js).get("name") or js.get("title") or "root"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(name))
    return name if re.match(r"[A-Za-z_]", name) else "_" + name


def schema_ir(schema: Any, root: str | None = None, max_repeat: int = 256, unknown_formats: str = "ignore") -> CfgIR:
    """The intermediate form of XML documents shaped by ``schema``: `schema_grammar`'s structure
    with each value terminal's exact automaton (unknown formats: see `Xml`)."""
    js = xml_schema(schema)
    builder = _Builder(js, max_repeat, unknown_formats)
    text, automata = builder.grammar(_root_name(schema, root, js))
    ir = lark_to_ir(Grammar(text, parser="lalr"), automata=automata, lark_lexing=False)
    if builder.ignored_formats:
        warn_caller(UnknownFormatWarning(
            f"{len(builder.ignored_formats)} string format(s) unknown to guided and to the JSON Schema specification "
            f"constrain nothing (compiled as plain strings; unknown_formats='refuse' refuses them):\n  "
            + "\n  ".join(f"{pointer or '#'}: format {name!r}" for pointer, name in builder.ignored_formats)))
    return ir


def schema_grammar(schema: Any, root: str | None = None, max_repeat: int = 256) -> str:
    """Lark grammar text of the documents shaped by ``schema`` (root element ``root`` or the title).

    The text gives the structure; each value terminal (``V0``, ...) stands for an automaton that
    is exact on the values (see `schema_ir`): its pattern in the text only declares it.
    """
    js = xml_schema(schema)
    return _Builder(js, max_repeat).grammar(_root_name(schema, root, js))[0]


def parse_xml(text: str, schema: Any, root: str | None = None, parse_float: Callable[[str], Any] = float) -> Any:
    """Read XML produced under ``schema`` back: a validated Pydantic instance, or plain data for a dict schema.

    ``parse_float`` reads a ``number`` (as in `json.loads`; `decimal.Decimal` keeps its exact value).
    """
    js = xml_schema(schema)
    b = _Builder(js)
    element = ET.fromstring(text)
    data = _read(b, element, js, "", parse_float)
    if isinstance(schema, type) and hasattr(schema, "model_validate"):
        return schema.model_validate(data)
    return data


def _read(b: _Builder, el: ET.Element, node: Any, ptr: str, parse_float: Callable[[str], Any]) -> Any:
    shape = b.shape(node, ptr)
    if shape.kind != "object":
        return _scalar(el.text, shape, parse_float)
    if shape.nullable and not len(el) and not el.attrib and not (el.text or "").strip():
        return None
    out: dict[str, Any] = {}
    required = shape.node.get("required", [])
    for key, sub in shape.node.get("properties", {}).items():
        if sub is False:
            continue
        sub_ptr = f"{ptr}/properties/{_esc(key)}"
        sub_shape = b.shape(sub, sub_ptr)
        info = _xml_info(b.merged(sub, sub_ptr))
        name = info.get("name", key)
        if info.get("attribute"):
            if name in el.attrib:
                out[key] = _scalar(el.attrib[name], sub_shape, parse_float)
        elif sub_shape.kind == "array":
            found = el.findall(name)
            if found or key in required:
                out[key] = [_read(b, child, sub_shape.node.get("items", True), f"{sub_ptr}/items", parse_float)
                            for child in found]
        else:
            child = el.find(name)
            if child is not None:
                out[key] = _read(b, child, sub, sub_ptr, parse_float)
    return out


def _scalar(text: str | None, shape: _Shape, parse_float: Callable[[str], Any]) -> Any:
    text = text or ""
    if text == "" and shape.nullable:
        return None
    if shape.kind == "enum":
        for v in shape.values:
            if _value_text(v, None) == text:
                return v
        return text
    if shape.kind == "integer":
        return int(text)
    if shape.kind == "number":
        return parse_float(text)
    if shape.kind == "boolean":
        return text == "true"
    if shape.kind == "null":
        return None
    return text


def to_xml(value: Any, schema: Any, root: str | None = None) -> str:
    """Write ``value`` (a Pydantic instance or plain data) as XML shaped by ``schema``: the inverse of `parse_xml`."""
    js = xml_schema(schema)
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True)
    b = _Builder(js)
    return _write(b, _root_name(schema, root, js), value, js, "")


def _write(b: _Builder, name: str, value: Any, node: Any, ptr: str) -> str:
    shape = b.shape(node, ptr)
    if value is None and (shape.nullable or shape.kind == "object"):
        return f"<{name}/>"
    if shape.kind != "object":
        return f"<{name}>{xml_text.escape(_value_text(_as_kept(value, shape), shape.kind), attribute=False)}</{name}>"
    attrs, children = "", []
    for key, sub in shape.node.get("properties", {}).items():
        if key not in value or sub is False:
            continue
        sub_ptr = f"{ptr}/properties/{_esc(key)}"
        sub_shape = b.shape(sub, sub_ptr)
        n = _xml_info(b.merged(sub, sub_ptr)).get("name", key)
        if _xml_info(b.merged(sub, sub_ptr)).get("attribute"):
            text = "" if value[key] is None and sub_shape.nullable else \
                _value_text(_as_kept(value[key], sub_shape), sub_shape.kind)
            attrs += f' {n}="{xml_text.escape(text, attribute=True)}"'
        elif sub_shape.kind == "array":
            children += [_write(b, n, v, sub_shape.node.get("items", True), f"{sub_ptr}/items")
                         for v in value[key] or []]
        else:
            children.append(_write(b, n, value[key], sub, sub_ptr))
    return f"<{name}{attrs}>{''.join(children)}</{name}>"
