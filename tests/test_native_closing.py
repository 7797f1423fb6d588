"""Differential tests: the native core's budget masks and closing bounds of LALR grammars
(src/guided_native/closing.h) equal the Python engine's bit for bit.

Walks head for the end of the document (each step picks a token the Python budget mask allows
for a small random budget, sometimes any allowed token), so that they pass through strings,
required keys, optional members, closers and finished documents; at each step both engines
answer `budget_mask` for budgets around the lower bound and spread over 0..60,
`closing_lower_bound`, `closing_distance` and `closing_tokens`.  The Python engine is checked
for soundness elsewhere (tests/test_closing.py); here only agreement is asserted.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

import guided
from guided.engine import native, tuning

pytestmark = pytest.mark.skipif(not native.available(), reason="the native core is not built")

MASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "maskbench"
SCHEMAS = {
    "person": {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 24}, "age": {"type": "integer", "minimum": 0},
                       "city": {"type": "string"}},
        "required": ["name", "age", "city"], "additionalProperties": False,
    },
    # optional members before a required one: the required-terminal search decides the bound
    "optional_first": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}, "z": {"type": "integer"}},
        "required": ["z"], "additionalProperties": False,
    },
    "nested": {
        "type": "array", "minItems": 1,
        "items": {"anyOf": [{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
                            {"enum": ["x", "yz", None]}]},
    },
}
# Terminals that share a prefix ("<" of several elements): the pending lexeme's branches.
BRANCHING = r'''
start: item+
item: "<a>" NUMBER "</a>" | "<ab>" WORD "</ab>" | "<b/>"
%import common.NUMBER
%import common.WORD
'''


def maskbench_cases(count: int) -> list[tuple[str, dict]]:
    files = sorted(MASKBENCH.glob("*.json"))
    step = max(1, len(files) // count) if files else 1
    return [(p.stem, json.loads(p.read_text())) for p in files[::step][:count]]


def both(spec, vocab):
    try:
        py = guided.compile(spec, vocab, engine="python", cache=False)
    except guided.GuidedError:
        return None, None
    nat = guided.compile(spec, vocab, engine="native", cache=False)
    if not isinstance(nat, native.NativeCfgGrammar) or nat._native.counting:
        return None, None  # closing of these is still the Python twin's (guided.engine.native)
    return py, nat


def assert_closing_agrees(py, nat, rng: random.Random, where: str) -> None:
    lower = py.closing_lower_bound()
    assert nat.closing_lower_bound() == lower, where
    assert nat.closing_distance() == py.closing_distance(), where
    assert np.array_equal(nat.closing_tokens(), py.closing_tokens()), where
    budgets = {0, 1, rng.randrange(61)} | {b for b in (lower - 1, lower, lower + 1, lower + 2) if 0 <= b <= 60}
    for remaining in sorted(budgets):
        expected, got = py.budget_mask(remaining), nat.budget_mask(remaining)
        if not np.array_equal(expected, got):
            diff = np.flatnonzero(expected != got)[:20].tolist()
            raise AssertionError(f"{where} remaining {remaining}: budget masks differ on tokens {diff} "
                                 f"(python allows {[bool(expected[t]) for t in diff]})")


def closing_walk(py_grammar, nat_grammar, rng: random.Random, label: str, steps: int, prefix: list[int] = (),
                 script: list[int] | None = None) -> int:
    """Walk both engines toward the end of a document (after the tokens ``prefix``, unchecked),
    comparing the closing answers at each step; ``script``: the tokens to walk (else random)."""
    vocab = py_grammar.vocab
    py, nat = py_grammar.matcher(), nat_grammar.matcher()
    for token in prefix:
        if not py.mask()[token]:
            return 0  # a test document the tokenizer spells otherwise than the grammar allows
        py.advance(token)
        nat.advance(token)
    if script is not None:
        steps = len(script)
    for k in range(steps):
        where = f"{label} step {k}"
        assert_closing_agrees(py, nat, rng, where)
        if py.is_finished():
            return k
        if script is not None:
            token = script[k]
        else:
            allowed = np.flatnonzero(py.budget_mask(py.closing_lower_bound() + 1 + rng.randrange(4)))
            if not allowed.size or rng.random() < 0.25:
                allowed = np.flatnonzero(py.mask())
            token = int(rng.choice(allowed.tolist()))
        py.advance(token)
        nat.advance(token)
        if rng.random() < 0.1:  # a copy and a rollback answer as the matcher they came from
            nat = nat.copy()
            nat.rollback(1)
            nat.advance(token)
    assert_closing_agrees(py, nat, rng, f"{label} end")
    for eos in sorted(vocab.eos_token_ids)[:1]:
        if py.accepts_eos():
            py.advance(eos)
            nat.advance(eos)
            assert_closing_agrees(py, nat, rng, f"{label} after eos")
    return steps


def test_limits_are_the_python_engines():
    """The core's closing limits are `guided.engine.tuning`'s (the bounds must agree where they bite)."""
    assert native._require().closing_limits() == {
        "MANDATORY_MAX_SYMBOLS": tuning.MANDATORY_MAX_SYMBOLS,
        "MANDATORY_MAX_STATES": tuning.MANDATORY_MAX_STATES,
        "CLOSER_SEARCH_LIMIT": tuning.CLOSER_SEARCH_LIMIT,
        "REQUIRED_SEARCH_STACKS": tuning.REQUIRED_SEARCH_STACKS,
        "CLOSING_REFINE_TOKENS": tuning.CLOSING_REFINE_TOKENS,
        "CLOSING_REFINE_ADVANCING": tuning.CLOSING_REFINE_ADVANCING,
        "CLOSING_SEARCH_TOKENS": tuning.CLOSING_SEARCH_TOKENS,
        "ADVANCES_MEMO": tuning.ADVANCES_MEMO,
    }


@pytest.mark.parametrize("name", ["json", "tool_call", "python_call", "sql", "branching"])
def test_grammars_agree(name, smollm2_vocab):
    spec = guided.Grammar(BRANCHING) if name == "branching" else guided.Grammar(name)
    py, nat = both(spec, smollm2_vocab)
    assert nat is not None, f"{name} should compile to a native LALR grammar"
    rng = random.Random(f"closing-{name}")
    assert sum(closing_walk(py, nat, rng, f"{name} walk {i}", 18) for i in range(2)) > 10


@pytest.mark.parametrize("name", ["person", "nested"])
def test_schemas_agree(name, smollm2_vocab):
    py, nat = both(guided.JsonSchema(SCHEMAS[name]), smollm2_vocab)
    assert nat is not None
    assert closing_walk(py, nat, random.Random(f"closing-{name}"), name, 24) > 0


def test_required_after_optional_members_agree(smollm2_tokenizer, smollm2_vocab):
    """Optional members before a required one: the required-terminal search decides the bound.
    A scripted document (the Python engine's budget masks there cost seconds on random detours)."""
    py, nat = both(guided.JsonSchema(SCHEMAS["optional_first"]), smollm2_vocab)
    assert nat is not None
    encode = lambda text: smollm2_tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    steps = closing_walk(py, nat, random.Random("optional"), "optional_first", 0, encode('{"a": 1,'),
                         encode(' "b": true, "z": 12}'))
    assert steps > 5


@pytest.mark.skipif(not MASKBENCH.is_dir(), reason="shared MaskBench data not present")
def test_maskbench_schemas_agree(smollm2_tokenizer, smollm2_vocab):
    """From half-way through each case's first valid document, toward an end of its own."""
    walked = 0
    for stem, case in maskbench_cases(5):
        py, nat = both(guided.JsonSchema(case["schema"]), smollm2_vocab)
        valid = [t["data"] for t in case["tests"] if t.get("valid")]
        if nat is None or not valid:
            continue
        ids = smollm2_tokenizer.encode(json.dumps(valid[0], ensure_ascii=False), add_special_tokens=False)
        walked += closing_walk(py, nat, random.Random(stem), stem, 6, ids[: len(ids) // 2])
    assert walked > 12


def test_budget_mask_checks_its_argument(smollm2_vocab):
    nat = guided.compile(guided.JsonSchema(SCHEMAS["person"]), smollm2_vocab, engine="native")
    m = nat.matcher()
    with pytest.raises(guided.errors.UsageError, match="budget_mask"):
        m.budget_mask("3")
    # Budgets past the bounds' range and below zero answer as the Python engine does.
    py = guided.compile(guided.JsonSchema(SCHEMAS["person"]), smollm2_vocab, engine="python").matcher()
    for remaining in (-5, 2 ** 80):
        assert np.array_equal(m.budget_mask(remaining), py.budget_mask(remaining))
