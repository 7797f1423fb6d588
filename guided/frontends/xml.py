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
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from guided.errors import SpecError, UsageError
from guided.frontends.lark import Grammar, lark_to_ir
from guided.ir import CfgIR, MatchedNames

__all__ = ["XML_GRAMMAR", "Xml", "parse_xml", "range_regex", "schema_grammar", "to_xml", "xml_schema"]


@dataclass(frozen=True)
class Xml:
    """The XML constraint: any well-formed document (``schema=None``), or one shaped by a schema.

    ``schema`` is a Pydantic model class or a JSON Schema dict; `guided.compile` compiles it.

    >>> Xml().schema is None
    True
    """

    schema: object = None
    root: str | None = None  # root element name for schema-shaped XML (default: the model's title)

    def __post_init__(self) -> None:
        shape = self.schema
        if not (shape is None or isinstance(shape, dict) or (isinstance(shape, type)
                                                             and hasattr(shape, "model_json_schema"))):
            raise UsageError(f"guided.Xml takes a JSON Schema dict or a Pydantic model class (or nothing), got "
                             f"{type(shape).__name__}")
        if self.root is not None and (not isinstance(self.root, str) or not self.root):
            raise UsageError(f"Xml(root=...) takes an element name, got {self.root!r}")

    def __hash__(self) -> int:
        return hash((_hashable(self.schema), self.root))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Xml) and _hashable(self.schema) == _hashable(other.schema) and self.root == other.root

    def to_ir(self) -> CfgIR:
        """The intermediate form: `XML_GRAMMAR` with matched names, or the schema's grammar."""
        if self.schema is None:
            return well_formed_ir()
        return lark_to_ir(Grammar(schema_grammar(self.schema, root=self.root)), lark_lexing=False)


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
    ir = lark_to_ir(Grammar(XML_GRAMMAR), lark_lexing=False)
    names = MatchedNames(name=ir.terminal_index("NAME"), open_start=ir.terminal_index("LT"),
                         open_end=ir.terminal_index("GT"), empty_end=ir.terminal_index("SLASHGT"),
                         close_start=ir.terminal_index("LTSLASH"), name_bytes=NAME_BYTES)
    return dataclasses.replace(ir, matched_names=names)


# ------------------------------------------------------------------------------------------
# Schema-shaped XML

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")



def xml_schema(schema: Any) -> dict:
    """The JSON Schema of ``schema`` (a Pydantic model class, a dict or JSON text)."""
    if isinstance(schema, type) and hasattr(schema, "model_json_schema"):
        return schema.model_json_schema(by_alias=True, mode="validation")
    if isinstance(schema, str):
        return json.loads(schema)
    if isinstance(schema, dict):
        return schema
    raise SpecError(f"expected a Pydantic model class or a JSON Schema dict, got {type(schema).__name__}")


class _Builder:
    def __init__(self, root_schema: dict):
        self.root = root_schema
        self.rules: list[str] = []
        self.terms: dict[str, str] = {}
        self.count = 0

    def resolve(self, node: Any) -> dict:
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise SpecError(f"only local $ref is supported in XML schemas, got {ref!r}")
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            extra = {k: v for k, v in node.items() if k != "$ref"}
            node = {**target, **extra}
            seen += 1
            if seen > 64:
                raise SpecError("recursive $ref chains are not supported in XML schemas")
        if node is True or node == {}:
            return {"type": "string"}
        if not isinstance(node, dict):
            raise SpecError(f"unsupported schema node {node!r}")
        return node

    def nt(self) -> str:
        self.count += 1
        return f"e{self.count - 1}"

    def term(self, regex: str) -> str:
        name = self.terms.get(regex)
        if name is None:
            name = self.terms[regex] = f"V{len(self.terms)}"
        return name

    # -- scalars -------------------------------------------------------------------------------

    def scalar_regex(self, node: dict, quote: str | None) -> tuple[str, bool] | None:
        """(regex, may_be_empty) of a scalar's escaped text, or None if the node is not a scalar."""
        ref = _REF
        if "const" in node:
            return _literal_alts([node["const"]], quote), False
        if "enum" in node:
            return _literal_alts(node["enum"], quote), False
        types = node.get("type")
        if isinstance(types, list):
            types = [t for t in types if t != "null"]
            types = types[0] if len(types) == 1 else types
        if types == "string":
            if quote is None:
                c = f"[^<&\\]{_NOT_CHAR}]"
                c2 = f"[^<&\\]>{_NOT_CHAR}]"
                return f"(?:{c}|{ref}|\\]{c}|\\]{ref}|\\]\\]+{c2}|\\]\\]+{ref})+\\]*|\\]+", True
            return f"(?:[^<&{quote}{_NOT_CHAR}]|{ref})+", True
        if types == "integer":
            return r"-?(?:0|[1-9][0-9]*)", False
        if types == "number":
            return r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", False
        if types == "boolean":
            return "true|false", False
        return None

    # -- elements ------------------------------------------------------------------------------

    def element(self, name: str, node: Any) -> str:
        """A rule for element ``name`` holding a value of ``node``; returns the rule's name."""
        node = self.resolve(node)
        if not _NAME.match(name):
            raise SpecError(f"{name!r} is not an XML element name (letters, digits, '_', '-', '.'; no ':')")
        nullable = _nullable(node)
        node = _strip_null(node)
        rule = self.nt()
        scalar = self.scalar_regex(node, None)
        open_, close = _lit(f"<{name}>"), _lit(f"</{name}>")
        if scalar is not None:
            regex, may_be_empty = scalar
            v = self.term(regex)
            body = f"{v}?" if (may_be_empty or nullable) else v
            self.rules.append(f"{rule}: {open_} {body} {close}" + (f" | {_lit(f'<{name}/>')}" if (may_be_empty or nullable) else ""))
            return rule
        if node.get("type") == "array" or "items" in node:
            raise SpecError(f"arrays of arrays are not supported in XML ({name!r})")
        if node.get("type") == "object" or "properties" in node:
            props = node.get("properties", {})
            required = set(node.get("required", []))
            attrs, children = [], []
            for key, sub in props.items():
                sub_r = self.resolve(sub)
                info = sub_r.get("xml") or (sub.get("xml") if isinstance(sub, dict) else None) or {}
                elem_name = info.get("name", key)
                if info.get("attribute"):
                    scalar = self.scalar_regex(_strip_null(sub_r), '"')
                    if scalar is None:
                        raise SpecError(f"attribute {key!r} must be a scalar")
                    if not _NAME.match(elem_name):
                        raise SpecError(f"{elem_name!r} is not an XML attribute name")
                    v = self.term(scalar[0])
                    part = f'{_lit(f" {elem_name}=" + chr(34))} {v}{"?" if scalar[1] else ""} {_lit(chr(34))}'
                    attrs.append(part if key in required else f"({part})?")
                else:
                    children.append(self.child(elem_name, sub_r, key in required))
            if node.get("additionalProperties") not in (None, False) or node.get("patternProperties"):
                raise SpecError(f"additional properties cannot be written as XML elements ({name!r})")
            start = _lit(f"<{name}")
            inner = " ".join(f"{c} _WS?" for c in children)
            body = f"{start} {' '.join(attrs)} {_lit('>')} _WS? {inner} {close}"
            self.rules.append(f"{rule}: {body}")
            return rule
        raise SpecError(f"unsupported schema for XML element {name!r}: {json.dumps(node)[:120]}")

    def child(self, name: str, node: dict, required: bool) -> str:
        if node.get("type") == "array" or "items" in node:
            items = node.get("items", {})
            one = self.element(name, items)
            lo, hi = int(node.get("minItems", 0)), node.get("maxItems")
            if hi is not None and int(hi) <= 16:
                parts = [f"{one} _WS?"] * lo + [f"({one} _WS?)?"] * (int(hi) - lo)
            else:
                parts = [f"{one} _WS?"] * lo + [f"({one} _WS?)*"]
            rule = self.nt()
            self.rules.append(f"{rule}: {' '.join(parts) if parts else ''}".rstrip())
            # An empty list rule must still derive something: make the whole group optional.
            return f"{rule}"
        one = self.element(name, node)
        return one if required else f"{one}?"


def _lit(text: str) -> str:
    return json.dumps(text)


def _escape(value: Any, quote: str | None) -> str:
    s = value if isinstance(value, str) else json.dumps(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quote:
        s = s.replace(quote, "&quot;" if quote == '"' else "&apos;")
    return s


def _literal_alts(values: list, quote: str | None) -> str:
    return "|".join(re.escape(_escape(v, quote)) for v in values)


def _nullable(node: dict) -> bool:
    t = node.get("type")
    if t == "null" or (isinstance(t, list) and "null" in t):
        return True
    return any(isinstance(a, dict) and a.get("type") == "null" for a in node.get("anyOf", []))


def _strip_null(node: dict) -> dict:
    if "anyOf" in node:
        rest = [a for a in node["anyOf"] if not (isinstance(a, dict) and a.get("type") == "null")]
        if len(rest) == 1:
            extra = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            return {**rest[0], **extra} if isinstance(rest[0], dict) else rest[0]
        raise SpecError("unions other than Optional[...] are not supported in XML")
    return node


def _root_name(schema: Any, root: str | None, js: dict) -> str:
    name = root or (js.get("xml") or {}).get("name") or js.get("title") or "root"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(name))
    return name if re.match(r"[A-Za-z_]", name) else "_" + name


def schema_grammar(schema: Any, root: str | None = None) -> str:
    """Lark grammar text for XML documents shaped by ``schema`` (root element ``root`` or the title)."""
    js = xml_schema(schema)
    b = _Builder(js)
    top = b.element(_root_name(schema, root, js), js)
    lines = [f"// XML shaped by a schema (root <{_root_name(schema, root, js)}>)", f"start: _WS? {top}"]
    lines += b.rules
    lines += [f"{name}: /{regex}/" for regex, name in b.terms.items()]
    lines.append(rf"_WS: /[ \t\r\n]{{1,{MAX_WHITESPACE}}}/")
    return "\n".join(lines) + "\n"


def parse_xml(text: str, schema: Any, root: str | None = None) -> Any:
    """Read XML produced under ``schema`` back: a validated Pydantic instance, or plain data for a dict schema."""
    js = xml_schema(schema)
    b = _Builder(js)
    element = ET.fromstring(text)
    data = _read(b, element, js)
    if isinstance(schema, type) and hasattr(schema, "model_validate"):
        return schema.model_validate(data)
    return data


def _read(b: _Builder, el: ET.Element, node: Any) -> Any:
    node = b.resolve(node)
    nullable = _nullable(node)
    node = _strip_null(node)
    if b.scalar_regex(node, None) is not None:
        return _scalar(el.text, node, nullable)
    out: dict[str, Any] = {}
    for key, sub in node.get("properties", {}).items():
        sub_r = b.resolve(sub)
        info = sub_r.get("xml") or {}
        name = info.get("name", key)
        if info.get("attribute"):
            if name in el.attrib:
                out[key] = _scalar(el.attrib[name], _strip_null(sub_r), _nullable(sub_r))
        elif sub_r.get("type") == "array" or "items" in sub_r:
            out[key] = [_read(b, child, sub_r.get("items", {})) for child in el.findall(name)]
        else:
            child = el.find(name)
            if child is not None:
                out[key] = _read(b, child, sub_r)
    return out


def _scalar(text: str | None, node: dict, nullable: bool) -> Any:
    types = node.get("type")
    if isinstance(types, list):
        types = [t for t in types if t != "null"][0]
    if text is None or text == "":
        if nullable:
            return None
        if types == "string" or "enum" in node or "const" in node:
            return ""
    if "enum" in node or "const" in node:
        for v in node.get("enum", [node.get("const")]):
            if (v if isinstance(v, str) else json.dumps(v)) == text:
                return v
    if types == "integer":
        return int(text)
    if types == "number":
        return float(text)
    if types == "boolean":
        return text == "true"
    return text


def to_xml(value: Any, schema: Any, root: str | None = None) -> str:
    """Write ``value`` (a Pydantic instance or plain data) as XML shaped by ``schema``: the inverse of `parse_xml`."""
    js = xml_schema(schema)
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True)
    b = _Builder(js)
    return _write(b, _root_name(schema, root, js), value, js)


def _write(b: _Builder, name: str, value: Any, node: Any) -> str:
    node = _strip_null(b.resolve(node))
    if value is None:
        return f"<{name}/>"
    if b.scalar_regex(node, None) is not None:
        return f"<{name}>{_escape(value, None)}</{name}>"
    attrs, children = "", []
    for key, sub in node.get("properties", {}).items():
        if key not in value:
            continue
        sub_r = b.resolve(sub)
        info = sub_r.get("xml") or {}
        n = info.get("name", key)
        if info.get("attribute"):
            if value[key] is not None:
                attrs += f' {n}="{_escape(value[key], chr(34))}"'
        elif sub_r.get("type") == "array" or "items" in sub_r:
            children += [_write(b, n, v, sub_r.get("items", {})) for v in value[key]]
        else:
            children.append(_write(b, n, value[key], sub_r))
    return f"<{name}{attrs}>{''.join(children)}</{name}>"
