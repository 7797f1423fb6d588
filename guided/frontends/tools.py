"""Tool calls: OpenAI-style tool definitions or typed Python functions to a grammar of valid calls.

`Tools` compiles to a grammar that allows exactly a call to one of the tools, with arguments
valid under that tool's JSON Schema, in the wire format of the model's chat template
(`ToolFormat`; by default ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``), one or
several calls in a row (``parallel=True``), or a free-text answer instead when
``tool_choice="auto"``.  `parse_tool_calls` reads the output back as `ToolCall` objects whose
arguments are validated (Pydantic-coerced for Python functions), ready to `dispatch`.

The arguments' grammar is the JSON Schema front-end's (`guided.frontends.jsonschema`); the call
objects ``{"name": <const>, "arguments": <schema>}`` of all tools form one ``anyOf`` schema, and
the wire format's open/close tags are added around it at the level of the LALR tables
(`wrap_calls`), so tool names that are prefixes of one another (``get`` / ``get_weather``)
are told apart exactly by the string terminal that ends at the closing quote.

>>> def get_weather(city: str, unit: str = "C") -> str:
...     '''Current weather in a city.'''
...     return "sunny"
>>> tools = Tools([get_weather])
>>> tools.names
('get_weather',)
>>> parse_tool_calls('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>', tools)
[ToolCall(name='get_weather', arguments={'city': 'Oslo', 'unit': 'C'})]
>>> tools.dispatch(_[0])
'sunny'
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from guided.errors import SpecError, UsageError
from guided.frontends.jsonschema import JsonSchema, schema_to_ir
from guided.frontends.regex import Regex, regex_to_dfa
from guided.ir import END, ByteDFA, CfgIR, Terminal

__all__ = ["ToolCall", "ToolFormat", "Tools", "function_tool", "parse_tool_calls", "tool_constraint", "wrap_calls"]


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: the tool's name and its validated arguments."""

    name: str
    arguments: dict


@dataclass(frozen=True)
class ToolFormat:
    """How calls are written on the wire (the chat template's convention).

    ``open``/``close`` surround each call; ``name_key``/``arguments_key`` are the call object's
    keys.  The default is the Hermes/Qwen convention.  Both tags must be non-empty.
    """

    open: str = "<tool_call>"
    close: str = "</tool_call>"
    name_key: str = "name"
    arguments_key: str = "arguments"

    def __post_init__(self):
        if not self.open or not self.close:
            raise UsageError("ToolFormat needs non-empty open and close tags")


def function_tool(fn: Callable) -> dict:
    """The OpenAI-style definition of a typed Python function (arguments from its signature).

    >>> def add(a: int, b: int = 2) -> int:
    ...     '''Add two numbers.'''
    ...     return a + b
    >>> t = function_tool(add)["function"]
    >>> t["name"], t["description"], t["parameters"]["required"]
    ('add', 'Add two numbers.', ['a'])
    """
    return {"type": "function", "function": {
        "name": fn.__name__,
        "description": (inspect.getdoc(fn) or "").split("\n\n")[0].strip(),
        "parameters": _arguments_model(fn).model_json_schema(),
    }}


def _arguments_model(fn: Callable):
    import pydantic

    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise SpecError(f"{fn.__name__}: *args/**kwargs cannot be tool arguments")
        hint = hints.get(name, Any)
        fields[name] = (hint, ... if p.default is p.empty else p.default)
    return pydantic.create_model(f"{fn.__name__}_arguments", __config__=pydantic.ConfigDict(extra="forbid"), **fields)


def _normalise(tool: Any) -> tuple[dict, Callable | None]:
    if callable(tool) and not isinstance(tool, Mapping):
        return function_tool(tool)["function"], tool
    if not isinstance(tool, Mapping):
        raise SpecError(f"a tool is a dict or a Python function, got {type(tool).__name__}")
    fn = tool.get("function", tool) if tool.get("type", "function") == "function" else None
    if not isinstance(fn, Mapping) or "name" not in fn:
        raise SpecError(f"not an OpenAI-style function tool: {json.dumps(tool)[:120]}")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    return {"name": str(fn["name"]), "description": fn.get("description", ""), "parameters": params}, None


class Tools:
    """A set of tools and the rules for calling them; a constraint spec (hashable, compiled per vocabulary).

    ``tool_choice``: ``"auto"`` (calls or a free-text answer), ``"required"`` (at least one call),
    or a tool's name (a call to that tool).  ``parallel``: allow several calls in a row.
    ``canonical``: names, keys and strings only in their canonical JSON spelling (no needless
    ``\\u`` escapes: a tool's name is then fixed bytes); `guided.validate` turns it off.
    """

    def __init__(self, tools: Sequence[Any], *, tool_choice: str | Mapping = "required", parallel: bool = False,
                 format: ToolFormat = ToolFormat(), max_whitespace: int = 16, canonical: bool = True):
        if callable(tools) or isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, (list, tuple)):
            raise UsageError(f"Tools takes a list of tools (functions or OpenAI-style dicts), got "
                             f"{type(tools).__name__}: wrap a single tool as [tool]")
        if not tools:
            raise SpecError("no tools given")
        if not isinstance(format, ToolFormat):
            raise UsageError(f"Tools(format=...) takes a guided.tools.ToolFormat, got {type(format).__name__}")
        if isinstance(max_whitespace, bool) or not isinstance(max_whitespace, int) or max_whitespace < 0:
            raise UsageError(f"Tools(max_whitespace=...) takes a non-negative int, got {max_whitespace!r}")
        defs, self.functions = [], {}
        for t in tools:
            d, fn = _normalise(t)
            if d["name"] in self.functions:
                raise SpecError(f"two tools are named {d['name']!r}")
            defs.append(d)
            self.functions[d["name"]] = fn
        if isinstance(tool_choice, Mapping):  # {"type": "function", "function": {"name": ...}}
            tool_choice = tool_choice.get("function", tool_choice)["name"]
        if tool_choice not in ("auto", "required") and tool_choice not in self.functions:
            raise SpecError(f"tool_choice={tool_choice!r}: expected 'auto', 'required' or a tool name "
                            f"({', '.join(self.functions)})")
        self.definitions = tuple(defs)
        self.tool_choice = str(tool_choice)
        self.parallel = bool(parallel)
        self.format = format
        self.max_whitespace = int(max_whitespace)
        self.canonical = bool(canonical)
        self._key = (json.dumps(defs, sort_keys=True), self.tool_choice, self.parallel, format, self.max_whitespace,
                     self.canonical)
        self._models: dict[str, Any] = {}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d["name"] for d in self.definitions)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tools) and self._key == other._key

    def __repr__(self) -> str:
        return f"Tools({list(self.names)}, tool_choice={self.tool_choice!r}, parallel={self.parallel})"

    def with_options(self, **options: Any) -> "Tools":
        kw = dict(tool_choice=self.tool_choice, parallel=self.parallel, format=self.format,
                  max_whitespace=self.max_whitespace, canonical=self.canonical)
        kw.update(options)
        tools = [self.functions[d["name"]] or {"type": "function", "function": d} for d in self.definitions]
        return Tools(tools, **kw)

    def call_schema(self) -> dict:
        """The JSON Schema of one call object (``anyOf`` over the callable tools)."""
        f = self.format
        chosen = [d for d in self.definitions if self.tool_choice in ("auto", "required") or d["name"] == self.tool_choice]
        alts = [{"type": "object", "properties": {f.name_key: {"const": d["name"]}, f.arguments_key: d["parameters"]},
                 "required": [f.name_key, f.arguments_key], "additionalProperties": False} for d in chosen]
        return alts[0] if len(alts) == 1 else {"anyOf": alts}

    def to_ir(self) -> CfgIR:
        """The intermediate form: the calls' JSON Schema grammar wrapped in the wire format (`wrap_calls`)."""
        inner = schema_to_ir(JsonSchema(self.call_schema(), closed=True, max_whitespace=self.max_whitespace,
                                        canonical=self.canonical))
        return wrap_calls(inner, self.format, parallel=self.parallel, free_text=self.tool_choice == "auto")

    def validate(self, name: str, arguments: Any) -> dict:
        """The validated arguments of a call to ``name`` (raises `SpecError` when invalid)."""
        fn = self.functions.get(name)
        if name not in self.functions:
            raise SpecError(f"no tool named {name!r}")
        if fn is not None:
            import pydantic

            model = self._models.get(name) or self._models.setdefault(name, _arguments_model(fn))
            try:
                return dict(model.model_validate(arguments))
            except pydantic.ValidationError as exc:
                raise SpecError(f"invalid arguments for {name}: {exc}") from None
        import jsonschema

        params = next(d["parameters"] for d in self.definitions if d["name"] == name)
        try:
            jsonschema.validate(arguments, params)
        except jsonschema.ValidationError as exc:
            raise SpecError(f"invalid arguments for {name}: {exc.message}") from None
        return arguments

    def dispatch(self, call: ToolCall) -> Any:
        """Run the Python function behind ``call`` (only for tools given as functions)."""
        fn = self.functions.get(call.name)
        if fn is None:
            raise SpecError(f"tool {call.name!r} has no Python function to dispatch to")
        return fn(**call.arguments)


def parse_tool_calls(text: str, tools: Tools) -> list[ToolCall] | str:
    """The calls in ``text`` (validated), or ``text`` itself when it holds no call (a free answer).

    Each call's JSON is read with a JSON decoder, so a close tag inside one of its strings
    (``{"query": "</tool_call>"}``) is part of the string, not the end of the call.

    >>> tools = Tools([{"name": "echo", "parameters": {"type": "object", "properties": {"s": {"type": "string"}}}}])
    >>> parse_tool_calls('<tool_call>{"name": "echo", "arguments": {"s": "</tool_call>"}}</tool_call>', tools)
    [ToolCall(name='echo', arguments={'s': '</tool_call>'})]
    """
    f = tools.format
    if f.open not in text:
        return text
    decoder = json.JSONDecoder()
    calls = []
    at = text.find(f.open)
    while at >= 0:
        start = at + len(f.open)
        start += len(text[start:]) - len(text[start:].lstrip())
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError as exc:
            raise SpecError(f"the tool call at offset {at} is not JSON: {exc}") from None
        if not isinstance(obj, dict) or f.name_key not in obj or f.arguments_key not in obj:
            raise SpecError(f"the tool call at offset {at} is not an object with {f.name_key!r} and "
                            f"{f.arguments_key!r}")
        name = obj[f.name_key]
        calls.append(ToolCall(name, tools.validate(name, obj[f.arguments_key])))
        close = text.find(f.close, end)
        if close < 0 or text[end:close].strip():
            raise SpecError(f"the tool call at offset {at} does not end with {f.close!r}")
        at = text.find(f.open, close + len(f.close))
    return calls


def tool_constraint(tools: Any, tool_choice: Any = "auto") -> tuple[Tools, Callable[[str], Any]]:
    """``(spec, parse)`` for `guided.generate`'s ``tools=`` / ``tool_choice=``."""
    if isinstance(tools, Tools):
        spec = tools if tool_choice in (None, tools.tool_choice) else tools.with_options(tool_choice=tool_choice)
    else:
        spec = Tools(tools, tool_choice=tool_choice if tool_choice is not None else "auto")
    return spec, lambda text: parse_tool_calls(text, spec)


# ------------------------------------------------------------------------------------------
# Wrapping a call grammar in its wire format, at the level of LALR tables


def _literal_dfa(regex: str) -> ByteDFA:
    return regex_to_dfa(Regex(regex))


def _free_text_dfa(forbidden: bytes) -> ByteDFA:
    """Non-empty UTF-8 text that never contains ``forbidden`` (product of a UTF-8 DFA and KMP)."""
    text = _literal_dfa(r"(?s:.)+")
    # KMP automaton of `forbidden`: state k = length of the longest suffix that is a prefix.
    n = len(forbidden)
    kmp = np.zeros((n, 256), dtype=np.int64)
    fail = 0
    for k in range(n):
        for b in range(256):
            if b == forbidden[k]:
                kmp[k, b] = k + 1
            else:
                kmp[k, b] = kmp[fail, b] if k else 0
        if k:
            fail = kmp[fail, forbidden[k]]
    ids: dict[tuple[int, int], int] = {}
    rows: list[np.ndarray] = [np.zeros(256, np.int32)]
    accepting: list[bool] = [False]
    queue = [(text.initial, 0)]
    ids[queue[0]] = 1
    while len(rows) <= len(queue):
        u, k = queue[len(rows) - 1]
        row = np.zeros(256, np.int32)
        for b in range(256):
            u2 = int(text.transitions[u, b])
            k2 = int(kmp[k, b])
            if u2 and k2 < n:
                key = (u2, k2)
                if key not in ids:
                    ids[key] = len(queue) + 1
                    queue.append(key)
                row[b] = ids[key]
        rows.append(row)
        accepting.append(bool(text.accepting[u]))
    return ByteDFA(np.stack(rows), np.array(accepting), 1)


def wrap_calls(inner: CfgIR, fmt: ToolFormat, *, parallel: bool, free_text: bool) -> CfgIR:
    """The LALR tables of ``OPEN call CLOSE (OPEN call CLOSE)*`` (repetition if ``parallel``), or
    also of free text that never contains the open tag (``free_text``), from ``call``'s tables.

    The inner tables are kept; their end-of-input lookahead becomes the close tag, the state that
    accepted the call shifts the close tag into a new final state, and a new initial state shifts
    the open tag into the inner initial state (the final state does too when ``parallel``).
    """
    n = len(inner.terminals)
    OPEN, CLOSE, FREE = n, n + 1, n + 2
    terminals = list(inner.terminals)
    terminals.append(Terminal("TOOL_OPEN", _literal_dfa(r"[ \t\r\n]{0,4}" + re.escape(fmt.open)), order=n))
    terminals.append(Terminal("TOOL_CLOSE", _literal_dfa(re.escape(fmt.close)), order=n + 1))
    if free_text:
        terminals.append(Terminal("FREE_TEXT", _free_text_dfa(fmt.open.encode()), order=n + 2))
    actions = []
    for acts in inner.actions:
        acts = dict(acts)
        if END in acts:
            acts[CLOSE] = acts.pop(END)
        actions.append(acts)
    gotos = [dict(g) for g in inner.gotos]
    initial, final = len(actions), len(actions) + 1
    actions[inner.end_state][CLOSE] = final
    actions.append({OPEN: inner.start_state})
    actions.append({OPEN: inner.start_state} if parallel else {})
    gotos += [{}, {}]
    rules = list(inner.rules)
    rule_names = list(inner.rule_names)
    nonterminals = list(inner.nonterminals)
    if free_text:
        free_state = len(actions)
        actions[initial][FREE] = free_state
        lhs = len(nonterminals)
        nonterminals.append("free_answer")
        rules.append((lhs, 1))
        rule_names.append("free_answer: FREE_TEXT")
        actions.append({END: -len(rules)})
        gotos.append({})
        gotos[initial][lhs] = final
    return CfgIR(
        terminals=tuple(terminals), ignore=inner.ignore, actions=tuple(actions), gotos=tuple(gotos),
        rules=tuple(rules), nonterminals=tuple(nonterminals), start_state=initial, end_state=final,
        source=f"tool calls {fmt.open}...{fmt.close}: {inner.source[:150]}", rule_names=tuple(rule_names),
        ignore_repeats=inner.ignore_repeats, nesting_states=inner.nesting_states, max_nesting=inner.max_nesting,
        # The call's whitespace is ignored inside the call only; around the tags the tag
        # terminals decide.
        no_ignore_states=frozenset(range(initial, len(actions))),
    )
