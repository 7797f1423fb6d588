"""Hostile input compiles or gets a guided error in bounded time, and what compiles stays exact.

Random schemas (wrong-typed keywords, self references, lone surrogates), regexes (counted
repeats up to the limits, junk), Lark grammars and matcher operation sequences (advances of
any id, rollbacks, copies); see `tests/fuzzing.py` for the outcome classes and oracles.
``make test`` runs a derandomised few hundred examples; ``make fuzz`` the long run
(``GUIDED_FUZZ=long``, counts from ``FUZZ_SCHEMAS``, ``FUZZ_REGEXES``, ``FUZZ_GRAMMARS``,
``FUZZ_OPS``), which tallies every outcome and prints the counts per class at the end.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests import fuzzing as F


def _settings(variable: str, ci_examples: int):
    long = F.LONG
    return settings(
        max_examples=int(os.environ.get(variable, ci_examples)) if long else ci_examples,
        derandomize=not long,
        database=None,
        deadline=None,
        phases=[Phase.generate] if long else [Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )


@_settings("FUZZ_SCHEMAS", 250)
@given(F.schemas(), st.integers(0, 1000))
def test_random_schemas(schema, seed):
    F.check("schema", schema, lambda: F.run_schema(schema, seed))


@_settings("FUZZ_REGEXES", 200)
@given(F.regexes(), st.integers(0, 1000))
def test_random_regexes(pattern, seed):
    F.check("regex", pattern, lambda: F.run_regex(pattern, seed))


@_settings("FUZZ_GRAMMARS", 40)
@given(F.lark_grammars(), st.integers(0, 1000))
def test_random_lark_grammars(grammar, seed):
    text, safe = grammar
    F.check("grammar", text, lambda: F.run_lark(text, safe, seed))


@_settings("FUZZ_OPS", 150)
@given(st.integers(0, len(F.SPECS) - 1), F.ops)
def test_random_matcher_operations(spec_index, operations):
    F.check("matcher", (spec_index, operations), lambda: F.run_ops(spec_index, operations))


def test_fuzz_report():
    """The counts per class (printed with ``-s``); in the long run, the verdict on all of them."""
    print("\n" + F.TALLY.report())
    for kind in ("schema", "regex", "grammar", "matcher"):
        assert F.TALLY.bad(kind) == 0, F.TALLY.report()
