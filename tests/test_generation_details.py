"""generate(..., details=True): a guided.Generation with every finish reason, exactly (ScriptedModel)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

import guided
from guided import Generation
from guided.decoding import DEFAULT_BUDGET_WINDOW
from guided.errors import UsageError
from guided.testing import ScriptedModel


class City(BaseModel):
    name: str
    population: int


CITY = '{"name": "Oslo", "population": 700000}'
LONG_CITY = '{"name": "' + "Oslo" * 12 + '", "population": 700000}'


def test_details_carries_text_value_and_token_counts():
    g = guided.generate(ScriptedModel([CITY]), "A city?", schema=City, details=True)
    assert isinstance(g, Generation)
    assert g.text == CITY and g.value == City(name="Oslo", population=700000) and g.reasoning is None
    assert g.finish_reason == "stop"
    # ByteTokenizer: one token per byte; the prompt is the plain string (no chat template)
    assert g.prompt_tokens == len("A city?") and g.completion_tokens == len(CITY.encode())
    assert g.total_tokens == g.prompt_tokens + g.completion_tokens


@pytest.mark.parametrize("kwargs,script", [
    ({"schema": City}, CITY),
    ({"json_schema": {"type": "array", "items": {"type": "integer"}}}, "[1, 2, 3]"),
    ({"regex": r"[a-z]+ [0-9]+"}, "abc 42"),
    ({"choices": ["yes", "no"]}, "no"),
    ({}, "free text"),
])
def test_without_details_the_value_is_unchanged(kwargs, script):
    plain = guided.generate(ScriptedModel([script]), "q", **kwargs)
    detailed = guided.generate(ScriptedModel([script]), "q", details=True, **kwargs)
    assert plain == detailed.value and not isinstance(plain, Generation)


def test_details_with_n_and_batches():
    out = guided.generate(ScriptedModel(["ab", "cd", "ef", "gh"]), ["p1", "p2"], regex="[a-z]{2}", n=2,
                         temperature=1.0, seed=0, details=True)
    assert [[g.text for g in row] for row in out] and all(isinstance(g, Generation) for row in out for g in row)
    assert all(g.finish_reason == "stop" for row in out for g in row)


def test_finish_reason_stop_for_a_stop_string():
    g = guided.generate(ScriptedModel(["one. two. three."]), "q", stop=["two"], details=True)
    assert g.text == "one. " and g.finish_reason == "stop"


def test_finish_reason_length_for_free_text():
    g = guided.generate(ScriptedModel(["a long free answer"]), "q", max_new_tokens=6, details=True)
    assert g.text == "a long" and g.finish_reason == "length" and g.completion_tokens == 6


def test_finish_reason_closed_early_when_closing_shortened_the_document():
    roomy_budget = len(CITY) + DEFAULT_BUDGET_WINDOW + 1  # closing is never consulted
    roomy = guided.generate(ScriptedModel([CITY]), "q", schema=City, max_new_tokens=roomy_budget, details=True)
    assert roomy.finish_reason == "stop" and roomy.text == CITY
    budget = len(CITY) + 4
    tight = guided.generate(ScriptedModel([LONG_CITY]), "q", schema=City, max_new_tokens=budget, details=True)
    assert tight.finish_reason == "closed_early"
    assert City.model_validate_json(tight.text) == tight.value and tight.completion_tokens <= budget
    assert len(tight.text) < len(LONG_CITY)


@pytest.mark.parametrize("decoding", [{"num_beams": 2}, {"draft": "prompt-lookup"}, {"temperature": 1.0, "seed": 3}])
def test_closed_early_in_every_decoder(decoding):
    budget = len(CITY) + 4
    g = guided.generate(ScriptedModel([LONG_CITY]), "q", schema=City, max_new_tokens=budget, details=True, **decoding)
    assert g.finish_reason == "closed_early" and City.model_validate_json(g.text) == g.value


def test_finish_reason_timeout():
    free = guided.generate(ScriptedModel(["never read"]), "q", timeout=1e-9, details=True)
    assert free.finish_reason == "timeout" and free.text == ""
    doc = guided.generate(ScriptedModel([CITY]), "q", schema=City, timeout=1e-9, details=True)
    assert doc.finish_reason == "timeout"
    assert City.model_validate_json(doc.text) == doc.value  # closed by the shortest way, still valid


def test_incomplete_documents_still_raise():
    with pytest.raises(guided.IncompleteOutput):
        guided.generate(ScriptedModel(["aaaa"]), "q", regex="a{20}", max_new_tokens=3, details=True)


def test_details_is_checked():
    with pytest.raises(UsageError, match="details="):
        guided.generate(ScriptedModel(["x"]), "q", details="yes")
    with pytest.raises(UsageError, match="details=True"):
        guided.generate(ScriptedModel(["x"]), "q", details=True, stream=True)


def test_generation_is_json_friendly():
    g = guided.generate(ScriptedModel(["[1, 2]"]), "q", json_schema={"type": "array"}, details=True)
    assert json.loads(g.text) == g.value == [1, 2]
