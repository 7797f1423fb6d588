"""Tool calls: outputs always name an existing tool with arguments valid for it."""

from __future__ import annotations

import random

import numpy as np
import pytest

import guided
from guided.errors import SpecError
from guided.frontends.tools import ToolCall, ToolFormat, Tools, parse_tool_calls
from guided.validate import validate


def _tool(name, props, required=()):
    return {"type": "function", "function": {"name": name, "description": name,
            "parameters": {"type": "object", "properties": props, "required": list(required)}}}


S, I, B = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
TOOL_SETS = [
    [_tool("get", {"q": S}, ["q"]), _tool("get_weather", {"city": S, "days": {"type": "integer", "minimum": 1}}, ["city"])],
    [_tool("a", {}), _tool("ab", {"x": {"enum": ["u", "v"]}}, ["x"]), _tool("abc", {"f": B, "n": I}, ["f", "n"])],
    [_tool("search", {"query": S, "limit": {"type": "integer", "maximum": 10}}, ["query"])],
]


def _random_walk(grammar, vocab, rng, steps=90):
    m = grammar.matcher()
    out = b""
    for s in range(steps):
        allowed = np.flatnonzero(m.mask())
        if steps - s < 50:
            budget = np.flatnonzero(m.budget_mask(steps - s))
            allowed = budget if budget.size else m.closing_tokens()
        t = int(rng.choice(allowed))
        m.advance(t)
        if t in vocab.eos_token_ids:
            return out.decode()
        out += vocab.token_bytes[t]
    return out.decode() if m.accepts_eos() else None  # complete when the budget ran out (as in decoding)


@pytest.mark.parametrize("k", range(len(TOOL_SETS)))
@pytest.mark.parametrize("choice,parallel", [("required", False), ("auto", True), ("first", False)])
def test_random_outputs_are_valid_calls(k, choice, parallel, smollm2_vocab):
    defs = TOOL_SETS[k]
    names = [d["function"]["name"] for d in defs]
    if choice == "first":
        choice = names[0]
    tools = Tools(defs, tool_choice=choice, parallel=parallel)
    grammar = guided.compile(tools, smollm2_vocab)
    rng = random.Random(k)
    finished = 0
    for seed in range(6):
        text = _random_walk(grammar, smollm2_vocab, rng)
        if text is None:
            continue
        finished += 1
        result = parse_tool_calls(text, tools)  # validates the arguments
        if isinstance(result, str):
            assert choice == "auto" and "<tool_call>" not in result
            continue
        assert result and (parallel or len(result) == 1)
        for call in result:
            assert call.name in names and (choice in ("auto", "required") or call.name == choice)
    assert finished >= 3


def test_prefix_names_are_told_apart(smollm2_vocab):
    tools = Tools(TOOL_SETS[0])
    ok = '<tool_call>{"name": "get", "arguments": {"q": "x"}}</tool_call>'
    assert validate(ok, tools).ok
    assert parse_tool_calls(ok, tools) == [ToolCall("get", {"q": "x"})]
    bad = validate('<tool_call>{"name": "get", "arguments": {"city": "x"}}</tool_call>', tools)
    assert not bad.ok and bad.offset == ok.index('"q"') + 1  # get has no "city" (and get_weather no "q")
    assert validate('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}</tool_call>', tools).ok
    assert not validate('<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo", "days": 0}}</tool_call>', tools).ok
    assert not validate('<tool_call>{"name": "gets", "arguments": {}}</tool_call>', tools).ok
    assert not validate("free text", tools).ok
    assert validate("free text", Tools(TOOL_SETS[0], tool_choice="auto")).ok


def test_python_functions_and_custom_format(smollm2_vocab):
    def get_weather(city: str, days: int = 1) -> str:
        """Forecast for a city."""
        return f"{city}:{days}"

    def get(key: str) -> str:
        return key.upper()

    fmt = ToolFormat(open="[CALL]", close="[/CALL]", arguments_key="parameters")
    tools = Tools([get, get_weather], parallel=True, format=fmt)
    text = '[CALL]{"name": "get_weather", "parameters": {"city": "Oslo"}}[/CALL] [CALL]{"name":"get","parameters":{"key":"k"}}[/CALL]'
    assert validate(text, tools).ok
    calls = parse_tool_calls(text, tools)
    assert [tools.dispatch(c) for c in calls] == ["Oslo:1", "K"]
    with pytest.raises(SpecError):
        Tools([get, get])
    with pytest.raises(SpecError):
        Tools([get], tool_choice="nope")


def test_generate_with_tools(tiny_model):
    defs = TOOL_SETS[0]
    for seed in range(3):
        out = guided.generate(tiny_model, "Weather in Oslo?", tools=defs, tool_choice="required", temperature=1.0,
                              seed=seed, max_new_tokens=80)
        assert isinstance(out, list) and out and all(c.name in ("get", "get_weather") for c in out)
    out = guided.generate(tiny_model, "Hi", tools=defs, tool_choice="get_weather", max_new_tokens=80)
    assert out[0].name == "get_weather" and isinstance(out[0].arguments["city"], str)


def test_example_runs(monkeypatch, capsys):
    import runpy
    import pathlib

    monkeypatch.setenv("GUIDED_EXAMPLE_RANDOM", "1")
    runpy.run_path(str(pathlib.Path(__file__).parent.parent / "examples" / "tool_calls.py"), run_name="__main__")
    assert "call:" in capsys.readouterr().out


@pytest.mark.model
def test_example_on_the_default_model(capsys):
    import runpy
    import pathlib

    runpy.run_path(str(pathlib.Path(__file__).parent.parent / "examples" / "tool_calls.py"), run_name="__main__")
    assert "call:" in capsys.readouterr().out
