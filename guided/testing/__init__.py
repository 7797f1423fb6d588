"""Testing helpers for code that uses guided: `assert_matches` and a deterministic fake model.

`ScriptedModel` stands in for a language model in unit tests: it "wants" to write scripted
responses (or emits seeded random logits), and `guided.generate` runs it through the real
constraint machinery, so a test checks the application's guided calls without weights.

>>> import guided
>>> from guided.testing import ScriptedModel, assert_matches
>>> model = ScriptedModel(['{"city": "Oslo"}'])
>>> guided.generate(model, "Where?", regex=r'\\{"city": "[A-Za-z]+"\\}')
'{"city": "Oslo"}'
>>> assert_matches("2024-13", regex=r"\\d{4}-\\d{2}")
"""

from __future__ import annotations

from guided.testing.scripted import ByteTokenizer, ScriptedModel
from guided.validate import ValidationResult, validate

__all__ = ["ByteTokenizer", "ScriptedModel", "assert_matches", "assert_not_matches"]


def assert_matches(text: str, spec=None, *, schema=None, json_schema=None, regex=None, grammar=None,
                   format: str | None = None) -> None:
    """Assert that ``text`` is in the language; the failure says where it left it and what was expected.

    >>> assert_matches('{"a": }', grammar="json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    AssertionError: unexpected '}' at offset 6 (line 1, column 7): '{"a": ⟨here⟩}'; expected one of: ...
    """
    result = validate(text, spec, schema=schema, json_schema=json_schema, regex=regex, grammar=grammar, format=format)
    if not result.ok:
        raise AssertionError(result.message)


def assert_not_matches(text: str, spec=None, **kwargs) -> ValidationResult:
    """Assert that ``text`` is *not* in the language; returns the `ValidationResult` (its error location)."""
    result = validate(text, spec, **kwargs)
    if result.ok:
        raise AssertionError(f"expected {text!r} to be rejected, but it matches")
    return result
