"""The soundness harness's own parts: time-bounded reference verdicts, lexer-order refusals judged by
Lark, and the random schemas it draws (``$schema`` only at a document's root)."""

from __future__ import annotations

import importlib.util
import pathlib
import random
import re
import time

import lark
import pytest

from guided.frontends.lark import Grammar, LexerOrderConflict, lark_to_ir
from tests.random_specs import random_schema

HARNESS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "soundness.py"


@pytest.fixture(scope="module")
def harness():
    spec = importlib.util.spec_from_file_location("soundness_harness", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_reference_that_backtracks_forever_is_cut_off(harness):
    oracle = re.compile(r"(a*)*b")
    start = time.monotonic()
    with pytest.raises(harness.OracleTimeout):
        harness.bounded(0.2, lambda text: oracle.fullmatch(text) is not None, "a" * 60)
    assert time.monotonic() - start < 5
    assert harness.bounded(0.2, lambda text: oracle.fullmatch(text) is not None, "aab") is True


def test_a_number_past_decimals_range_gets_no_verdict(harness):
    """A mutant such as ``1E-9999999999999999999`` is JSON that ``Decimal`` cannot hold: no
    verdict (counted as such), not a crash of the run."""
    pytest.importorskip("quickjs")
    reference = harness.JsonSchemaReference()
    validator = reference.validator({"type": "number"})
    assert reference.accepts(validator, "1E-9999999999999999999") is None
    assert reference.accepts(validator, "1E-99") is True and reference.accepts(validator, "1E-") is False


def test_a_lexer_order_refusal_is_judged_by_lark(harness):
    source = 'start: (T | "do")+\nT: /[a-e]+/'
    with pytest.raises(LexerOrderConflict) as info:
        lark_to_ir(Grammar(source, parser="lalr"))
    assert harness.lark_lexes_otherwise(lark.Lark(source, parser="lalr"), info.value)


def has_nested_schema_keyword(schema, root: bool = True) -> bool:
    if isinstance(schema, dict):
        if "$schema" in schema and not root:
            return True
        return any(has_nested_schema_keyword(v, False) for v in schema.values())
    if isinstance(schema, list):
        return any(has_nested_schema_keyword(v, False) for v in schema)
    return False


def test_random_schemas_name_their_draft_only_at_the_root():
    rng = random.Random(5)
    schemas = [random_schema(rng) for _ in range(2000)]
    assert any("$schema" in s for s in schemas if isinstance(s, dict))
    assert not any(has_nested_schema_keyword(s) for s in schemas)
