"""The scripts in examples/ run to completion on the real default model."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def run(name: str) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.model
def test_demo():
    out = run("demo.py")
    assert "answer" in out and "regex" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sampling.py", "reward_guided.py"])
def test_slow_examples(name):
    assert run(name).strip()


# The request-shape examples (issue 16), run in-process on ScriptedModel's random logits: fast, and
# each prints what its README section promises; on the real model under the slow marker.
SHAPE_EXAMPLES = {
    "generation_details.py": ["value: Person(", "finish_reason: ", "24 tokens: Person(", "free text cut at 8 tokens:"],
    "openai_shapes.py": ["json_schema: {'name': ", "json_object: {", "refused: Invalid schema for response_format "
                         "'loose': In context=(), 'additionalProperties' is required", "required: [ToolCall(",
                         "named: [ToolCall(name='get_time'", "none: "],
    "tool_formats.py": ["hermes: '<tool_call>", "llama3: '{", "mistral: '[TOOL_CALLS]",
                        "-> [ToolCall(name='get_weather'", "auto: ToolFormat(", "family='hermes'"],
    "reasoning.py": ["reasoning: ", "answer: Answer(city=", " thinking, ", "sampled: "],
    "partial_objects.py": ["partial: Person(name=", "field: name ", "field: (root) {"],
}


@pytest.mark.parametrize("name", sorted(SHAPE_EXAMPLES))
def test_request_shape_examples(name, monkeypatch, capsys):
    import runpy

    import guided
    from guided.testing import ScriptedModel

    monkeypatch.delenv("GUIDED_EXAMPLE_RANDOM", raising=False)
    monkeypatch.setattr(guided, "load_model", lambda *args, **kwargs: ScriptedModel(None, seed=0))
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    for expected in SHAPE_EXAMPLES[name]:
        assert expected in out, (expected, out[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHAPE_EXAMPLES))
def test_request_shape_examples_on_the_default_model(name):
    out = run(name)
    for expected in SHAPE_EXAMPLES[name]:
        assert expected in out, (expected, out[-2000:])


def test_readme_doctests():
    """README's ``>>>`` examples run as written (the code fences are blanked so that doctest does
    not read them as expected output)."""
    import doctest

    text = (EXAMPLES.parent / "README.md").read_text()
    text = "\n".join("" if line.startswith("```") else line for line in text.splitlines())
    test = doctest.DocTestParser().get_doctest(text, {}, "README.md", str(EXAMPLES.parent / "README.md"), 0)
    assert len(test.examples) >= 20  # the request-shape sections at least
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0
