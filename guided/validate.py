"""`validate`: check a finished text against a constraint and say where it leaves the language.

The constraint is compiled against a one-byte-per-token vocabulary and the text is walked byte
by byte, so the first failing position is exact: the result gives its character offset, line
and column, and the continuations that would have been accepted there.

>>> import guided
>>> r = validate('{"a": 1,}', guided.Grammar("json"))
>>> r.ok, r.offset, '"' in r.expected
(False, 8, True)
>>> validate("2024", regex=r"\\d{4}").ok
True
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ValidationResult", "validate", "byte_vocabulary"]


@dataclass
class ValidationResult:
    """Outcome of `validate`: ``ok``, and where and why the text failed when it did."""

    ok: bool
    text: str
    offset: int | None = None  # character offset of the first byte outside the language
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    expected: list[str] = field(default_factory=list)  # continuations accepted at ``offset``
    message: str = ""
    value: Any = None  # the parsed value (schemas) when ok

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        return "ok" if self.ok else self.message


@functools.lru_cache(maxsize=1)
def byte_vocabulary():
    """256 one-byte tokens plus EOS (id 256): the vocabulary `validate` walks texts with."""
    from guided.vocab import Vocabulary

    return Vocabulary.from_token_bytes([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_ids=[256])


def _spec_and_parse(spec: Any, schema: Any, json_schema: Any, regex: Any, grammar: Any, format: str | None):
    resolved, parse = _resolve(spec, schema, json_schema, regex, grammar, format)
    return _every_spelling(resolved, model_class=_is_model(schema) or _is_model(spec)), parse


def _is_xml(spec: Any) -> bool:
    from guided.frontends.xml import Xml

    return isinstance(spec, Xml)


def _is_model(spec: Any) -> bool:
    return isinstance(spec, type) and hasattr(spec, "model_validate_json")


def _every_spelling(spec: Any, model_class: bool) -> Any:
    """The spec as a checker of text written by others: any JSON spelling of a string, and for a
    Pydantic model class the undeclared keys Pydantic accepts (generation writes canonical JSON
    and closes objects; see `guided.generate`)."""
    from guided.frontends.jsonschema import JsonSchema
    from guided.frontends.tools import Tools

    if isinstance(spec, JsonSchema):
        # JSON objects are unordered: keys in any order (`_compiled` falls back to the declared
        # order where the any-order compile passes a limit, `validate` tries it where it refuses).
        relaxed: dict[str, Any] = {"canonical": False, "property_order": "any"}
        if model_class:
            relaxed["closed"] = False  # accept what model_validate_json accepts
        return spec.with_options(**relaxed)
    if isinstance(spec, Tools):
        return spec.with_options(canonical=False)
    return spec


def _resolve(spec: Any, schema: Any, json_schema: Any, regex: Any, grammar: Any, format: str | None):
    from guided.generate import resolve_constraint, resolve_format

    if spec is not None:
        if any(v is not None for v in (schema, json_schema, regex, grammar)):
            from guided.errors import UsageError

            raise UsageError("give the spec positionally or by keyword, not both")
        name = type(spec).__name__
        if isinstance(spec, type) and hasattr(spec, "model_validate_json"):
            schema = spec
        elif isinstance(spec, dict):
            json_schema = spec
        elif name == "Regex":
            regex = spec
        elif name == "Grammar":
            grammar = spec
        else:
            return spec, (lambda text: text)
    if format not in (None, "json"):
        return resolve_format(format, None, None, schema=schema, json_schema=json_schema, regex=regex,
                               grammar=grammar, choices=None)
    return resolve_constraint(schema=schema, json_schema=json_schema, regex=regex, grammar=grammar)


def _describe(byte: int) -> str:
    if byte in b" \t\r\n":
        return {32: "' '", 9: "'\\t'", 13: "'\\r'", 10: "'\\n'"}[byte]
    if byte < 0x80:
        return chr(byte)
    return f"\\x{byte:02x}"


def _expected(mask) -> list[str]:
    allowed = [b for b in range(256) if mask[b]]
    out = [_describe(b) for b in allowed if b < 0x80]
    if any(b >= 0x80 for b in allowed):
        out.append("<non-ASCII>")
    if mask[256]:
        out.append("<end>")
    return out


def _compiled(spec: Any) -> tuple[Any, str]:
    """A matcher of ``spec`` on the byte vocabulary, and a note for failure messages: a schema
    that cannot be compiled with keys in any order (``property_order="any"`` tracks which keys
    are written, so it is bounded: `guided.errors.LimitExceeded`) is checked with keys in
    declared order instead, and the note says where any order stopped."""
    from guided.compiler import compile
    from guided.errors import LimitExceeded

    try:
        return compile(spec, byte_vocabulary()).matcher(), ""
    except LimitExceeded as exc:
        if not _any_order(spec):
            raise
        why = str(exc)
    declared = spec.with_options(property_order="declared")
    return compile(declared, byte_vocabulary()).matcher(), f" (keys checked in declared order: any order stopped at {why})"


def _walk(m: Any, data: bytes) -> tuple[int, str] | None:
    """Advance ``m`` byte by byte through ``data`` and EOS; None if all is accepted, else the
    position of the first refused byte (``m`` left just before it) and why."""
    from guided.errors import ConstraintViolation

    for pos, b in enumerate(data):
        try:
            m.advance(b)
        except ConstraintViolation:
            return pos, f"unexpected {_describe(b)!r}"
    if not m.accepts_eos():
        return len(data), "the text ends too early"
    return None


def _any_order(spec: Any) -> bool:
    from guided.frontends.jsonschema import JsonSchema

    return isinstance(spec, JsonSchema) and spec.property_order == "any"


def validate(text: str | bytes, spec: Any = None, *, schema: Any = None, json_schema: Any = None, regex: Any = None,
             grammar: Any = None, format: str | None = None) -> ValidationResult:
    """Check ``text`` against ``spec`` (a `guided.Regex`, `guided.Grammar`, `guided.JsonSchema`, a
    Pydantic model class, a JSON Schema dict, `guided.Xml`, `guided.Tools`, or the same keywords as
    `guided.generate`); the `ValidationResult` locates the first error."""
    from guided.compiler import compile

    if not isinstance(text, (str, bytes, bytearray, memoryview)):
        from guided.errors import UsageError

        raise UsageError(f"validate() takes the text as a str or bytes, got {type(text).__name__}")
    spec_, parse = _spec_and_parse(spec, schema, json_schema, regex, grammar, format)
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if _is_xml(spec_):
        # Generation writes nothing after the root element closes (guided.frontends.xml); text
        # written by others may end with whitespace, which XML ignores there.
        data = data.rstrip(b" \t\r\n")
    shown = data.decode("utf-8", "replace")
    m, order_note = _compiled(spec_)
    failed = _walk(m, data)
    if failed is not None and not order_note and _any_order(spec_):
        # Any key order is the right reading, but a union of objects may lose a document in it
        # that the declared order keeps (and the other way round): either accepting is a valid
        # document, since neither grammar accepts an invalid one.
        declared = compile(spec_.with_options(property_order="declared"), byte_vocabulary()).matcher()
        if _walk(declared, data) is None:
            m, failed = declared, None
    if failed is not None:
        pos, why = failed
        before = data[:pos].decode("utf-8", "replace")
        offset = len(before)
        line = before.count("\n") + 1
        column = offset - (before.rfind("\n") + 1) + 1
        expected = _expected(m.mask().tolist())
        context = shown[max(0, offset - 20):offset] + "⟨here⟩" + shown[offset:offset + 20]
        return ValidationResult(False, shown, offset, line, column, expected,
                                f"{why} at offset {offset} (line {line}, column {column}): {context!r}; "
                                f"expected one of: {', '.join(expected[:24]) or 'nothing'}{order_note}")
    try:
        value = parse(shown)
    except Exception as exc:  # noqa: BLE001 - validators beyond the grammar (Pydantic, tool arguments)
        return ValidationResult(False, shown, None, None, None, [], f"the text matches the grammar but does not "
                                                                      f"validate: {exc}")
    return ValidationResult(True, shown, value=value)
