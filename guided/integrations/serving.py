"""Serving-engine glue shared by the vLLM and SGLang adapters: request arguments to specs, and a batch's matchers.

A serving engine hands guided two things: per-request arguments (``guided_json``,
``guided_regex``, ``guided_grammar``, ``guided_choice`` and ``guided_options``, as they arrive in
vLLM's ``extra_args`` or over HTTP in ``vllm_xargs``), and a running batch whose rows come, go and
move.  `constraint_from_args` turns the first into a `RequestConstraint` (or a `guided.SpecError`
naming what is wrong), `check_constraint` proves the spec compiles without needing the
vocabulary (what an engine's request validation can afford), and `RowMatchers` keeps one matcher
per batch row, follows each row's new tokens and fills the batch's masks in one call
(`guided.fill_bitmasks`: the native core's matchers in parallel threads, others in turn).

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"y", b"es", b"no", b"<eos>"], eos_token_ids=[3])
>>> c = constraint_from_args({"guided_choice": ["yes", "no"]})
>>> rows = RowMatchers(vocab)
>>> out = []                      # the engine's live list of the row's generated tokens
>>> rows.add(5, c, out)
>>> indices, bits = rows.fill()
>>> indices, bits.tolist()        # row 5 may start with "y" or "no"
([5], [[5]])
>>> out.append(0); rows.fill()[1].tolist()
[[2]]
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from guided.compiler import compile as compile_spec
from guided.decoding.constraints import DEFAULT_BUDGET_WINDOW
from guided.engine.bitmask import pack, set_bits, words_for
from guided.engine.native import fill_bitmasks
from guided.engine.matcher import Matcher, closing_mask
from guided.errors import ConstraintViolation, GuidedError, SpecError, UsageError
from guided.frontends.jsonschema import JsonSchema
from guided.frontends.lark import Grammar
from guided.frontends.regex import Regex
from guided.vocab import Vocabulary

__all__ = [
    "OPTIONS_KEY",
    "SPEC_KEYS",
    "RequestConstraint",
    "RowMatchers",
    "check_constraint",
    "constraint_from_args",
]

log = logging.getLogger("guided.serving")

SPEC_KEYS = ("guided_json", "guided_regex", "guided_grammar", "guided_choice")
"""The request arguments that carry a constraint; at most one per request."""

OPTIONS_KEY = "guided_options"
"""The request argument with options (a dict, or JSON text over HTTP)."""

# Options a client may set.  Compile limits (states, seconds, rules) are deliberately absent:
# they protect the server, so only whoever starts it may change them.
_JSON_OPTIONS = {"whitespace": str, "lenient": bool, "closed": bool, "max_whitespace": int, "max_depth": int,
                 "unknown_formats": str, "formats": str, "property_order": str}
_GRAMMAR_OPTIONS = {"start": str}
_COMMON_OPTIONS = {"close_before_max_tokens": bool}


@dataclass(frozen=True)
class RequestConstraint:
    """One request's constraint: a hashable guided spec (what `guided.compile` caches on) and
    whether the document must close before the request's ``max_tokens`` runs out."""

    spec: Any
    close_before_max_tokens: bool = True


def constraint_from_args(args: Mapping[str, Any] | None) -> RequestConstraint | None:
    """The constraint a request's arguments ask for, ``None`` when they ask for none.

    Raises `guided.SpecError` naming the offending argument.  Values may be what a Python caller
    passes (a schema dict, a list of choices, an options dict) or what arrives over HTTP (JSON
    text).  ``guided_grammar`` is Lark text or the name of a grammar shipped with guided; file
    paths are refused, since the request comes from a client and the file system is the server's.

    >>> constraint_from_args({"guided_regex": "[0-9]+"}).spec
    Regex(pattern='[0-9]+', max_states=100000, max_seconds=10.0, max_nesting=40)
    >>> constraint_from_args({"temperature": 0.5}) is None
    True
    >>> constraint_from_args({"guided_regex": "a", "guided_choice": ["b"]})
    Traceback (most recent call last):
    ...
    guided.errors.SpecError: give at most one of guided_json, guided_regex, guided_grammar, guided_choice; got guided_regex and guided_choice
    """
    if not args:
        return None
    given = [k for k in SPEC_KEYS if args.get(k) is not None]
    if not given:
        if args.get(OPTIONS_KEY) is not None:
            raise SpecError(f"{OPTIONS_KEY} was given without a constraint ({', '.join(SPEC_KEYS)})")
        return None
    if len(given) > 1:
        raise SpecError(f"give at most one of {', '.join(SPEC_KEYS)}; got {' and '.join(given)}")
    key = given[0]
    value = args[key]
    allowed = dict(_COMMON_OPTIONS)
    allowed.update(_JSON_OPTIONS if key == "guided_json" else _GRAMMAR_OPTIONS if key == "guided_grammar" else {})
    options = _options(args.get(OPTIONS_KEY), allowed, key)
    close = options.pop("close_before_max_tokens", True)
    if key == "guided_json":
        spec = _json_spec(value, options)
    elif key == "guided_regex":
        if not isinstance(value, str):
            raise SpecError(f"guided_regex must be a string, not {type(value).__name__}")
        spec = Regex(value)
    elif key == "guided_grammar":
        spec = _grammar_spec(value, options)
    else:
        spec = _choice_spec(value)
    return RequestConstraint(spec, close)


def _options(raw: Any, allowed: Mapping[str, type], key: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{OPTIONS_KEY} is not valid JSON text: {exc}") from None
    if not isinstance(raw, Mapping):
        raise SpecError(f"{OPTIONS_KEY} must be an object, not {type(raw).__name__}")
    options = {}
    for name, value in raw.items():
        kind = allowed.get(name)
        if kind is None:
            raise SpecError(f"{OPTIONS_KEY}: unknown option {name!r} for {key} "
                            f"(allowed: {', '.join(sorted(allowed))})")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SpecError(f"{OPTIONS_KEY}: {name} must be a {kind.__name__}, not {type(value).__name__}")
        options[name] = value
    return options


def _json_spec(value: Any, options: dict[str, Any]) -> JsonSchema:
    if not isinstance(value, (str, bytes, dict, bool)):
        raise SpecError(f"guided_json must be a schema object or JSON text, not {type(value).__name__}")
    try:
        return JsonSchema(value, **options)
    except ValueError as exc:  # a bad option value (SpecError is a ValueError too)
        if isinstance(exc, GuidedError) and not isinstance(exc, UsageError):
            raise
        raise SpecError(f"{OPTIONS_KEY}: {exc}") from None


_GRAMMAR_NAME = re.compile(r"[A-Za-z0-9_]+")


def _grammar_spec(value: Any, options: dict[str, Any]) -> Grammar:
    if not isinstance(value, str):
        raise SpecError(f"guided_grammar must be Lark text or a shipped grammar's name, not {type(value).__name__}")
    one_line = "\n" not in value
    if one_line and (value.endswith(".lark") or "/" in value or "\\" in value):
        raise SpecError("guided_grammar: file paths are not accepted from requests; send the grammar's text "
                        "or the name of a grammar shipped with guided")
    if one_line and _GRAMMAR_NAME.fullmatch(value):
        try:
            shipped = Grammar(value).text_and_path()[1]
        except GuidedError as exc:  # a name that is not shipped: the message lists those that are
            raise SpecError(f"guided_grammar: {exc}") from None
        if not shipped:
            raise SpecError(f"guided_grammar: no shipped grammar is called {value!r}")
    return Grammar(value, **options)


def _choice_spec(value: Any) -> Regex:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise SpecError("guided_choice must be a list of strings (or its JSON text)") from None
    if not isinstance(value, (list, tuple)) or not value:
        raise SpecError("guided_choice must be a non-empty list of strings")
    options = [str(v) for v in value]
    return Regex("|".join(re.escape(o) for o in options))


@functools.lru_cache(maxsize=256)
def check_constraint(constraint: RequestConstraint) -> None:
    """Raise the guided error a spec would raise when compiled; nothing when it compiles.

    Builds the vocabulary-independent form (the regex's automaton, the grammar's or schema's
    intermediate form), where every spec error is found, so an engine can refuse a bad request
    before it reaches the batch.  Valid specs are remembered, so a spec is checked once.
    """
    constraint.spec.to_ir()


class _Row:
    """One batch row: its matcher, the engine's live list of its generated tokens, how many of
    them the matcher has consumed, and its token budget."""

    __slots__ = ("constraint", "failed", "matcher", "max_tokens", "output", "seen")

    def __init__(self, constraint: RequestConstraint, matcher: Matcher | None, output: list[int],
                 max_tokens: int | None, failed: str | None = None):
        self.constraint = constraint
        self.matcher = matcher
        self.output = output
        self.seen = 0
        self.max_tokens = max_tokens
        self.failed = failed


class RowMatchers:
    """The matchers of a running batch, keyed by batch row.

    `add` compiles the row's spec (cached by `guided.compile`, so each distinct spec compiles
    once per process) and starts a matcher; `remove` and `move` follow the engine's batch
    reordering; `fill` advances every matcher over its row's new tokens and returns the
    constrained rows with their masks, filled in one `fill_bitmasks` call.

    A row that cannot be constrained (its spec failed to compile here, or the engine fed it a
    token the mask forbade: another processor re-enabled it) is never allowed to crash the
    batch: it is logged once and allowed only EOS, so the request ends at once.
    """

    def __init__(self, vocab: Vocabulary, *, budget_window: int = DEFAULT_BUDGET_WINDOW):
        self.vocab = vocab
        self.budget_window = budget_window
        self.rows: dict[int, _Row] = {}
        self.words = words_for(vocab.size)
        self._bitmask = np.zeros((8, self.words), dtype=np.int32)
        self._eos_words = np.zeros(self.words, dtype=np.int32)
        set_bits(self._eos_words, np.array(sorted(vocab.eos_token_ids), dtype=np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, index: int, constraint: RequestConstraint, output: list[int],
            max_tokens: int | None = None) -> None:
        """Row ``index`` now holds a request; ``output`` is the engine's live list of its
        generated tokens (it may already hold some: a preempted request resuming)."""
        try:
            matcher, failed = compile_spec(constraint.spec, self.vocab).matcher(), None
        except GuidedError as exc:
            matcher, failed = None, f"its constraint failed to compile: {exc}"
            log.error("guided: row %d cannot be constrained, %s; it is allowed only EOS", index, failed)
        self.rows[index] = _Row(constraint, matcher, output, max_tokens, failed)

    def remove(self, index: int) -> None:
        """Row ``index`` no longer holds a request (finished, aborted or preempted)."""
        self.rows.pop(index, None)

    def move(self, source: int, target: int, swap: bool) -> None:
        """The request at ``source`` moves to ``target`` (``swap``: and ``target``'s to ``source``)."""
        a = self.rows.pop(source, None)
        b = self.rows.pop(target, None)
        if a is not None:
            self.rows[target] = a
        if b is not None and swap:
            self.rows[source] = b

    def _catch_up(self, index: int, row: _Row) -> None:
        """Advance the row's matcher over the tokens the engine appended since the last step."""
        output = row.output
        while row.seen < len(output) and row.failed is None:
            token = output[row.seen]
            if token < 0:  # a placeholder for a token still being copied back (async scheduling)
                return
            try:
                row.matcher.advance(token)
            except ConstraintViolation as exc:
                row.failed = f"the engine fed it a token its mask forbade ({exc})"
                log.error("guided: row %d left its constraint, %s; it is allowed only EOS from now on",
                          index, row.failed)
                return
            row.seen += 1

    def fill(self) -> tuple[list[int], np.ndarray]:
        """``(indices, bitmask)``: the constrained rows and their masks (row ``i`` of ``bitmask``
        is batch row ``indices[i]``), one int32 row of ``ceil(V/32)`` words each.  Catches every
        matcher up with its row's tokens first."""
        for index, row in self.rows.items():
            self._catch_up(index, row)
        live = [index for index, row in self.rows.items() if row.failed is None]
        failed = [index for index, row in self.rows.items() if row.failed is not None]
        indices = live + failed
        n = len(indices)
        if self._bitmask.shape[0] < n:
            self._bitmask = np.zeros((max(n, 2 * self._bitmask.shape[0]), self.words), dtype=np.int32)
        bitmask = self._bitmask[:n]
        fill_bitmasks([self.rows[index].matcher for index in live], bitmask[: len(live)])
        bitmask[len(live):] = self._eos_words
        for i, index in enumerate(live):
            row = self.rows[index]
            if row.constraint.close_before_max_tokens and row.max_tokens is not None:
                remaining = row.max_tokens - len(row.output)
                if 0 < remaining <= self.budget_window:
                    budget = closing_mask(row.matcher, remaining)
                    if budget.any():
                        bitmask[i] = pack(budget)[: self.words]
        empty = ~bitmask.any(axis=1)
        if empty.any():  # never hand the sampler a row with nothing allowed: end it instead
            for i in np.flatnonzero(empty):
                log.error("guided: row %d has no allowed token; it is allowed only EOS", indices[i])
            bitmask[empty] = self._eos_words
        return indices, bitmask
