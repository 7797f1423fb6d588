"""The JSON Schema front-end: a JSON Schema to a context-free grammar with exact terminals.

>>> from guided.frontends.jsonschema import JsonSchema
>>> spec = JsonSchema({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]})
>>> ir = spec.to_ir()
>>> ir.num_states > 0
True

Defaults (see ``docs/json-schema-coverage.md`` for every keyword):

- **strict**: a keyword that cannot be enforced exactly raises `UnsupportedSchema` naming its
  JSON pointer and keyword; ``lenient=True`` relaxes it instead and warns
  (`RelaxedSchemaWarning`) listing every relaxed keyword.
- **whitespace**: any JSON whitespace between tokens, each run at most ``max_whitespace``
  bytes (default 40: enough for indent-4 output at depth 8); ``whitespace="compact"`` allows none.
- **spelling**: a string may be spelled any way JSON allows (``"\\u0041"`` is ``"A"``);
  ``canonical=True`` keeps only the spelling ``json.dumps(..., ensure_ascii=False)`` writes
  (characters raw, escapes only where JSON requires one), so that keys, ``const`` and ``enum``
  strings are fixed bytes.  What generation from a Pydantic model (`JsonSchema.from_pydantic`,
  ``generate(..., schema=Model)``) and tool calls use; `guided.validate` accepts every spelling.
- **property order**: the properties listed in ``properties`` come in schema order (each
  optional one may be skipped, required ones may not); properties that ``required`` names but
  ``properties`` does not follow them, in ``required`` order; then any number of additional
  properties (``patternProperties`` / ``additionalProperties``), in any order.
  ``additionalProperties`` absent means ``true`` (as the specification says) unless
  ``closed=True``: then no key the schema does not name (a key ``required`` names without a
  property schema takes any value).  ``property_order="any"``: an object's keys in any order,
  exactly (at most 8 named properties per object, else `SchemaTooLarge`).
- **formats** (``formats="assert"``): the string ``format``s listed in
  ``docs/json-schema-coverage.md`` are enforced exactly; the ones the specification defines
  that guided cannot enforce (``regex``, ``iri``, ``idn-email``, ...) are refused.  A format name the specification does not define (``path``,
  ``password``, ``int32`` on a string, ...) constrains nothing, as validators read it: the
  string compiles as a plain string and one `UnknownFormatWarning` per compilation lists each
  with its JSON pointer; ``unknown_formats="refuse"`` raises `UnsupportedSchema` instead.
  ``formats="annotate"`` reads every format as the specification does by default: an annotation
  that constrains nothing.
- **open values** (``{}``, ``true``, additional properties and items without a schema): any
  JSON value; the document ``{}`` allows is at most ``max_depth`` levels deep (default 8), and an
  open value inside one of the schema's objects or arrays nests at most ``max_depth - 1`` more.

The compiler is three passes over one schema, each a module (data flows one way):
`~guided.frontends.jsonschema.normalise` (schema algebra: ``$ref``, ``allOf``, ``anyOf``,
``oneOf``, ``not``, ``if`` to a disjunction of typed flat schemas, `normalise.Flat`),
`~guided.frontends.jsonschema.rules` (flat schemas to grammar rules over terminal descriptions,
then the LALR tables of `guided.ir.CfgIR`) and `~guided.frontends.jsonschema.terminals`
(descriptions to byte automata, with ``_strings`` and ``_numbers``); ``options`` holds the limits
and the clock, ``errors`` the errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from guided.errors import UsageError, warn_caller
from guided.frontends.jsonschema._checks import check_document
from guided.frontends.jsonschema.errors import (
    InvalidSchema,
    RelaxedSchemaWarning,
    SchemaTooLarge,
    UnknownFormatWarning,
    UnsupportedSchema,
)
from guided.frontends.jsonschema.options import Options
from guided.frontends.jsonschema.rules import RuleEmitter, to_ir
from guided.frontends.regex import check_limits
from guided.ir import CfgIR

__all__ = ["JsonSchema", "InvalidSchema", "UnsupportedSchema", "SchemaTooLarge", "RelaxedSchemaWarning",
           "UnknownFormatWarning", "schema_to_ir"]


@dataclass(frozen=True, init=False)
class JsonSchema:
    """A JSON Schema constraint: the output must be JSON text valid under ``schema``.

    ``schema`` is a dict, a boolean, or JSON text; it is kept as canonical JSON text so that the
    spec is hashable (``guided.compile`` caches by spec).  Property order in the text is kept:
    it is the order the output follows.  A schema that is not valid JSON Schema (a keyword of
    the wrong type, an unknown type name) raises `InvalidSchema` here, naming its JSON pointer;
    one nested deeper than ``max_nesting`` levels (its JSON text, or subschemas inside one
    another through ``$ref``), `SchemaTooLarge`.

    >>> JsonSchema({"type": "string"}) == JsonSchema('{"type":  "string"}')
    True
    """

    schema: str
    lenient: bool = False
    whitespace: str = "any"  # "any" (bounded runs) or "compact" (none)
    max_whitespace: int = 40
    closed: bool = False  # absent additionalProperties: no key beyond properties and required
    canonical: bool = False  # strings only in their canonical spelling (no needless escapes)
    max_depth: int = 8  # nesting bound of open-ended values
    # limits on the compiled grammar
    max_states: int = 100_000  # per terminal automaton
    max_rules: int = 50_000
    max_seconds: float = 10.0
    max_repeat: int = 256  # minItems/maxItems/minProperties/maxProperties/prefixItems positions
    max_alternatives: int = 256  # allOf x anyOf expansion
    max_multiple_of: int = 10_000
    max_string_length: int = 1_000_000  # minLength/maxLength (counted past 256, see terminals.py)
    max_nesting: int = 128  # JSON levels of the schema document, and subschemas inside one another
    unknown_formats: str = "ignore"  # string formats nobody defines: "ignore" (warn) or "refuse"
    formats: str = "assert"  # the formats guided knows: "assert" them, or "annotate" (constrain nothing)
    property_order: str = "declared"  # properties in schema order, or "any" order (small objects)
    # other schema documents "$ref" may name, by URI: canonical JSON text of {uri: document}
    resources: str | None = None
    # the Pydantic model the schema came from (`from_pydantic`): not part of the constraint
    model: Any = field(default=None, compare=False, repr=False)

    def __init__(self, schema: Any, *, lenient: bool = False, whitespace: str = "any", max_whitespace: int = 40,
                 closed: bool = False, canonical: bool = False, max_depth: int = 8, max_states: int = 100_000, max_rules: int = 50_000,
                 max_seconds: float = 10.0, max_repeat: int = 256, max_alternatives: int = 256,
                 max_multiple_of: int = 10_000, max_string_length: int = 1_000_000, max_nesting: int = 128,
                 unknown_formats: str = "ignore", formats: str = "assert", property_order: str = "declared",
                 resources: Any = None):
        options = {"lenient": lenient, "whitespace": whitespace, "max_whitespace": max_whitespace,
                   "closed": closed, "canonical": canonical, "max_depth": max_depth, "max_states": max_states, "max_rules": max_rules,
                   "max_seconds": max_seconds, "max_repeat": max_repeat, "max_alternatives": max_alternatives,
                   "max_multiple_of": max_multiple_of, "max_string_length": max_string_length,
                   "max_nesting": max_nesting, "unknown_formats": unknown_formats, "formats": formats,
                   "property_order": property_order}
        for name, value in options.items():
            object.__setattr__(self, name, value)
        if whitespace not in ("any", "compact"):
            raise UsageError(f"JsonSchema(whitespace=...) takes 'any' or 'compact', got {whitespace!r}")
        if unknown_formats not in ("ignore", "refuse"):
            raise UsageError(f"JsonSchema(unknown_formats=...) takes 'ignore' or 'refuse', got {unknown_formats!r}")
        if formats not in ("assert", "annotate"):
            raise UsageError(f"JsonSchema(formats=...) takes 'assert' or 'annotate', got {formats!r}")
        if property_order not in ("declared", "any"):
            raise UsageError(f"JsonSchema(property_order=...) takes 'declared' or 'any', got {property_order!r}")
        if not isinstance(max_whitespace, int) or isinstance(max_whitespace, bool) or max_whitespace < 0:
            raise UsageError(f"JsonSchema(max_whitespace=...) takes a non-negative integer, got {max_whitespace!r}")
        check_limits(self, max_depth=int, max_states=int, max_rules=int, max_seconds=float, max_repeat=int,
                     max_alternatives=int, max_multiple_of=int, max_string_length=int, max_nesting=int)
        object.__setattr__(self, "lenient", bool(lenient))
        object.__setattr__(self, "closed", bool(closed))
        object.__setattr__(self, "max_seconds", float(max_seconds))
        if isinstance(schema, JsonSchema):
            schema = schema.schema
        if isinstance(schema, (bytes, bytearray)):
            try:
                schema = schema.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidSchema("#", "schema", f"the schema text is not UTF-8: {exc}") from None
        if isinstance(schema, str):
            try:
                parsed = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise InvalidSchema("#", "schema", f"not valid JSON text: {exc}") from None
            except RecursionError:
                raise SchemaTooLarge("#", "the schema text nests too deeply to parse") from None
        else:
            parsed = schema
        if not isinstance(parsed, (dict, bool)):
            raise InvalidSchema("#", "schema", f"a schema must be an object or a boolean, not "
                                               f"{type(parsed).__name__}")
        check_document(parsed, max_nesting)
        try:
            text = json.dumps(parsed, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidSchema("#", "schema", f"not JSON-serialisable: {exc}") from None
        object.__setattr__(self, "schema", text)
        object.__setattr__(self, "canonical", bool(canonical))
        object.__setattr__(self, "model", None)
        object.__setattr__(self, "resources", _resources_text(resources, max_nesting))

    def options(self) -> dict:
        """The keyword options this spec was made with (all but ``schema`` and ``model``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("schema", "model")}

    def with_options(self, **options: Any) -> "JsonSchema":
        """The same schema (and model) with some options changed.

        >>> JsonSchema({"type": "object"}).with_options(closed=True).closed
        True
        """
        return JsonSchema(self.schema, **{**self.options(), **options}).of_model(self.model)

    def of_model(self, model: Any) -> "JsonSchema":
        """This spec, remembering the Pydantic model it describes (`guided.generate` returns an
        instance of it); equality and compiled grammars ignore it."""
        clone = JsonSchema(self.schema, **self.options())
        object.__setattr__(clone, "model", model)
        return clone

    @property
    def value(self) -> Any:
        """The schema as a Python object."""
        return json.loads(self.schema)

    @classmethod
    def from_pydantic(cls, model: Any, **options: Any) -> "JsonSchema":
        """The JSON Schema of a Pydantic v2 model (validation mode, aliases as the output keys),
        with the generation defaults ``closed=True, canonical=True`` unless ``options`` say
        otherwise; ``generate(..., schema=JsonSchema.from_pydantic(Model, whitespace="compact"))``
        returns a ``Model`` like ``schema=Model`` does."""
        from guided.frontends.pydantic import pydantic_spec

        return pydantic_spec(model, **options)

    def to_ir(self) -> CfgIR:
        """The intermediate form (`schema_to_ir`); raises `UnsupportedSchema` / `SchemaTooLarge`."""
        return schema_to_ir(self)


def _resources_text(resources: Any, max_nesting: int) -> str | None:
    """``resources`` ({URI: schema document}, or its JSON text) as canonical JSON text, URIs
    sorted (the documents keep their own key order: it is the order output follows)."""
    if resources is None:
        return None
    if isinstance(resources, str):
        try:
            resources = json.loads(resources)
        except json.JSONDecodeError as exc:
            raise InvalidSchema("#", "resources", f"not valid JSON text: {exc}") from None
    if not isinstance(resources, dict) or not all(isinstance(uri, str) for uri in resources):
        raise UsageError("JsonSchema(resources=...) takes a mapping of URIs to schema documents")
    for uri, document in resources.items():
        if not isinstance(document, (dict, bool)):
            raise InvalidSchema(uri, "schema", f"a schema must be an object or a boolean, not "
                                               f"{type(document).__name__}")
        check_document(document, max_nesting)
    try:
        return json.dumps(dict(sorted(resources.items())), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidSchema("#", "resources", f"not JSON-serialisable: {exc}") from None


def schema_to_ir(spec: JsonSchema) -> CfgIR:
    """Compile ``spec`` to the CFG intermediate form; raises `UnsupportedSchema` / `SchemaTooLarge`.

    In lenient mode every relaxed keyword is listed in one `RelaxedSchemaWarning`; the string
    formats nobody defines (``unknown_formats="ignore"``), in one `UnknownFormatWarning`.
    """
    emitter = _emit(spec)
    ir = emitter.ir
    relaxed = list(dict.fromkeys(emitter.relaxed))
    if relaxed:
        warn_caller(RelaxedSchemaWarning(
            f"{len(relaxed)} schema keyword(s) relaxed (not enforced exactly):\n  " + "\n  ".join(relaxed)))
    unknown = emitter.n.unknown_formats
    if unknown:
        warn_caller(UnknownFormatWarning(
            f"{len(unknown)} string format(s) unknown to guided and to the JSON Schema specification constrain "
            f"nothing (compiled as plain strings; unknown_formats='refuse' refuses them):\n  "
            + "\n  ".join(f"{pointer or '#'}: format {name!r}" for pointer, name in unknown)))
    return ir


def schema_to_ir_with_report(spec: JsonSchema) -> tuple[CfgIR, list[str]]:
    """`schema_to_ir` returning the list of relaxed keywords instead of warning (unknown formats,
    which constrain nothing, are not among them)."""
    emitter = _emit(spec)
    return emitter.ir, list(dict.fromkeys(emitter.relaxed))


def _emit(spec: JsonSchema) -> RuleEmitter:
    """The emitter that compiled ``spec``, its IR as ``emitter.ir``."""
    emitter = RuleEmitter(json.loads(spec.schema), Options(spec), json.loads(spec.resources or "{}"))
    try:
        grammar, start = emitter.emit()
        emitter.ir = to_ir(grammar, emitter.t, start, emitter.root, emitter.n.unsupported)
    except RecursionError:  # max_nesting set beyond what the interpreter's stack holds
        raise SchemaTooLarge(emitter.where, f"the schema nests too deeply for Python's recursion limit (lower "
                                            f"max_nesting={spec.max_nesting})") from None
    return emitter
