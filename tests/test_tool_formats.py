"""Tool-call wire formats per model family, each read back by a parser written to that family's own rules.

The reference parsers below follow what each family's serving stack expects (not guided's own
`parse_tool_calls`):

- Hermes / Qwen: every ``<tool_call>...</tool_call>`` block holds one JSON object with ``name``
  and ``arguments``; text before the first block is the assistant's content;
- Llama 3.x JSON tool calling: the output starts with ``{`` and is one JSON object with ``name``
  and ``parameters`` (several separated by ``;``); an output that does not start with ``{`` is content;
- Mistral: ``[TOOL_CALLS]`` followed by a JSON array of objects with ``name`` and ``arguments``;
  text before it is content.
"""

from __future__ import annotations

import json
import random
import re
import zlib

import jsonschema
import numpy as np
import pytest

import guided
from guided.frontends.tools import ToolFormat, Tools, parse_tool_calls, tool_format_from_template
from guided.testing import ByteTokenizer, ScriptedModel

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"]}}}
GET = {"type": "function", "function": {"name": "get", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}
FLAG = {"type": "function", "function": {"name": "set_flag", "parameters": {
    "type": "object", "properties": {"on": {"type": "boolean"}, "why": {"enum": ["a", "b"]}}, "required": ["on"]}}}
TOOLS = [WEATHER, GET, FLAG]
PARAMS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


def parse_hermes(text: str) -> tuple[str, list[tuple[str, dict]]]:
    blocks = re.findall(r"<tool_call>(.*?)</tool_call>", text, re.DOTALL)
    content = text.split("<tool_call>", 1)[0]
    calls = [json.loads(b.strip()) for b in blocks]
    assert all(set(c) == {"name", "arguments"} for c in calls)
    return content, [(c["name"], c["arguments"]) for c in calls]


def parse_llama3(text: str) -> tuple[str, list[tuple[str, dict]]]:
    if not text.startswith("{"):
        return text, []
    decoder, calls, at = json.JSONDecoder(), [], 0
    while at < len(text):
        obj, at = decoder.raw_decode(text, at)
        assert set(obj) == {"name", "parameters"}
        calls.append((obj["name"], obj["parameters"]))
        rest = text[at:].lstrip()
        if not rest:
            break
        assert rest.startswith(";")
        at = len(text) - len(rest) + 1
        at += len(text[at:]) - len(text[at:].lstrip())
    return "", calls


def parse_mistral(text: str) -> tuple[str, list[tuple[str, dict]]]:
    if "[TOOL_CALLS]" not in text:
        return text, []
    content, payload = text.split("[TOOL_CALLS]", 1)
    items = json.loads(payload)
    assert isinstance(items, list) and all(set(c) == {"name", "arguments"} for c in items)
    return content, [(c["name"], c["arguments"]) for c in items]


PARSERS = {"hermes": parse_hermes, "llama3": parse_llama3, "mistral": parse_mistral}


def _random_walk(grammar, vocab, rng, steps=120):
    m = grammar.matcher()
    out = b""
    for s in range(steps):
        allowed = np.flatnonzero(m.mask())
        if steps - s < 60:
            budget = np.flatnonzero(m.budget_mask(steps - s))
            allowed = budget if budget.size else m.closing_tokens()
            if 0 < m.closing_distance() >= steps - s - 1:  # a uniform walk may pass a loose lower
                allowed = m.closing_tokens()  # bound by: follow the known completion once it barely fits
        t = int(rng.choice(allowed))
        m.advance(t)
        if t in vocab.eos_token_ids:
            return out.decode()
        out += vocab.token_bytes[t]
    return out.decode() if m.accepts_eos() else None  # complete when the budget ran out (as in decoding)


@pytest.mark.parametrize("family", sorted(PARSERS))
@pytest.mark.parametrize("choice,parallel", [("required", False), ("required", True), ("auto", False),
                                             ("get_weather", False)])
def test_random_outputs_parse_with_the_family_parser(family, choice, parallel, smollm2_vocab, seed=0):
    tools = Tools(TOOLS, tool_choice=choice, parallel=parallel, format=family)
    grammar = guided.compile(tools, smollm2_vocab)
    rng = random.Random(zlib.crc32(repr((family, choice, parallel)).encode()) + seed)
    finished = 0
    for _ in range(8):
        text = _random_walk(grammar, smollm2_vocab, rng)
        if text is None:
            continue
        finished += 1
        content, calls = PARSERS[family](text)
        assert guided.validate(text, tools).ok
        if not calls:
            assert choice == "auto", text
            assert parse_tool_calls(text, tools) == text
            continue
        if choice not in ("auto",) and family != "hermes":
            assert content.strip() == ""  # a forced call is nothing but the call (after whitespace)
        assert parallel or len(calls) == 1
        for name, arguments in calls:
            assert name in PARAMS and (choice in ("auto", "required") or name == choice)
            jsonschema.validate(arguments, PARAMS[name])
        assert [(c.name, c.arguments) for c in parse_tool_calls(text, tools)] == calls
    assert finished >= 4


@pytest.mark.parametrize("family,text", [
    ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'),
    ("hermes", 'Let me look.\n<tool_call>\n{"name": "get", "arguments": {"q": "x"}}\n</tool_call>\n'
               '<tool_call>\n{"name": "set_flag", "arguments": {"on": true}}\n</tool_call>'),
    ("llama3", '{"name": "get_weather", "parameters": {"city": "Oslo", "days": 2}}'),
    ("llama3", '{"name": "get", "parameters": {"q": "x"}}; {"name": "set_flag", "parameters": {"on": false}}'),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Oslo"}}]'),
    ("mistral", 'Sure. [TOOL_CALLS][{"name": "get", "arguments": {"q": "x"}}, '
                '{"name": "set_flag", "arguments": {"on": true, "why": "a"}}]'),
])
def test_family_examples_are_generated_exactly(family, text):
    """A model that writes the family's own format gets exactly that text, read back the same way."""
    tools = Tools(TOOLS, tool_choice="auto", parallel=True, format=family)
    out = guided.generate(ScriptedModel([text]), "q", tools=TOOLS, tool_choice="auto", parallel_tool_calls=True,
                          tool_format=family, details=True)
    assert out.text == text
    assert [(c.name, c.arguments) for c in out.value] == PARSERS[family](text)[1]
    assert guided.validate(text, tools).ok


@pytest.mark.parametrize("family,wrong", [
    ("hermes", '<tool_call>{"name": "get_weather", "parameters": {"city": "Oslo"}}</tool_call>'),  # llama's key
    ("llama3", ' {"name": "get", "parameters": {"q": "x"}}'),  # a call starts the output with "{"
    ("llama3", '{"name": "get", "arguments": {"q": "x"}}'),
    ("mistral", '[TOOL_CALLS]{"name": "get", "arguments": {"q": "x"}}'),  # calls come in an array
    ("mistral", '[TOOL_CALLS][{"name": "get", "arguments": {"q": "x"}}, {"name": "get", "arguments": {"q": "y"}}]'),
])
def test_other_spellings_are_refused(family, wrong):
    tools = Tools(TOOLS, tool_choice="required", parallel=False, format=family)
    assert not guided.validate(wrong, tools).ok


def test_free_answers_per_family():
    for family, answer in (("hermes", "No tool needed."), ("llama3", "No tool needed."),
                           ("mistral", "No tool needed.")):
        out = guided.generate(ScriptedModel([answer]), "q", tools=TOOLS, tool_format=family)
        assert out == answer
    # a Llama 3 free answer may not start with "{" (that is a call), nor contain a Hermes tag elsewhere
    tools = Tools(TOOLS, tool_choice="auto", format="llama3")
    assert not guided.validate("{not json", tools).ok
    assert not guided.validate("text <tool_call>x", Tools(TOOLS, tool_choice="auto")).ok


class _TemplateTokenizer(ByteTokenizer):
    def __init__(self, template: str):
        super().__init__()
        self.chat_template = template


TEMPLATES = {
    "hermes": "{% for tool in tools %}{{ tool }}{% endfor %} For each call return <tool_call>{...}</tool_call>",
    "llama3": "<|start_header_id|>ipython<|end_header_id|> respond with {\"name\": ..., \"parameters\": ...}<|eom_id|>",
    "mistral": "{% if message.tool_calls %}[TOOL_CALLS][{{ message.tool_calls|tojson }}]{% endif %}",
}


@pytest.mark.parametrize("family", sorted(TEMPLATES))
def test_auto_takes_the_format_from_the_chat_template(family):
    assert tool_format_from_template(TEMPLATES[family]).family == family
    script = {"hermes": '<tool_call>{"name": "get", "arguments": {"q": "x"}}</tool_call>',
              "llama3": '{"name": "get", "parameters": {"q": "x"}}',
              "mistral": '[TOOL_CALLS][{"name": "get", "arguments": {"q": "x"}}]'}[family]
    model = ScriptedModel([script], tokenizer=_TemplateTokenizer(TEMPLATES[family]))
    out = guided.generate(model, "q", tools=TOOLS, tool_choice="required", chat=False, details=True)
    assert out.text == script and out.value == [guided.ToolCall("get", {"q": "x"})]


def test_default_model_template_gives_hermes(smollm2_tokenizer):
    assert tool_format_from_template(smollm2_tokenizer.chat_template).family == "hermes"


def test_a_tools_own_format_is_kept():
    fmt = ToolFormat(open="[CALL]", close="[/CALL]")
    text = '[CALL]{"name": "get", "arguments": {"q": "x"}}[/CALL]'
    out = guided.generate(ScriptedModel([text]), "q", tools=Tools(TOOLS, format=fmt), details=True)
    assert out.text == text


@pytest.mark.parametrize("family", sorted(PARSERS))
def test_names_and_keys_are_forced_bytes(family, smollm2_vocab):
    """After the call's opening, jump-forward writes the tool name and the argument keys: no
    ``\\u``-escaped spelling of them is possible (canonical JSON).  Without whitespace choices
    (``max_whitespace=0``), so that nothing but the spelling could stop the forced run."""
    single = {tb[0]: i for i, tb in enumerate(smollm2_vocab.token_bytes) if len(tb) == 1}
    for canonical in (True, False):
        tools = Tools([WEATHER], tool_choice="get_weather", format=family, max_whitespace=0, canonical=canonical)
        m = guided.compile(tools, smollm2_vocab).matcher()
        fmt = tools.format
        for b in fmt.open.encode():
            m.advance(single[b])
        forced = m.forced_bytes()
        if not canonical:  # every spelling: a key may start with a \u escape
            assert b"get_weather" not in forced, forced
            continue
        assert b'"name":"get_weather"' in forced, forced
        assert b"\\u" not in forced
        assert b'"' + fmt.arguments_key.encode() + b'":{"city":"' in forced, forced


@pytest.mark.model
@pytest.mark.parametrize("family", sorted(PARSERS))
def test_real_model_calls_in_each_format(family, smollm2_model):
    prompt = [{"role": "system", "content": "Call the get_weather tool for the user's city."},
              {"role": "user", "content": "What is the weather in Paris?"}]
    out = guided.generate(smollm2_model, prompt, tools=TOOLS, tool_choice="required", tool_format=family,
                          max_new_tokens=60, details=True)
    content, calls = PARSERS[family](out.text)
    assert calls and [(c.name, c.arguments) for c in out.value] == calls
    for name, arguments in calls:
        jsonschema.validate(arguments, PARAMS[name])
