"""Typed partial objects while streaming: each JSON value reported the moment the grammar says it is complete.

`FieldTracker` reads the output of a JSON constraint byte by byte the way the grammar reads it:
the same contextual, greedy lexer over the same intermediate form (the constraint's `CfgIR`, its
terminals offered by the parser state it is in) and the same LALR tables, by the rules of the
reference recogniser (`guided.ir.reference`: which terminals may start a lexeme, which one a
lexeme is, how the parser takes it).  The grammar's lexemes
are the JSON tokens (``{``, a key with its colon, a string, a number, ``]`` ...), so the tracker
knows at every byte which field it is in, and a value is complete exactly when its lexeme can no
longer grow: a string at its closing quote, ``true`` at its ``e``, a number when the next byte
cannot extend it (or at once when the schema allows no longer number), an object at its ``}``.
Nothing is guessed from half-written JSON: no closing of brackets, no re-parsing of prefixes.

Each complete value calls ``on_field(path, value)`` (``path``: the keys and indices from the
root, ``()`` for the root itself; ``value``: the JSON value), in document order (a container
after its members); `FieldTracker.partial` is the document so far: the values completed so far
and the containers opened so far, as plain JSON or, for a Pydantic model, as model instances built
with ``model_construct`` (complete fields validated to their types, open containers partial).

>>> import guided
>>> seen = []
>>> t = FieldTracker.for_spec(guided.JsonSchema({"type": "object", "properties": {
...     "name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}}),
...     on_field=lambda path, value: seen.append((path, value)))
>>> t.feed(b'{"name": "Ada", "tags": ["x"')
True
>>> seen, t.partial()
([(('name',), 'Ada'), (('tags', 0), 'x')], {'name': 'Ada', 'tags': ['x']})
>>> t.feed(b']}'); t.finish(); seen[-1]
True
((), {'name': 'Ada', 'tags': ['x']})
"""

from __future__ import annotations

import json
from typing import Any, Callable

from guided.compiler import lower
from guided.errors import UsageError
from guided.frontends.jsonschema import JsonSchema
from guided.frontends.pydantic import is_pydantic_model
from guided.ir import CfgIR
from guided.ir.dfa import DEAD
from guided.ir.reference import Reference

__all__ = ["FieldTracker", "typed_partial"]

FieldCallback = Callable[[tuple, Any], None]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


class _Container:
    __slots__ = ("value", "key", "path", "complete")

    def __init__(self, value: dict | list, path: tuple):
        self.value = value
        self.key: str | None = None  # an object's key whose value comes next
        self.path = path
        self.complete = False


class FieldTracker:
    """Follows one JSON document of ``ir`` as it is generated; see the module docstring."""

    def __init__(self, ir: CfgIR, *, on_field: FieldCallback | None = None, model: Any = None):
        if not isinstance(ir, CfgIR) or ir.matched_names is not None:
            raise UsageError("stream='objects' and on_field= follow JSON: give schema=, json_schema= or a JSON "
                             "response_format=")
        self.ir = ir
        self.on_field = on_field
        self.model = model
        self._reference = Reference(ir)
        self._stack: tuple[int, ...] = (ir.start_state,)
        self._lexeme = bytearray()
        self._states: dict[int, int] | None = None  # live candidates of the pending lexeme
        self._after_ignore = False
        self._containers: list[_Container] = []
        self._root: Any = _MISSING
        self._complete_ids: set[int] = set()
        self._changed = False
        # per terminal: may a DFA state still read one more byte?
        self._grows = [t.dfa.transitions.any(axis=1) for t in ir.terminals]

    @classmethod
    def for_spec(cls, spec: Any, *, on_field: FieldCallback | None = None) -> "FieldTracker":
        """A tracker for a JSON constraint: a Pydantic model class (partials are instances of it),
        a `guided.JsonSchema` (one from `JsonSchema.from_pydantic` keeps its model)."""
        model = spec if is_pydantic_model(spec) else getattr(spec, "model", None)
        if spec is None or not (model is not None or isinstance(spec, JsonSchema)):
            raise UsageError("stream='objects' and on_field= follow JSON: give schema=, json_schema= or a JSON "
                             "response_format=")
        return cls(lower(spec), on_field=on_field, model=model)

    # -- lexing, the grammar's way -------------------------------------------------------------

    def _candidates(self) -> dict[int, int]:
        terms = self.ir.terminals
        return {t: self._reference.initial(t) for t in self._reference.candidates(self._stack, self._after_ignore)
                if terms[t].dfa.initial != DEAD}

    def feed(self, data: bytes) -> bool:
        """Read more output; True when a value was completed (the partial document changed)."""
        self._changed = False
        for b in data:
            self._byte(b)
        return self._changed

    def _byte(self, b: int) -> None:
        terms = self.ir.terminals
        if self._states is None:
            self._states = self._candidates()
            self._lexeme.clear()
        # The reference's reading: a counted terminal's state is (DFA state, count) (rule 11).
        nxt = dict(self._reference.read(tuple(self._states.items()), b))
        if not nxt:
            if not self._lexeme:
                raise UsageError(f"the output left the grammar at byte {bytes([b])!r}")
            self._end_lexeme()
            self._byte(b)
            return
        self._states = nxt
        self._lexeme.append(b)
        if not any(self._grows[t][s if terms[t].count is None else s[0]] for t, s in nxt.items()):
            self._end_lexeme()  # nothing can extend it: complete now, not at the next byte

    def finish(self) -> None:
        """The output ended: close the pending lexeme."""
        if self._states is not None and self._lexeme:
            self._end_lexeme()

    def _end_lexeme(self) -> None:
        chosen = self._reference.choose(tuple((self._states or {}).items()))
        text = bytes(self._lexeme)
        self._states = None
        self._lexeme = bytearray()
        if chosen is None:
            raise UsageError(f"the output left the grammar at {text!r}")
        self._after_ignore = chosen in self.ir.ignore
        if self._after_ignore:
            return
        stack = self._reference.feed(self._stack, chosen)
        if stack is None:
            raise UsageError(f"the output left the grammar at {text!r}")
        self._stack = stack
        self._token(text.decode("utf-8"))

    # -- the document's structure, from its lexemes ----------------------------------------------

    def _token(self, text: str) -> None:
        lexeme = text.strip()
        top = self._containers[-1] if self._containers else None
        if lexeme in ("{", "["):
            container = _Container({} if lexeme == "{" else [], self._next_path(top))
            self._place(top, container.value)
            self._containers.append(container)
            return
        if lexeme in ("}", "]"):
            container = self._containers.pop()
            container.complete = True
            self._complete_ids.add(id(container.value))
            self._done(container.path, container.value)
            return
        if lexeme in (",", ":"):
            return
        if isinstance(top, _Container) and isinstance(top.value, dict) and top.key is None:
            if lexeme.endswith(":"):
                lexeme = lexeme[:-1].rstrip()
            top.key = json.loads(lexeme)  # a key: its value comes next
            return
        value = json.loads(lexeme)
        path = self._next_path(top)
        self._place(top, value)
        self._done(path, value)

    def _next_path(self, top: _Container | None) -> tuple:
        if top is None:
            return ()
        if isinstance(top.value, dict):
            return top.path + (top.key,)
        return top.path + (len(top.value),)

    def _place(self, top: _Container | None, value: Any) -> None:
        if top is None:
            self._root = value
        elif isinstance(top.value, dict):
            top.value[top.key] = value
            top.key = None
        else:
            top.value.append(value)

    def _done(self, path: tuple, value: Any) -> None:
        self._changed = True
        if self.on_field is not None:
            self.on_field(path, value)

    # -- views ----------------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._root is not _MISSING

    def snapshot(self, partial: Any = _MISSING) -> str:
        """What `partial` shows (or ``partial``, a value it returned) as JSON text, to compare
        updates: a key the model ignores (``extra="ignore"``) changes no typed partial."""
        value = self.partial() if partial is _MISSING else partial
        if hasattr(value, "model_dump"):
            value = value.model_dump(mode="json", exclude_unset=True, warnings=False)
        return json.dumps(value, sort_keys=True, default=str)

    def partial(self) -> Any:
        """The document so far (see the module docstring); ``None`` before its first value."""
        if self._root is _MISSING:
            return None
        if self.model is not None and isinstance(self._root, dict):
            return typed_partial(self.model, self._root, self._complete_ids)
        return _copy(self._root)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _model_of(annotation: Any) -> tuple[Any, str]:
    """``(model, how)``: the Pydantic model behind an annotation, ``how`` = ``"one"`` (the model
    or an optional one) or ``"list"`` (a list of it); ``(None, "")`` otherwise."""
    import typing

    if is_pydantic_model(annotation):
        return annotation, "one"
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (list, tuple, set, frozenset) or (origin is not None and getattr(origin, "__name__", "") in
                                                   ("Sequence", "List")):
        if args and is_pydantic_model(args[0]):
            return args[0], "list"
        return None, ""
    models = [a for a in args if is_pydantic_model(a)]
    if len(models) == 1 and len(args) == 1:
        return models[0], "one"
    return None, ""


def typed_partial(model: Any, data: dict, complete: set[int] | None = None) -> Any:
    """``model.model_construct`` of the fields in ``data``: nested models built the same way,
    complete values validated to their field's type (left as JSON where that fails).

    >>> from pydantic import BaseModel
    >>> class P(BaseModel):
    ...     x: int
    ...     y: int
    >>> typed_partial(P, {"x": 1})
    P(x=1)
    """
    from pydantic import TypeAdapter, ValidationError

    complete = complete if complete is not None else set()
    values = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in data:
            continue
        raw = data[key]
        sub, how = _model_of(field.annotation)
        done = not isinstance(raw, (dict, list)) or id(raw) in complete
        if done:
            try:
                values[name] = TypeAdapter(field.annotation).validate_python(raw)
                continue
            except ValidationError:
                pass
        if sub is not None and how == "one" and isinstance(raw, dict):
            values[name] = typed_partial(sub, raw, complete)
        elif sub is not None and how == "list" and isinstance(raw, list):
            values[name] = [typed_partial(sub, v, complete) if isinstance(v, dict) else v for v in raw]
        elif isinstance(raw, list) and (item := _item_type(field.annotation)) is not None:
            # an open list of scalars: its finished items typed already (7.0 for an int is 7), so
            # closing the list changes nothing that was shown
            values[name] = [_validated(item, v) for v in raw]
        else:
            values[name] = _copy(raw)
    return model.model_construct(**values)


def _item_type(annotation: Any) -> Any:
    """The item type of ``list[X]`` (through ``Annotated`` and ``Optional``), else None."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _item_type(args[0])
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return _item_type(options[0]) if len(options) == 1 else None
    return args[0] if origin is list and args else None


def _validated(annotation: Any, value: Any) -> Any:
    """A finished scalar as ``annotation`` reads it; containers and failures as they are."""
    from pydantic import TypeAdapter, ValidationError

    if isinstance(value, (dict, list)):
        return _copy(value)
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return value

