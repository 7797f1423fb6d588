"""Fuzzing guided with hostile input: random schemas, regexes, Lark grammars and matcher operations.

Shared by ``tests/test_fuzz.py`` (a derandomised few hundred examples in ``make test``) and
``make fuzz`` (the long run, which tallies every outcome instead of stopping at the first bad
one).  Each example ends in one class:

- ``compiled`` / ``refused:<GuidedError subclass>``: the right outcomes;
- ``error:<exception type>``: a non-guided exception (a bug);
- ``hang``: compiling took longer than the configured ``max_seconds`` plus `GRACE`, or the whole
  example longer than `WATCHDOG` (a bug);
- ``unproductive``: a grammar with no sentence compiled, and its matcher allows nothing (not
  counted as bad here: refusing such grammars is the Lark productivity work);
- ``invalid:<why>``: a compiled constraint let through text its oracle refuses (``json`` +
  ``jsonschema`` read exactly, with decimals; ``re.fullmatch``; Lark's own parser), or a
  matcher's mask disagreed with what ``advance`` accepts (a bug).

Documents are drawn by random walks over the masks of a small vocabulary (every byte, common
multi-byte pieces and split UTF-8 characters), closing with ``budget_mask`` when the walk
gets long.
"""

from __future__ import annotations

import decimal
import json
import os
import random
import re
import signal
import time
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import lark
import numpy as np
from hypothesis import strategies as st

import guided
from guided.errors import ConstraintViolation, GuidedError, UsageError

COMPILE_SECONDS = 3.0  # max_seconds given to every spec
GRACE = 2.0  # how far past max_seconds a deadline check may come (checks are periodic)
WATCHDOG = 120  # seconds for a whole example: compile, walks, matcher operations
ORACLE_SECONDS = 20  # for building Lark's parser, the oracle of safe grammars (its analysis can take minutes)
WALK_TOKENS = 60  # tokens per random document

BAD = ("error", "hang", "invalid")


# --------------------------------------------------------------------------------------------
# The vocabulary: every byte, multi-byte pieces across lexeme boundaries, split UTF-8 characters


def fuzz_vocabulary() -> guided.Vocabulary:
    pieces = [b'{"', b'":', b'",', b'"}', b"true", b"null", b"false", b", ", b": ", b"  ", b"\n ", b"ab", b"abc",
              b"12", b"-1", b".5", b"e+", b"\\u00", b"\\n", b"\\\\", b'\\"', "é".encode(), "é".encode()[:1],
              "€".encode()[:2], "😀".encode(), "😀".encode()[:3], b"\xed\xa0\x80", b"[1", b"]]", b"(a", b"x)",
              b"<a>", b"</", b"SELECT", b"select", b"aaaa", b"zz", b"00", b"0x"]
    tokens = [bytes([i]) for i in range(256)] + pieces + [b"<eos>"]
    return guided.Vocabulary.from_token_bytes(tokens, eos_token_ids=[len(tokens) - 1])


VOCAB = fuzz_vocabulary()
EOS = len(VOCAB.token_bytes) - 1


# --------------------------------------------------------------------------------------------
# Outcomes


class Hang(BaseException):
    """The watchdog fired (a BaseException, so that no ``except Exception`` in guided swallows it)."""


@contextmanager
def watchdog(seconds: float):
    def fire(signum, frame):
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class OracleTooSlow(Exception):
    """An oracle took longer than `ORACLE_SECONDS` to build: the example goes unjudged (noted)."""


@contextmanager
def oracle_time_limit(seconds: float):
    """Raise `OracleTooSlow` after ``seconds``, inside `watchdog` (whose deadline still holds:
    when it comes first, `Hang` is raised as before)."""
    previous_handler = signal.getsignal(signal.SIGALRM)
    outer_left, _ = signal.getitimer(signal.ITIMER_REAL)
    start = time.monotonic()
    outer_deadline = start + outer_left if outer_left else None

    def fire(signum, frame):
        if outer_deadline is not None and time.monotonic() >= outer_deadline - 0.01:
            raise Hang("no result before the watchdog's deadline")
        raise OracleTooSlow(f"the oracle took longer than {seconds} s to build")

    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer_left) if outer_left else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if outer_deadline is not None:
            signal.setitimer(signal.ITIMER_REAL, max(outer_deadline - time.monotonic(), 0.001))


class Invalid(Exception):
    """An oracle refused what a compiled constraint allowed."""


class Unproductive(Exception):
    """A grammar whose language is empty compiled instead of being refused: Lark grammar
    productivity is tracked by its own issue, so this is its own class, not counted as bad."""


def outcome(run: Callable[[], Any]) -> tuple[str, str]:
    """``(class, detail)`` of one example; see the module docstring."""
    try:
        with watchdog(WATCHDOG):
            run()
    except Hang as exc:
        return "hang", str(exc)
    except CompileTooSlow as exc:
        return "hang", str(exc)
    except Unproductive:
        return "unproductive", ""
    except Invalid as exc:
        return f"invalid:{exc.args[0]}", " ".join(str(a) for a in exc.args[1:])[:600]
    except GuidedError as exc:
        return f"refused:{type(exc).__name__}", str(exc)[:300]
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - what the fuzzing looks for (Rust panics are BaseExceptions)
        import traceback

        return f"error:{type(exc).__name__}", "".join(traceback.format_exception(exc))[-2500:]
    return "compiled", ""


class CompileTooSlow(Exception):
    pass


def timed_compile(spec, vocab=None):
    """`guided.compile` (no cache), `CompileTooSlow` when it ran past ``COMPILE_SECONDS + GRACE``.

    The deadline is wall-clock, and on a shared machine a process may get a fifth of a core:
    the time between two deadline checks stretches with it.  Running past the limit is
    therefore judged on the CPU time the compilation used (a check that never comes shows
    there as well); the worst wall-clock overshoot is reported besides.
    """
    start, cpu = time.monotonic(), time.process_time()
    try:
        return guided.compile(spec, vocab or VOCAB, cache=False)
    finally:
        took, used = time.monotonic() - start, time.process_time() - cpu
        TALLY.compile_times.append((took, used))
        if used > COMPILE_SECONDS + GRACE:
            raise CompileTooSlow(f"compiling used {used:.1f} s of CPU ({took:.1f} s wall), limit {COMPILE_SECONDS} s")


class Tally:
    """Outcome counts of a long run, and the first few examples of each bad class."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.examples: dict[str, list] = {}
        self.slowest: dict[str, list] = {}  # kind -> [(seconds, class, example)], the 3 slowest
        self.compile_times: list[tuple[float, float]] = []  # (wall, CPU) seconds of every compilation
        self.longest_step: tuple[float, str] = (0.0, "")  # CPU seconds of the longest walk step, and where
        self.notes: Counter = Counter()  # what went unjudged, and why (kind, note)

    def add(self, kind: str, example: Any, result: tuple[str, str], seconds: float = 0.0) -> None:
        cls, detail = result
        self.counts[(kind, cls)] += 1
        slow = self.slowest.setdefault(kind, [])
        slow.append((seconds, cls, repr(example)[:200]))
        slow.sort(key=lambda x: -x[0])
        del slow[3:]
        if cls.split(":")[0] in BAD and len(self.examples.setdefault(f"{kind} {cls}", [])) < 5:
            self.examples[f"{kind} {cls}"].append((repr(example)[:800], detail))

    def bad(self, kind: str) -> int:
        return sum(n for (k, cls), n in self.counts.items() if k == kind and cls.split(":")[0] in BAD)

    def report(self) -> str:
        lines = []
        for kind in sorted({k for k, _ in self.counts}):
            total = sum(n for (k, _), n in self.counts.items() if k == kind)
            lines.append(f"{kind}: {total} examples")
            for (k, cls), n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
                if k == kind:
                    lines.append(f"  {cls:40s} {n}")
            for seconds, cls, example in self.slowest.get(kind, []):
                lines.append(f"  slowest: {seconds:.2f} s {cls} {example}")
        if self.compile_times:
            wall = max(w for w, _ in self.compile_times)
            cpu = max(c for _, c in self.compile_times)
            lines.append(f"compilations: {len(self.compile_times)}, longest {wall:.2f} s wall, {cpu:.2f} s CPU "
                         f"(max_seconds={COMPILE_SECONDS})")
        for (kind, note), n in sorted(self.notes.items()):
            lines.append(f"{kind}: {note}: {n}")
        if self.longest_step[0]:
            lines.append(f"longest walk step (mask, budget mask, probe, advance): {self.longest_step[0]:.3f} s CPU, "
                         f"{self.longest_step[1]}")
        for key, items in self.examples.items():
            lines.append(f"--- {key}")
            for example, detail in items:
                lines.append(f"  {example}\n    {detail}")
        return "\n".join(lines)


TALLY = Tally()
LONG = os.environ.get("GUIDED_FUZZ") == "long"


def check(kind: str, example: Any, run: Callable[[], Any]) -> None:
    """Run one example: in the long run tally it; otherwise fail on a bad outcome."""
    start = time.monotonic()
    result = outcome(run)
    TALLY.add(kind, example, result, time.monotonic() - start)
    if not LONG:
        assert result[0].split(":")[0] not in BAD, f"{kind} {example!r}: {result[0]}\n{result[1]}"


# --------------------------------------------------------------------------------------------
# Random documents from a compiled grammar


def walk(grammar, rng: random.Random, max_tokens: int = WALK_TOKENS) -> bytes | None:
    """Bytes of a random document the grammar allows (closing in time), or None if it did not end.

    Every step checks the mask against ``advance``: a token the mask allows must be accepted,
    and a token it refuses must raise `ConstraintViolation`.
    """
    m = grammar.matcher()
    out = bytearray()
    for step in range(max_tokens + 8):
        step_start = time.process_time()
        allowed = m.mask()
        ids = np.flatnonzero(allowed)
        remaining = max_tokens - step
        if remaining <= 8:
            budget = np.asarray(m.budget_mask(max(remaining, 1))) & allowed
            if budget.any():
                ids = np.flatnonzero(budget)
        if not ids.size:
            if not out:
                raise Unproductive("the constraint compiled but allows no text at all")
            raise Invalid("dead-end", f"no token allowed after {bytes(out)!r}")
        probe = rng.randrange(VOCAB.size)
        _check_advance(m, probe, bool(allowed[probe]), bytes(out))
        ends = allowed[EOS]
        if ends and (rng.random() < 0.15 or remaining <= 0):
            m.advance(EOS)
            _note_step(step_start, grammar, out)
            return bytes(out)
        choices = [i for i in ids.tolist() if i != EOS]
        if not choices:
            m.advance(EOS)
            _note_step(step_start, grammar, out)
            return bytes(out)
        token = rng.choice(choices)
        m.advance(token)
        out += VOCAB.token_bytes[token]
        _note_step(step_start, grammar, out)
    return None


def _note_step(start: float, grammar, out: bytearray) -> None:
    """Keep the longest walk step (CPU seconds since ``start``) in `TALLY`, with where it was."""
    took = time.process_time() - start
    if took > TALLY.longest_step[0]:
        source = getattr(getattr(grammar, "ir", None), "source", "") or getattr(grammar, "source", "")
        TALLY.longest_step = (took, f"{str(source)[:120]!r} after {bytes(out[-40:])!r}")


def _check_advance(m, token: int, allowed: bool, text: bytes) -> None:
    probe = m.copy()
    try:
        probe.advance(token)
        accepted = True
    except ConstraintViolation:
        accepted = False
    if accepted != allowed:
        raise Invalid("mask-vs-advance", f"token {token} ({VOCAB.token_bytes[token]!r}) after {text!r}: "
                                         f"mask says {allowed}, advance {'accepts' if accepted else 'refuses'}")


def as_text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("utf8", f"{what} output is not UTF-8: {data!r}") from None


# --------------------------------------------------------------------------------------------
# JSON Schema

_ALPHABET = "ab_é\u00a0\ud800\udc00\"\\/~$#"
names = st.text(alphabet=_ALPHABET, max_size=3)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-20, 20), st.sampled_from([0.5, -1.25, 2.0, 1e300]),
                    names)
junk = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(names, c, max_size=3),
                    max_leaves=6)
TYPES = ["null", "boolean", "object", "array", "number", "integer", "string"]
PATTERNS = ["^a", "b$", "^[a-c]+$", "a|b", "^(ab)*$", "é", "[", "(?=a)", "^.{2}$", "a{2,1}", "\\d"]
REFS = ["#", "#/$defs/a", "#/$defs/b", "#/properties/p", "#/items", "#/nope", "other.json", "#/$defs/a/not"]


def _keyword_values(sub):
    count = st.integers(0, 4)
    number = st.one_of(st.integers(-5, 5), st.sampled_from([0.5, -2.5, 1.25]))
    return {
        "type": st.one_of(st.sampled_from(TYPES), st.lists(st.sampled_from(TYPES), min_size=1, max_size=3),
                          st.sampled_from(["strin", "int", ""])),
        "properties": st.dictionaries(names, sub, max_size=3),
        "required": st.lists(names, max_size=3),
        "additionalProperties": sub,
        "patternProperties": st.dictionaries(st.sampled_from(PATTERNS), sub, max_size=2),
        "propertyNames": sub,
        "minProperties": count, "maxProperties": count,
        "items": st.one_of(sub, st.lists(sub, max_size=2)),
        "prefixItems": st.lists(sub, min_size=1, max_size=2),
        "contains": sub, "minContains": count, "maxContains": count,
        "minItems": count, "maxItems": count, "uniqueItems": st.booleans(),
        "enum": st.lists(junk, min_size=1, max_size=3), "const": junk,
        "minimum": number, "maximum": number, "exclusiveMinimum": number, "exclusiveMaximum": number,
        "multipleOf": st.sampled_from([1, 2, 3, 5]),
        "minLength": count, "maxLength": count, "pattern": st.sampled_from(PATTERNS),
        "format": st.sampled_from(["date", "email", "uuid", "ipv4", "bogus"]),
        "allOf": st.lists(sub, min_size=1, max_size=3), "anyOf": st.lists(sub, min_size=1, max_size=3),
        "oneOf": st.lists(sub, min_size=1, max_size=3), "not": sub,
        "if": sub, "then": sub, "else": sub,
        "$ref": st.sampled_from(REFS),
        "dependentRequired": st.dictionaries(names, st.lists(names, max_size=2), max_size=2),
        "dependentSchemas": st.dictionaries(names, sub, max_size=2),
        "x-note": junk,
    }


def _schema_node(sub):
    values = _keyword_values(sub)
    keyword = st.sampled_from(sorted(values))

    @st.composite
    def node(draw):
        out = {}
        for key in draw(st.lists(keyword, max_size=4, unique=True)):
            # One keyword in eight gets a value of any type: the malformed schemas.
            out[key] = draw(junk) if draw(st.integers(0, 7)) == 0 else draw(values[key])
        return out

    return st.one_of(st.booleans(), node())


schema_nodes = st.recursive(st.one_of(st.booleans(), st.just({}), st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES)})), _schema_node, max_leaves=8)


@st.composite
def schemas(draw):
    """A random schema: nested keywords, wrong-typed values, self references, lone surrogates."""
    root = draw(schema_nodes)
    if isinstance(root, dict) and draw(st.booleans()):
        root["$defs"] = {"a": draw(schema_nodes), "b": draw(schema_nodes)}
    return root


def run_schema(schema: Any, seed: int = 0) -> None:
    spec = guided.JsonSchema(schema, max_seconds=COMPILE_SECONDS, lenient=bool(seed % 2))
    with warnings.catch_warnings(record=True) as relaxed:
        warnings.simplefilter("always", guided.RelaxedSchemaWarning)  # lenient mode lists what it relaxed
        grammar = timed_compile(spec)
    rng = random.Random(seed)
    # A relaxed schema is enforced loosely on purpose (documented, and warned about): no oracle.
    oracle = None if any(issubclass(w.category, guided.RelaxedSchemaWarning) for w in relaxed) \
        else _schema_oracle(schema)
    for _ in range(2):
        data = walk(grammar, rng)
        if data is None:
            continue
        text = as_text(data, "schema")
        try:
            value = json.loads(text, parse_float=decimal.Decimal)
        except ValueError as exc:
            raise Invalid("json", f"{text!r}: {exc}") from None
        if oracle is not None:
            if not oracle(value):
                raise Invalid("jsonschema", f"{text!r} is not valid under the schema")


def _schema_oracle(schema: Any):
    """``jsonschema``'s verdict on a value, or None when it cannot judge: numbers read exactly and
    compared by value (``700.0`` is an integer from draft 6 on, also as a `Decimal`), patterns
    read as ECMA-262 (`guided.frontends.jsonschema._exact`)."""
    import jsonschema

    from guided.frontends.jsonschema import _exact

    try:
        exact = json.loads(json.dumps(schema), parse_float=decimal.Decimal)
        base = jsonschema.validators.validator_for(exact, default=jsonschema.Draft202012Validator)
        base.check_schema(exact)
        validator = _exact.exact_validator_class(base)(exact)
    except Exception:  # noqa: BLE001 - a schema jsonschema itself cannot read: no oracle
        return None

    def judge(value) -> bool:
        try:
            return validator.is_valid(value)
        except (Hang, KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 - no verdict: unresolvable refs, Python-only regexes, and schemas
            return True  # that refer to themselves in place, on which jsonschema recurses until it fails

    return judge


# --------------------------------------------------------------------------------------------
# Regexes

_LITERALS = list("abcxyz019 -_é€😀") + ["\\.", "\\*", "\\(", "\\n", "\\t", "\\x41", "\\u00e9", "\\U0001F600"]
_CLASSES = ["[a-c]", "[^a]", "[0-9]", "[é-ë]", ".", "\\d", "\\w", "\\s", "[^\\n]", "[a-]", "[]a]", "[^]a]", "[[]"]
_JUNK = ["(?<=a)", "(?=b)", "\\1", "\\b", "(", ")", "[", "]", "{", "}", "{2,1}", "*", "+?", "?", "(?#note)",
         "(?i)", "(?s)", "(?P<n>a)", "(?P=n)", "\\", "^", "$", "|", "\\p{L}", "(?>a)", "a++", "(?x)", "\\Z",
         "\\ud800", "(?#", "{99999}", "\\N{DASH}"]


@st.composite
def regexes(draw, depth: int = 0):
    """A random pattern: mostly well formed, with counted repeats up to the limits and junk."""
    kind = draw(st.integers(0, 11 if depth < 4 else 1))
    if kind == 0:
        return draw(st.sampled_from(_LITERALS))
    if kind == 1:
        return draw(st.sampled_from(_CLASSES))
    if kind == 2:
        return draw(st.sampled_from(_JUNK))
    if kind in (3, 4):
        return "".join(draw(st.lists(regexes(depth + 1), min_size=1, max_size=4)))
    if kind == 5:
        return "|".join(draw(st.lists(regexes(depth + 1), min_size=2, max_size=3)))
    if kind == 6:
        return f"({draw(st.sampled_from(['', '?:', '?i:', '?s:']))}{draw(regexes(depth + 1))})"
    if kind in (7, 8):
        q = draw(st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{2,}", "{,2}", "*?", "{0,5}"]))
        return f"(?:{draw(regexes(depth + 1))}){q}"
    if kind == 9:
        n = draw(st.sampled_from([10, 100, 1000, 4096, 50_000, 10**9]))
        return f"{draw(st.sampled_from(['.', 'a', '[a-z]', '(ab|c)']))}{{{n}}}"
    if kind == 10:
        n = draw(st.sampled_from([30, 41, 200]))
        return "(" * n + draw(regexes(depth + 1)) + ")" * n
    return draw(st.text(alphabet="ab()[]{}|*+?\\^$.,-0123é", max_size=8))


# What re reads differently from guided's dialect; its verdict is skipped for these: ASCII
# against Unicode classes, and a ']' first in a class (the regex character-class work).
_RE_DIFFERENT = re.compile(r"\\[DWS]|\\[sSwWdD].*\(\?i|\(\?i.*\\[sSwWdD]|\[\^?\]")


def run_regex(pattern: str, seed: int = 0) -> None:
    grammar = timed_compile(guided.Regex(pattern, max_seconds=COMPILE_SECONDS))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # re's notes on patterns (possible nested sets...)
            oracle = re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        oracle = None
    if _RE_DIFFERENT.search(pattern):
        oracle = None
    rng = random.Random(seed)
    for _ in range(2):
        data = walk(grammar, rng)
        if data is None:
            continue
        text = as_text(data, "regex")
        if oracle is not None and oracle.fullmatch(text) is None:
            raise Invalid("re", f"{text!r} does not fully match {pattern!r}")


# --------------------------------------------------------------------------------------------
# Lark grammars

# Terminals pairwise disjoint in their first character, so that guided's greedy lexing and
# Lark's contextual lexer read every text alike and Lark is an exact oracle.
_SAFE_TERMINALS = ['"a"', '"b"', '"("', '")"', '","', '"q"i', "DIGITS", "WORD"]
_SAFE_DEFS = 'DIGITS: /[0-9]+/\nWORD: /[x-z]+/\n'
_JUNK_TERMINALS = ['/x*/', '/[/', '/a{2,1}/', '/a(?=b)/', '""', 'NUMBER', 'UNDEFINED', '/é+/', '/(?i)k/',
                   '"\\ud800"', '/.{3000}/']


@st.composite
def lark_grammars(draw):
    """``(grammar text, safe)``: random rules over random terminals; ``safe`` grammars use only
    terminals Lark's lexer and guided's read alike (Lark is their oracle)."""
    safe = draw(st.booleans())
    n_rules = draw(st.integers(1, 5))
    rules = [f"r{i}" for i in range(n_rules)]

    @st.composite
    def symbol(draw, depth=0):
        options = _SAFE_TERMINALS + rules + ([] if safe else _JUNK_TERMINALS + ["missing_rule"])
        kind = draw(st.integers(0, 6 if depth < 3 else 0))
        if kind <= 2:
            return draw(st.sampled_from(options))
        inner = " ".join(draw(st.lists(symbol(depth + 1), min_size=1, max_size=3)))
        if kind == 3:
            return f"({inner}){draw(st.sampled_from(['', '?', '*', '+']))}"
        if kind == 4:
            return f"[{inner}]"
        if kind == 5:
            return f"({inner} | {draw(symbol(depth + 1))})"
        return f"({inner})~{draw(st.sampled_from(['2', '0..2', '1..3', '5']))}"

    lines = []
    for name in rules:
        alternatives = draw(st.lists(st.lists(symbol(), min_size=1, max_size=3), min_size=1, max_size=3))
        priority = draw(st.sampled_from(["", "", ".2"]))
        lines.append(f"{name}{priority}: " + " | ".join(" ".join(a) for a in alternatives))
    lines.insert(0, "start: r0")
    text = "\n".join(lines) + "\n" + _SAFE_DEFS
    if draw(st.booleans()):
        text += '%ignore " "\n'
    if not safe:
        text += draw(st.sampled_from(["", "%import common.NUMBER\n", "%import nosuch.X\n", "%ignore /x*/\n",
                                      "%declare UNDEFINED\n", "start: r0\n", "(((((\n",
                                      "deep: " + "(" * 150 + '"a"' + ")" * 150 + "\n"]))
    return text, safe


def run_lark(text: str, safe: bool, seed: int = 0) -> None:
    grammar = timed_compile(guided.Grammar(text, max_seconds=COMPILE_SECONDS, parser="lalr"))
    oracle = None
    if safe:
        # Lark's own LALR(1) analysis ran past the 120 s watchdog on a grammar guided compiles
        # in about a second (why guided builds its tables itself): such an example is noted.
        try:
            with oracle_time_limit(ORACLE_SECONDS):
                oracle = lark.Lark(text, parser="lalr", lexer="contextual")
        except lark.exceptions.LarkError:
            oracle = None
        except OracleTooSlow:
            TALLY.notes[("grammar", f"Lark's parser (the oracle) took longer than {ORACLE_SECONDS} s to build, "
                                    f"walks unjudged")] += 1
    rng = random.Random(seed)
    for _ in range(2):
        data = walk(grammar, rng)
        if data is None:
            continue
        sentence = as_text(data, "grammar")
        if oracle is not None:
            try:
                oracle.parse(sentence)
            except lark.exceptions.LarkError as exc:
                raise Invalid("lark", f"{sentence!r}: {str(exc)[:200]}") from None


# --------------------------------------------------------------------------------------------
# Matcher operations

SPECS = [
    guided.Regex(r"[a-c]{1,3}(x|yz)*"),
    guided.Regex("é+|€|😀{2}"),
    guided.Grammar("json"),
    guided.Grammar("arithmetic"),
    guided.JsonSchema({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"enum": ["x", "yé"]}},
                       "required": ["a"]}),
    guided.JsonSchema({"type": "array", "items": {"type": "string", "maxLength": 2}, "maxItems": 3}),
]
_GRAMMARS: dict[int, Any] = {}

BAD_TOKENS = [-1, VOCAB.size, VOCAB.size + 5, 10**12, 2.5, "3", None, True, np.int64(97), np.float32(1.0)]

ops = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.sampled_from(["allowed", "allowed", "allowed", "any", "eos", "bad"]),
              st.integers(0, 10**6)),
    st.tuples(st.just("rollback"), st.integers(-1, 6)),
    st.tuples(st.just("copy")),
    st.tuples(st.just("query"), st.sampled_from(["eos", "finished", "forced", "budget", "bitmask"])),
), max_size=25)


def run_ops(spec_index: int, operations: list) -> None:
    """Apply ``operations`` to a matcher, checking it against a replay of its accepted tokens."""
    grammar = _GRAMMARS.get(spec_index)
    if grammar is None:
        grammar = _GRAMMARS[spec_index] = guided.compile(SPECS[spec_index], VOCAB)
    m = grammar.matcher()
    history: list[int] = []
    for op in operations:
        allowed = m.mask()
        if op[0] == "advance":
            kind, pick = op[1], op[2]
            ids = np.flatnonzero(allowed)
            if kind == "allowed":
                if not ids.size:
                    continue
                token = int(ids[pick % ids.size])
            elif kind == "any":
                token = pick % VOCAB.size
            elif kind == "eos":
                token = EOS
            else:
                token = BAD_TOKENS[pick % len(BAD_TOKENS)]
            valid_id = isinstance(token, (int, np.integer)) and not isinstance(token, bool) and 0 <= token < VOCAB.size
            try:
                m.advance(token)
                accepted = True
            except ConstraintViolation:
                accepted = False
            except UsageError:
                if isinstance(token, (int, np.integer)) and not isinstance(token, bool):
                    raise Invalid("usage-error", f"advance({token!r}) is a usage error") from None
                continue
            if valid_id and accepted != bool(allowed[int(token)]):
                raise Invalid("mask-vs-advance", f"token {token} after {history}: mask {bool(allowed[int(token)])}")
            if accepted and not valid_id:
                raise Invalid("bad-token-accepted", f"{token!r} was accepted")
            if accepted:
                history.append(int(token))
        elif op[0] == "rollback":
            n = op[1]
            try:
                m.rollback(n)
            except GuidedError:
                if 0 <= n <= len(history):
                    raise
                continue
            if not 0 <= n <= len(history):
                raise Invalid("rollback", f"rollback({n}) accepted after {len(history)} tokens")
            del history[len(history) - n:]
            replay = grammar.matcher()
            for t in history:
                replay.advance(t)
            if not np.array_equal(replay.mask(), m.mask()):
                raise Invalid("rollback", f"mask after rollback({n}) differs from a replay of {history}")
        elif op[0] == "copy":
            clone = m.copy()
            ids = np.flatnonzero(allowed)
            if ids.size:
                try:
                    clone.advance(int(ids[0]))
                except ConstraintViolation:
                    raise Invalid("copy", "a copy refused a token its original allows") from None
            if not np.array_equal(m.mask(), allowed):
                raise Invalid("copy", "advancing a copy changed the original")
        else:
            what = op[1]
            if what == "eos":
                # After EOS the matcher is finished: its mask allows EOS again, while accepts_eos()
                # answers False in every engine (decoders read both); only before that must they agree.
                if (not history or history[-1] != EOS) and m.accepts_eos() != bool(allowed[EOS]):
                    raise Invalid("eos", f"accepts_eos() disagrees with the mask after {history}")
            elif what == "finished":
                m.is_finished()
            elif what == "forced":
                forced = m.forced_bytes()
                probe = m.copy()
                for b in forced:
                    probe.advance(b)  # single-byte tokens are ids 0-255: forced bytes must be allowed
            elif what == "budget":
                budget = np.asarray(m.budget_mask(3))
                if (budget & ~allowed).any():
                    raise Invalid("budget", "budget_mask allows a token the mask refuses")
            else:
                bitmask = np.zeros((1, (VOCAB.size + 31) // 32), np.int32)
                m.fill_bitmask(bitmask, 0)
                unpacked = ((bitmask[0][:, None] >> np.arange(32)) & 1).astype(bool).reshape(-1)[:VOCAB.size]
                if not np.array_equal(unpacked, allowed):
                    raise Invalid("bitmask", "fill_bitmask disagrees with mask")
