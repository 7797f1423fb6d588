"""Schema-shaped XML: a Pydantic model or JSON Schema to a Lark grammar of XML documents, and back.

One element per property (in schema order; optional properties may be left out), arrays as
repeated elements named after the property, nested objects as nested elements, scalars as
escaped text.  A property whose schema says ``{"xml": {"attribute": true}}`` (the OpenAPI
convention; in Pydantic ``Field(json_schema_extra={"xml": {"attribute": True}})``) is written
as an attribute of its parent's start tag instead.  ``{"xml": {"name": "..."}}`` renames an
element.  A nullable property may be an empty element (read back as ``None``).

Element names are fixed by the schema, so a plain context-free grammar is exact here; the free
form (``format="xml"`` without a schema) needs `guided.engine.xml.XmlGrammar`.

>>> from pydantic import BaseModel
>>> class Point(BaseModel):
...     x: int
...     tags: list[str] = []
>>> print(schema_grammar(Point).splitlines()[1])
start: _WS? e0 _WS?
>>> parse_xml("<Point><x>3</x><tags>a &amp; b</tags><tags>c</tags></Point>", Point)
Point(x=3, tags=['a & b', 'c'])
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import Any

from guided.errors import SpecError

__all__ = ["schema_grammar", "parse_xml", "to_xml", "xml_schema"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*\Z")
_NOT_CHAR = r"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"


def _refs():
    from guided.engine.xml import _REF

    return _REF


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
        ref = _refs()
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
    lines = [f"// XML shaped by a schema (root <{_root_name(schema, root, js)}>)", f"start: _WS? {top} _WS?"]
    lines += b.rules
    lines += [f"{name}: /{regex}/" for regex, name in b.terms.items()]
    lines.append(r"_WS: /[ \t\r\n]+/")
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
