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
from urllib.parse import quote

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
    """How calls are written on the wire (a model family's convention).

    ``open``/``close`` surround each call (``close`` may be empty: the calls then run to the end
    of the output); ``name_key``/``arguments_key`` are the call object's keys; ``separator``
    stands between parallel calls of a format without tags; ``array``: all the calls are the
    items of one JSON array written after ``open`` (Mistral).  The default is the Hermes/Qwen
    convention; `for_family` gives the three families' formats:

    - ``"hermes"`` (Hermes, Qwen 2.5 / 3): ``<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>``,
      one such block per call;
    - ``"llama3"`` (Llama 3.1-3.3 JSON tool calling): a bare ``{"name": ..., "parameters": {...}}``,
      parallel calls separated by ``"; "``; a free answer never starts with ``{``;
    - ``"mistral"``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``, every call in one array.

    >>> ToolFormat.for_family("llama3").arguments_key
    'parameters'
    """

    open: str = "<tool_call>"
    close: str = "</tool_call>"
    name_key: str = "name"
    arguments_key: str = "arguments"
    separator: str = ""
    array: bool = False
    family: str = "custom"

    def __post_init__(self):
        if not self.open and self.close:
            raise UsageError("ToolFormat: a close tag needs an open tag")
        if self.array and (not self.open or self.close):
            raise UsageError("ToolFormat(array=True) needs an open tag and no close tag")
        if not self.open and not self.separator:
            raise UsageError("ToolFormat without tags needs a separator between parallel calls")

    @staticmethod
    def for_family(family: str) -> "ToolFormat":
        """The format of ``"hermes"``, ``"llama3"`` or ``"mistral"`` (see the class docstring)."""
        if family not in TOOL_FORMATS:
            raise UsageError(f"tool_format={family!r}: expected one of {', '.join(TOOL_FORMATS)} or 'auto'")
        return TOOL_FORMATS[family]

    def opener(self) -> str:
        """What every call (or the array of calls) starts with: the text that tells a call from a free answer."""
        return self.open or "{"


TOOL_FORMATS: dict[str, ToolFormat] = {
    "hermes": ToolFormat("<tool_call>", "</tool_call>", family="hermes"),
    "llama3": ToolFormat("", "", arguments_key="parameters", separator="; ", family="llama3"),
    "mistral": ToolFormat("[TOOL_CALLS]", "", array=True, family="mistral"),
}


def tool_format_from_template(template: str | None) -> ToolFormat:
    """The tool-call format a chat template writes (``tool_format="auto"``): Mistral's
    ``[TOOL_CALLS]``, Hermes/Qwen's ``<tool_call>``, Llama 3's JSON with ``"parameters"``; the
    Hermes convention when the template shows none.

    >>> tool_format_from_template("{% if tools %}...<tool_call>...{% endif %}").family
    'hermes'
    >>> tool_format_from_template(None).family
    'hermes'
    """
    text = template or ""
    if "[TOOL_CALLS]" in text:
        return TOOL_FORMATS["mistral"]
    if "<tool_call>" in text:
        return TOOL_FORMATS["hermes"]
    if "parameters" in text and ("<|python_tag|>" in text or "ipython" in text or "<|eom_id|>" in text):
        return TOOL_FORMATS["llama3"]
    return TOOL_FORMATS["hermes"]


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
    out = {"name": str(fn["name"]), "description": fn.get("description", ""), "parameters": params}
    strict = fn.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise SpecError(f"tool {out['name']!r}: 'strict' must be true or false, got {strict!r}")
        if strict:
            from guided.frontends.strict import check_name, check_strict

            check_name(out["name"], "tools.function.name")
            check_strict(params, out["name"], kind="function")
        out["strict"] = strict
    return out, None


class Tools:
    """A set of tools and the rules for calling them; a constraint spec (hashable, compiled per vocabulary).

    ``tool_choice``: ``"auto"`` (a free-text answer, calls, or text then calls where the format
    has an open tag), ``"required"`` (at least one call), ``"none"`` (a free-text answer, no
    call), a tool's name or OpenAI's ``{"type": "function", "function": {"name": ...}}`` (a call
    to that tool).  ``parallel``: allow several calls.  ``format``: the wire format
    (`ToolFormat`; `ToolFormat.for_family`).  A tool given as an OpenAI dict may say
    ``"strict": true`` (its parameters must then obey OpenAI's strict mode, `guided.frontends.strict`,
    or `StrictSchemaError` is raised with OpenAI's reason) or ``"strict": false`` (keywords that
    cannot be enforced exactly are relaxed, as with ``JsonSchema(lenient=True)``).
    ``canonical``: names, keys and strings only in their canonical JSON spelling (no needless
    ``\\u`` escapes: a tool's name is then fixed bytes); `guided.validate` turns it off.
    """

    def __init__(self, tools: Sequence[Any], *, tool_choice: str | Mapping = "required", parallel: bool = False,
                 format: ToolFormat = ToolFormat(), max_whitespace: int = 16, canonical: bool = True):
        if isinstance(format, str):
            format = ToolFormat.for_family(format)
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
            named = tool_choice.get("function", tool_choice)
            if tool_choice.get("type", "function") != "function" or not isinstance(named, Mapping) or \
                    "name" not in named:
                raise SpecError(f"tool_choice={dict(tool_choice)!r}: expected "
                                "{'type': 'function', 'function': {'name': ...}}")
            tool_choice = named["name"]
        if not isinstance(tool_choice, str) or (tool_choice not in ("auto", "required", "none")
                                                and tool_choice not in self.functions):
            raise SpecError(f"tool_choice={tool_choice!r}: expected 'auto', 'required', 'none' or a tool name "
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
        """The JSON Schema of one call object (``anyOf`` over the callable tools), or of the array
        of calls for an array format (Mistral)."""
        f = self.format
        chosen = [d for d in self.definitions if self.tool_choice in ("auto", "required") or d["name"] == self.tool_choice]
        alts = [{"type": "object", "properties": {f.name_key: {"const": d["name"]},
                                                  f.arguments_key: self._parameters(d)},
                 "required": [f.name_key, f.arguments_key], "additionalProperties": False} for d in chosen]
        one = alts[0] if len(alts) == 1 else {"anyOf": alts}
        if f.array:
            return {"type": "array", "items": one, "minItems": 1, **({} if self.parallel else {"maxItems": 1})}
        return one

    def _parameters(self, d: dict) -> Any:
        """A tool's parameters schema as embedded in `call_schema`: for a Python function, its
        arguments model's schema as guided reads Pydantic (`pydantic_schema`: formats that follow
        the Pydantic types); and an ``$id`` of its own, so that references inside it (Pydantic's
        ``#/$defs/Q`` for an argument typed as a model) resolve against it, not the call schema."""
        fn = self.functions.get(d["name"])
        params = d["parameters"]
        if fn is not None:
            from guided.frontends.pydantic import pydantic_schema

            params = pydantic_schema(_arguments_model(fn))
        if isinstance(params, dict) and "$id" not in params and "id" not in params:
            params = {**params, "$id": f"urn:guided:tool:{quote(d['name'], safe='')}"}
        return params

    @property
    def lenient(self) -> bool:
        """Some tool said ``"strict": false``: keywords that cannot be enforced exactly are relaxed."""
        return any(d.get("strict") is False for d in self.definitions)

    def to_ir(self) -> CfgIR | ByteDFA:
        """The intermediate form: the calls' JSON Schema grammar wrapped in the wire format
        (`wrap_calls`); for ``tool_choice="none"`` the automaton of a free answer."""
        if self.tool_choice == "none":
            return _free_answer_dfa(self.format)
        options = {"closed": True, "max_whitespace": self.max_whitespace, "lenient": self.lenient}
        options["canonical"] = self.canonical  # names and keys as fixed bytes (never \u-escaped)
        if self.lenient:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inner = schema_to_ir(JsonSchema(self.call_schema(), **options))
        else:
            inner = schema_to_ir(JsonSchema(self.call_schema(), **options))
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

    Reads the format's own way: each ``<tool_call>`` block (Hermes; text before the first block is
    the model's preamble and is dropped here: `guided.Generation.text` keeps it), bare objects
    separated by ``;`` (Llama 3; a call starts the output with ``{``), or the array after
    ``[TOOL_CALLS]`` (Mistral).  Each call's JSON is read with a JSON decoder, so a close tag
    inside one of its strings is part of the string.

    >>> tools = Tools([{"name": "echo", "parameters": {"type": "object", "properties": {"s": {"type": "string"}}}}])
    >>> parse_tool_calls('<tool_call>{"name": "echo", "arguments": {"s": "</tool_call>"}}</tool_call>', tools)
    [ToolCall(name='echo', arguments={'s': '</tool_call>'})]
    """
    f = tools.format
    decoder = json.JSONDecoder()
    if not f.open:
        if not text.startswith("{"):
            return text
        objects, at = [], 0
        while True:
            obj, at = _decode_at(decoder, text, at)
            objects.append(obj)
            rest = text[at:].lstrip()
            if not rest:
                break
            if not rest.startswith(f.separator.strip()):
                raise SpecError(f"unexpected text after a tool call at offset {at}: {rest[:40]!r}")
            at = len(text) - len(rest) + len(f.separator.strip())
        return [_call(obj, tools) for obj in objects]
    at = text.find(f.open)
    if at < 0:
        return text
    if f.array:
        items, end = _decode_at(decoder, text, at + len(f.open))
        if not isinstance(items, list) or text[end:].strip():
            raise SpecError(f"the tool calls after {f.open!r} are not one JSON array")
        return [_call(obj, tools) for obj in items]
    calls = []
    while at >= 0:
        obj, end = _decode_at(decoder, text, at + len(f.open))
        calls.append(_call(obj, tools))
        close = text.find(f.close, end) if f.close else end
        if close < 0 or text[end:close].strip():
            raise SpecError(f"the tool call at offset {at} does not end with {f.close!r}")
        at = text.find(f.open, close + len(f.close))
    return calls


def _decode_at(decoder: json.JSONDecoder, text: str, start: int) -> tuple[Any, int]:
    start += len(text[start:]) - len(text[start:].lstrip())
    try:
        return decoder.raw_decode(text, start)
    except json.JSONDecodeError as exc:
        raise SpecError(f"the tool call at offset {start} is not JSON: {exc}") from None


def _call(obj: Any, tools: Tools) -> ToolCall:
    f = tools.format
    if not isinstance(obj, dict) or f.name_key not in obj or f.arguments_key not in obj:
        raise SpecError(f"a tool call is an object with {f.name_key!r} and {f.arguments_key!r}, got {obj!r}")
    name = obj[f.name_key]
    return ToolCall(name, tools.validate(name, obj[f.arguments_key]))


def tool_constraint(tools: Any, tool_choice: Any = "auto", *, parallel: bool | None = None,
                    format: ToolFormat | str | None = None) -> tuple[Tools, Callable[[str], Any]]:
    """``(spec, parse)`` for `guided.generate`'s ``tools=`` / ``tool_choice=`` /
    ``parallel_tool_calls=`` / ``tool_format=`` (``None``: keep the `Tools`' own, or the defaults)."""
    options: dict[str, Any] = {}
    if parallel is not None:
        options["parallel"] = bool(parallel)
    if format is not None:
        options["format"] = ToolFormat.for_family(format) if isinstance(format, str) else format
    if isinstance(tools, Tools):
        if tool_choice not in (None, tools.tool_choice):
            options["tool_choice"] = tool_choice
        spec = tools.with_options(**options) if options else tools
    else:
        spec = Tools(tools, tool_choice=tool_choice if tool_choice is not None else "auto", **options)
    if spec.tool_choice == "none":
        return spec, lambda text: text
    return spec, lambda text: parse_tool_calls(text, spec)


# ------------------------------------------------------------------------------------------
# Wrapping a call grammar in its wire format, at the level of LALR tables


def _literal_dfa(regex: str) -> ByteDFA:
    return regex_to_dfa(Regex(regex))


def _free_text_dfa(forbidden: bytes, *, then_forbidden: bool = False, allow_empty: bool = False) -> ByteDFA:
    """UTF-8 text that never contains ``forbidden`` (product of a UTF-8 DFA and KMP); with
    ``then_forbidden``, such text followed by ``forbidden`` itself (its first occurrence ends it:
    a greedy lexer stops there).  Non-empty unless ``allow_empty``."""
    text = _literal_dfa(r"(?s:.)*" if allow_empty or then_forbidden else r"(?s:.)+")
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
    done = 0  # the state after the first occurrence (then_forbidden)
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
            elif u2 and then_forbidden:
                if not done:
                    done = -1  # allocated once every other state is numbered
                row[b] = -1
        rows.append(row)
        accepting.append(bool(text.accepting[u]) and not then_forbidden)
    if then_forbidden:
        done = len(rows)
        for row in rows:
            row[row == -1] = done
        rows.append(np.zeros(256, np.int32))
        accepting.append(True)
    return ByteDFA(np.stack(rows), np.array(accepting), 1)


def _free_answer_dfa(fmt: ToolFormat) -> ByteDFA:
    """A free answer in ``fmt``: non-empty text that never holds the open tag, or, for a format
    without tags (Llama 3), text that does not start with ``{`` (which would start a call)."""
    if fmt.open:
        return _free_text_dfa(fmt.open.encode())
    return _literal_dfa(r"(?s:[^{].*)")


def wrap_calls(inner: CfgIR, fmt: ToolFormat, *, parallel: bool, free_text: bool) -> CfgIR:
    """The LALR tables of the calls in ``fmt`` from the tables of one ``call``:

    - with open and close tags (Hermes): ``FREE? OPEN call CLOSE (OPEN call CLOSE)*``;
    - with an open tag only (Mistral: the call grammar is then the array of calls): ``FREE? OPEN call``;
    - without tags (Llama 3): ``call (SEP call)*`` or ``FREE``;

    repetition only if ``parallel``, ``FREE`` (a free answer, `_free_answer_dfa`) only if ``free_text``.
    The inner tables are kept: a new initial state shifts the open tag into the inner initial
    state; the close tag (or the separator) becomes a lookahead on which the inner grammar
    reduces, as it does at the end of input.
    """
    terminals = list(inner.terminals)

    def terminal(name: str, dfa: ByteDFA) -> int:
        terminals.append(Terminal(name, dfa, order=len(terminals)))
        return len(terminals) - 1

    OPEN = terminal("TOOL_OPEN", _literal_dfa(r"[ \t\r\n]{0,4}" + re.escape(fmt.open))) if fmt.open else None
    # Under "auto", text may come before the first call: one lexeme up to the open tag (a greedy
    # lexer could not end a free-text lexeme just before the tag).
    PREAMBLE = terminal("PREAMBLE_OPEN", _free_text_dfa(fmt.open.encode(), then_forbidden=True)) \
        if fmt.open and free_text else None
    CLOSE = terminal("TOOL_CLOSE", _literal_dfa(re.escape(fmt.close))) if fmt.close else None
    SEP = None
    if not fmt.open and parallel:
        SEP = terminal("TOOL_SEP", _literal_dfa(r"[ \t\r\n]{0,4}" + re.escape(fmt.separator.strip()) + r"[ \t\r\n]{0,4}"))
    FREE = terminal("FREE_TEXT", _free_answer_dfa(fmt)) if free_text else None
    actions = []
    for acts in inner.actions:
        acts = dict(acts)
        if END in acts:
            if CLOSE is not None:
                acts[CLOSE] = acts.pop(END)
            elif SEP is not None:
                acts[SEP] = acts[END]
        actions.append(acts)
    gotos = [dict(g) for g in inner.gotos]
    rules = list(inner.rules)
    rule_names = list(inner.rule_names)
    nonterminals = list(inner.nonterminals)
    no_ignore: set[int] = set()

    def state(acts: dict, goto: dict | None = None) -> int:
        actions.append(acts)
        gotos.append(goto or {})
        no_ignore.add(len(actions) - 1)  # around the tags, the tag terminals decide the whitespace
        return len(actions) - 1

    if OPEN is not None:
        initial = state({OPEN: inner.start_state})
        if CLOSE is not None:
            final = state({OPEN: inner.start_state} if parallel else {})
            actions[inner.end_state][CLOSE] = final
        else:
            final = inner.end_state
    else:
        initial, final = inner.start_state, inner.end_state
        no_ignore.add(initial)  # a call starts the output with its "{"
        if SEP is not None:
            again = state(dict(actions[inner.start_state]), dict(gotos[inner.start_state]))
            no_ignore.discard(again)
            actions[inner.end_state][SEP] = again
    if FREE is not None:
        lhs = len(nonterminals)
        nonterminals.append("free_answer")
        rules.append((lhs, 1))
        rule_names.append("free_answer: FREE_TEXT")
        free_state = state({END: -len(rules)})
        actions[initial][FREE] = free_state
        gotos[initial][lhs] = final
        if PREAMBLE is not None:
            actions[initial][PREAMBLE] = inner.start_state  # a preamble, then the calls
    return CfgIR(
        terminals=tuple(terminals), ignore=inner.ignore, actions=tuple(actions), gotos=tuple(gotos),
        rules=tuple(rules), nonterminals=tuple(nonterminals), start_state=initial, end_state=final,
        source=f"tool calls ({fmt.family}) {fmt.open}...{fmt.close}: {inner.source[:150]}",
        rule_names=tuple(rule_names), ignore_repeats=inner.ignore_repeats, nesting_states=inner.nesting_states,
        max_nesting=inner.max_nesting, no_ignore_states=frozenset(inner.no_ignore_states | no_ignore),
    )
