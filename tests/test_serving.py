"""guided.integrations.serving: request arguments to specs, and a batch's matchers followed through
a serving engine's row changes (checked against fresh matchers at every step)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import guided
from guided import (
    GrammarError,
    JsonSchema,
    Regex,
    RegexError,
    SpecError,
    UnsupportedSchema,
)
from guided.engine.bitmask import pack
from guided.integrations.serving import (
    RequestConstraint,
    RowMatchers,
    check_constraint,
    constraint_from_args,
)
from tests.batch_driver import (
    FakeBatch,
    Request,
    oracle_words,
    pick_allowed,
    small_vocab,
)

SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}},
          "required": ["ok", "n"], "additionalProperties": False}
TINY_LARK = 'start: "(" item ("," item)* ")"\nitem: /[a-z]+/ | start'

ARGS = [
    {"guided_json": SCHEMA},
    {"guided_json": json.dumps(SCHEMA), "guided_options": '{"whitespace": "compact"}'},
    {"guided_regex": r"[a-c]{2,5}(-[0-9]+)?"},
    {"guided_grammar": TINY_LARK},
    {"guided_choice": ["yes", "no", "maybe so"]},
    None,
]


# -- arguments ------------------------------------------------------------------------------


def test_each_key_gives_its_spec():
    assert constraint_from_args({"guided_json": SCHEMA}).spec == JsonSchema(SCHEMA)
    assert constraint_from_args({"guided_json": json.dumps(SCHEMA)}).spec == JsonSchema(SCHEMA)
    assert constraint_from_args({"guided_regex": "[0-9]+"}).spec == Regex("[0-9]+")
    assert constraint_from_args({"guided_grammar": "json"}).spec == guided.Grammar("json")
    choice = constraint_from_args({"guided_choice": ["a.b", "c"]}).spec
    assert choice == Regex(r"a\.b|c")
    assert constraint_from_args({"guided_choice": '["a.b", "c"]'}).spec == choice  # JSON text over HTTP


def test_options_reach_the_spec_and_the_budget_flag():
    c = constraint_from_args({"guided_json": SCHEMA, "guided_options": {"whitespace": "compact", "closed": True}})
    assert c.spec == JsonSchema(SCHEMA, whitespace="compact", closed=True) and c.close_before_max_tokens
    c = constraint_from_args({"guided_grammar": TINY_LARK, "guided_options": '{"start": "item", '
                                                                              '"close_before_max_tokens": false}'})
    assert c.spec == guided.Grammar(TINY_LARK, start="item") and not c.close_before_max_tokens


def test_requests_without_a_constraint_pass_through():
    assert constraint_from_args(None) is None
    assert constraint_from_args({}) is None
    assert constraint_from_args({"something_else": 1, "guided_regex": None}) is None


@pytest.mark.parametrize("args, message", [
    ({"guided_regex": "a", "guided_json": {}}, "at most one"),
    ({"guided_options": {"whitespace": "compact"}}, "without a constraint"),
    ({"guided_regex": "a", "guided_options": {"whitespace": "compact"}}, "unknown option 'whitespace'"),
    ({"guided_json": {}, "guided_options": {"max_seconds": 1000}}, "unknown option 'max_seconds'"),
    ({"guided_json": {}, "guided_options": {"closed": "yes"}}, "closed must be a bool"),
    ({"guided_json": {}, "guided_options": {"max_depth": True}}, "max_depth must be a int"),
    ({"guided_json": {}, "guided_options": {"whitespace": "pretty"}}, r"guided_options: .*whitespace=.*'any' or 'compact'"),
    ({"guided_json": {}, "guided_options": "{not json"}, "not valid JSON"),
    ({"guided_json": {}, "guided_options": "[1]"}, "must be an object"),
    ({"guided_json": "{not json"}, "not valid JSON"),
    ({"guided_json": 3}, "schema object or JSON text"),
    ({"guided_regex": 5}, "must be a string"),
    ({"guided_grammar": "/etc/passwd.lark"}, "file paths are not accepted"),
    ({"guided_grammar": "../grammars/json.lark"}, "file paths are not accepted"),
    ({"guided_grammar": "no_such_grammar"}, "guided_grammar: unknown grammar name .*shipped grammars are"),
    ({"guided_choice": []}, "non-empty list"),
    ({"guided_choice": "yes"}, "list of strings"),
])
def test_malformed_arguments_are_spec_errors_naming_the_argument(args, message):
    with pytest.raises(SpecError, match=message):
        constraint_from_args(args)


@pytest.mark.parametrize("args, error, message", [
    ({"guided_regex": "a("}, RegexError, "position"),
    ({"guided_json": {"type": "object", "properties": {"x": {"$ref": "#/nope"}}}}, UnsupportedSchema,
     "/properties/x"),
    ({"guided_grammar": "start: a\na: \"x\" b"}, GrammarError, "b"),
])
def test_check_constraint_raises_the_compile_error(args, error, message):
    with pytest.raises(error, match=message):
        check_constraint(constraint_from_args(args))


def test_check_constraint_accepts_valid_specs_once():
    for args in ARGS[:-1]:
        check_constraint(constraint_from_args(args))
    hits = check_constraint.cache_info().hits
    check_constraint(constraint_from_args(ARGS[0]))
    assert check_constraint.cache_info().hits == hits + 1


# -- a batch's matchers -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_rows_follow_a_changing_batch(seed):
    """Requests come, finish, get preempted and resume, swap and move, with async placeholders:
    every step, every constrained row's mask equals a fresh matcher's over that row's tokens."""
    rng = random.Random(seed)
    vocab = small_vocab()
    rows = RowMatchers(vocab, budget_window=0)  # the budget mask is checked on its own below
    batch = FakeBatch(rng)
    grammars = {}
    preempted: list[Request] = []
    pending = [Request(rng.choice(ARGS), max_tokens=rng.randint(1, 30)) for _ in range(25)]
    checked = 0
    for _step in range(200):
        if not pending and not preempted and not batch.live():
            break
        for _ in range(rng.randint(0, 3)):  # admit new or resumed requests
            if preempted and rng.random() < 0.5:
                batch.add(preempted.pop())
            elif pending:
                batch.add(pending.pop())
        live = batch.live()
        if live and rng.random() < 0.15:  # preempt one: it comes back later with its tokens
            preempted.append(batch.remove(rng.choice(live)[0]))
        live = batch.live()
        if len(live) >= 2 and rng.random() < 0.3:
            (a, _), (b, _) = rng.sample(live, 2)
            batch.swap(a, b)
        removed, added, moved = batch.step_update()
        for index in removed:
            rows.remove(index)
        for index, request in added:
            rows.remove(index)
            constraint = constraint_from_args(request.args)
            if constraint is not None:
                rows.add(index, constraint, request.output, request.max_tokens)
        for a, b, kind in moved:
            rows.move(a, b, swap=kind == "swap")

        placeholder = rng.random() < 0.3
        indices, bitmask = rows.fill()
        masks = dict(zip(indices, bitmask.copy()))
        live = batch.live()
        constrained = {i for i, r in live if r.args is not None}
        assert set(indices) == constrained
        for index, request in live:
            if request.args is None:
                token = rng.randrange(vocab.size)
            else:
                spec = constraint_from_args(request.args).spec
                grammar = grammars.setdefault(spec, guided.compile(spec, vocab))
                assert np.array_equal(masks[index], oracle_words(grammar, request.output)), (seed, request.output)
                checked += 1
                token = pick_allowed(rng, masks[index], vocab.size)
            request.output.append(-1 if placeholder else token)
            if placeholder:  # the engine fills it in before the next masks are needed
                request.output[-1] = token
            if token in vocab.eos_token_ids or len(request.output) >= request.max_tokens:
                batch.remove(index)
    assert checked > 100


def test_async_placeholder_is_not_consumed():
    vocab = small_vocab()
    rows = RowMatchers(vocab)
    out: list[int] = []
    rows.add(0, constraint_from_args({"guided_regex": "ab|cd"}), out)
    a = vocab.token_bytes.index(b"a")
    out.extend([a, -1])
    _, bitmask = rows.fill()
    assert np.array_equal(bitmask[0], oracle_words(guided.compile(Regex("ab|cd"), vocab), [a]))
    out[-1] = vocab.token_bytes.index(b"b")
    _, bitmask = rows.fill()
    assert np.array_equal(bitmask[0], pack(np.isin(np.arange(vocab.size), sorted(vocab.eos_token_ids))))


def test_budget_closes_the_document_before_max_tokens():
    vocab = small_vocab()
    rows = RowMatchers(vocab)
    out: list[int] = []
    constraint = constraint_from_args({"guided_regex": "[a-z]{1,20}!"})
    rows.add(0, constraint, out, max_tokens=4)
    grammar = guided.compile(constraint.spec, vocab)
    matcher = grammar.matcher()
    rng = random.Random(0)
    for _ in range(4):
        _, bitmask = rows.fill()
        remaining = 4 - len(out)
        assert np.array_equal(bitmask[0], pack(np.asarray(matcher.budget_mask(remaining))))
        token = pick_allowed(rng, bitmask[0], vocab.size)
        matcher.advance(token)
        out.append(token)
    assert matcher.accepts_eos()  # the text is a complete match within 4 tokens
    off = RowMatchers(vocab)
    off.add(0, RequestConstraint(constraint.spec, close_before_max_tokens=False), [], max_tokens=4)
    assert np.array_equal(off.fill()[1][0], oracle_words(grammar, []))


def test_a_row_fed_a_forbidden_token_is_only_allowed_eos(caplog):
    vocab = small_vocab()
    rows = RowMatchers(vocab)
    out: list[int] = []
    rows.add(3, constraint_from_args({"guided_regex": "[0-9]+"}), out)
    out.append(vocab.token_bytes.index(b"x"))
    with caplog.at_level("ERROR", logger="guided.serving"):
        indices, bitmask = rows.fill()
    eos_only = pack(np.isin(np.arange(vocab.size), sorted(vocab.eos_token_ids)))
    assert indices == [3] and np.array_equal(bitmask[0], eos_only)
    assert "row 3 left its constraint" in caplog.text


def test_a_spec_that_fails_to_compile_in_the_engine_ends_only_its_row(caplog):
    vocab = small_vocab()
    rows = RowMatchers(vocab)
    rows.add(0, RequestConstraint(Regex("a(")), [])
    rows.add(1, constraint_from_args({"guided_regex": "[0-9]"}), [])
    with caplog.at_level("ERROR", logger="guided.serving"):
        indices, bitmask = rows.fill()
    masks = dict(zip(indices, bitmask))
    assert np.array_equal(masks[0], pack(np.isin(np.arange(vocab.size), sorted(vocab.eos_token_ids))))
    assert np.array_equal(masks[1], oracle_words(guided.compile(Regex("[0-9]"), vocab), []))
    assert "row 0 cannot be constrained" in caplog.text
