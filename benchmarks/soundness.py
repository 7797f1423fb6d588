"""Differential soundness harness: random constraints, random-token walks under the mask, reference verdicts.

For random JSON Schemas, regexes and Lark grammars (three classes), each compiled for the
SmolLM2 vocabulary, random walks pick uniformly among the tokens the mask allows until EOS (or
a step limit) and the finished text goes to the class's reference:

- JSON Schema: `jsonschema` over exact numbers (`guided.frontends.jsonschema._exact`), with
  ``pattern`` decided by ECMA-262's own engine (QuickJS), as the front-end reads it;
- regex: Python's ``re.fullmatch``;
- grammar: Lark's own LALR(1) parser with its contextual lexer.

Counted per class, each a failure of the guarantee when not 0:

- *invalid accepted*: a finished walk the reference rejects;
- *mask/advance disagreements*: ``advance`` refusing a token the mask allowed, or accepting one
  it forbade (a forbidden token is tried at random steps);
- *dead ends*: a mask that allows nothing, not even EOS;
- *mutants accepted*: a finished valid text mutated by one edit (insert, delete or replace a
  character) that the reference rejects but guided accepts (tokenised and walked with
  ``advance``): mutated valid instances must be rejected somewhere;
- *refusal mismatches* (grammars): guided refusing a grammar Lark's LALR parser takes, or taking
  one Lark refuses (zero-width terminals, reduce/reduce collisions).  Guided refuses by design
  grammars without sentences, with a rule deriving itself alone, with rules that never finish
  that change Lark's parse (`REFUSED_BY_DESIGN`), and grammars that Lark's lexer order reads
  otherwise than guided's lexer (`guided.frontends.lark_order`): those count as refusals
  (``refused, lexer order`` after a check that Lark's own lexer reads the refusal's example
  otherwise).

Also reported: walks, finished walks, tokens, compile refusals, mutants valid and rejected
(documented restrictions such as property order show up there, never as a failure), and
*oracle timeouts*: a reference verdict that took longer than ``--oracle-seconds`` (Python's
``re`` backtracks exponentially on some random patterns) counts there, not as a verdict.

    .venv/bin/python benchmarks/soundness.py --walks 100000 --seed 1
    .venv/bin/python benchmarks/soundness.py --classes regex --walks 2000 --json /tmp/s.json

Random grammars have overlapping terminals (``/[a-e]+/`` beside ``"do"``): guided must refuse
those where Lark's lexer would read a text otherwise, and agree with Lark on the others.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import random
import re
import signal
import sys
import time
import warnings
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.random_specs import random_grammar, random_regex, random_schema  # noqa: E402

CLASSES = ("jsonschema", "regex", "grammar")


class JsonSchemaReference:
    """jsonschema over exact numbers, ``pattern`` and ``patternProperties`` by ECMA-262 (QuickJS)."""

    def __init__(self):
        import jsonschema
        import quickjs

        from guided.frontends.jsonschema import _exact

        self.jsonschema, self.exact = jsonschema, _exact
        ctx = quickjs.Context()
        ctx.set_memory_limit(256 * 2**20)
        ctx.set_time_limit(2)
        self.js_error = quickjs.JSException
        self.search = ctx.eval("""(function (p, s) {
            var r; try { r = new RegExp(p, "u"); } catch (e) { r = new RegExp(p); }
            return r.test(s); })""")
        self.classes: dict = {}

    def validator(self, schema: Any):
        base = self.jsonschema.validators.validator_for(schema, default=self.jsonschema.Draft202012Validator)
        cls = self.classes.get(base)
        if cls is None:
            # ECMA-262 by its own engine, not guided's automata: the exact class with QuickJS's search.
            cls = self.classes[base] = self.exact.exact_validator_class(base, self.search)
        return cls(schema)

    def accepts(self, validator, text: str) -> bool | None:
        import decimal

        try:
            value = self.exact.loads(text)
        except ValueError:
            return False
        except decimal.InvalidOperation:
            return None  # a number past Decimal's exponent range (1E-9999999999999999999): no verdict
        return validator.is_valid(value)


# Grammars Lark takes and guided refuses by design: without sentences; with a rule that derives
# itself alone (endless parses); with rules that never finish that change Lark's parse (guided
# drops them, Lark keeps them in its tables: the languages would differ).
REFUSED_BY_DESIGN = ("accepts no sentence", "derives itself", "rules that never finish change how Lark parses")


class OracleTimeout(Exception):
    """A reference verdict took longer than its time bound."""


def bounded(seconds: float, reference, text: str):
    """``reference(text)``, or `OracleTimeout` after ``seconds`` (SIGALRM: ``re`` checks signals)."""
    def expire(signum, frame):
        raise OracleTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return reference(text)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def lark_lexes_otherwise(parser, exc) -> bool:
    """Whether Lark's lexer, in the refusal's parser state, reads its example otherwise than guided."""
    import copy

    import lark
    from lark.utils import TextSlice

    conf = copy.copy(parser.lexer_conf)
    conf.terminals = [parser.get_terminal(name) for name in exc.candidates]
    conf.skip_validation = True
    lexer = lark.lexer.BasicLexer(conf)
    found = lexer.match(TextSlice.cast_from(exc.text), 0)
    if found is None:
        return True
    token = lark.Token(found[1], found[0])
    if token.type in lexer.callback:
        token = lexer.callback[token.type](token)
    return (token.type, token.value) != (exc.guided_terminal, exc.text)


# ------------------------------------------------------------------------------------------------


class Walker:
    def __init__(self, vocab, tokenizer, rng, max_steps: int):
        self.vocab, self.tokenizer, self.rng, self.max_steps = vocab, tokenizer, rng, max_steps
        self.eos = set(vocab.eos_token_ids)
        self.eos_list = sorted(self.eos)
        self.text_ids = np.array([i for i in range(vocab.size) if i not in self.eos and vocab.token_bytes[i]],
                                 dtype=np.int64)
        self.is_text = np.zeros(vocab.size, dtype=bool)
        self.is_text[self.text_ids] = True
        from guided.errors import ConstraintViolation

        self.violation = ConstraintViolation

    def walk(self, grammar, counts, examples, label):
        """One random walk; returns the finished text (bytes) or None."""
        m = grammar.matcher()
        out: list[bytes] = []
        for step in range(self.max_steps + 40):
            mask = np.asarray(m.mask())
            counts["masks"] += 1
            ends = [e for e in self.eos_list if mask[e]]
            texts = np.flatnonzero(mask & self.is_text)
            if not ends and not texts.size:
                counts["dead ends"] += 1
                examples.append({"kind": "dead end", "spec": label, "text": b"".join(out).decode("utf-8", "replace")})
                return None
            late = step >= self.max_steps
            if ends and (not texts.size or self.rng.random() < (0.6 if late else 0.12)):
                try:
                    m.advance(ends[0])
                except self.violation as exc:
                    counts["mask/advance disagreements"] += 1
                    examples.append({"kind": "EOS refused by advance", "spec": label, "error": str(exc)})
                    return None
                return b"".join(out)
            if late and step % 4 == 0:  # steer towards the end (budget masks cost a vocabulary walk)
                budget = np.flatnonzero(np.asarray(m.budget_mask(8)) & self.is_text)
                if budget.size:
                    texts = budget
            if self.rng.random() < 0.2:  # a forbidden token must be refused by advance too
                probe = int(self.text_ids[self.rng.randrange(self.text_ids.size)])
                if not mask[probe]:
                    copy = m.copy()
                    try:
                        copy.advance(probe)
                    except self.violation:
                        pass
                    else:
                        counts["mask/advance disagreements"] += 1
                        examples.append({"kind": "advance took a forbidden token", "spec": label,
                                         "text": b"".join(out).decode("utf-8", "replace"),
                                         "token": self.vocab.token_bytes[probe].decode("utf-8", "replace")})
            tok = int(texts[self.rng.randrange(texts.size)])
            try:
                m.advance(tok)
            except self.violation as exc:
                counts["mask/advance disagreements"] += 1
                examples.append({"kind": "advance refused an allowed token", "spec": label,
                                 "text": b"".join(out).decode("utf-8", "replace"), "error": str(exc)})
                return None
            out.append(self.vocab.token_bytes[tok])
            counts["tokens"] += 1
        counts["unfinished walks"] += 1
        return None

    def accepts_text(self, grammar, text: str) -> bool:
        m = grammar.matcher()
        try:
            for tok in self.tokenizer.encode(text, add_special_tokens=False):
                m.advance(tok)
        except self.violation:
            return False
        return m.accepts_eos()


MUTATION_CHARS = {
    "jsonschema": list('0123456789-+.eE"[]{},: abxé\\') + ["1e0", "1.0", ".0", "-0", "0"],
    "regex": list("abcx01 -]^[.é٣\n{}") + ["\x1c", "A"],
    "grammar": list("()+=,;:!? abcpquvw0123") + ["if", "do", "=="],
}


def mutate(rng, text: str, cls: str) -> str:
    k = rng.randrange(3)
    pos = rng.randint(0, len(text))
    piece = rng.choice(MUTATION_CHARS[cls])
    if k == 0 or not text:
        return text[:pos] + piece + text[pos:]
    pos = min(pos, len(text) - 1)
    if k == 1:
        return text[:pos] + text[pos + 1:]
    return text[:pos] + piece + text[pos + 1:]


def run(args) -> dict:
    import lark

    import guided
    from guided import models
    from guided.errors import GuidedError
    from guided.frontends.jsonschema import JsonSchema
    from guided.frontends.lark import Grammar, LexerOrderConflict

    tokenizer = models.load_tokenizer()
    vocab = guided.Vocabulary.from_tokenizer(tokenizer)
    rng = random.Random(args.seed)
    walker = Walker(vocab, tokenizer, rng, args.max_steps)
    jsref = JsonSchemaReference() if "jsonschema" in args.classes else None
    classes = [c for c in CLASSES if c in args.classes]
    counts = {c: collections.Counter() for c in classes}
    examples: list[dict] = []
    target = {c: args.walks // len(classes) for c in classes}
    start = time.perf_counter()
    deadline = start + args.time_limit if args.time_limit else None
    next_report = start + args.progress
    while any(counts[c]["walks"] < target[c] for c in classes):
        if deadline and time.perf_counter() > deadline:
            break
        cls = min((c for c in classes if counts[c]["walks"] < target[c]), key=lambda c: counts[c]["walks"])
        cnt = counts[cls]
        cnt["specs"] += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if cls == "jsonschema":
                schema = random_schema(rng)
                label = json.dumps(schema)
                try:
                    spec = JsonSchema(schema, max_whitespace=2, max_seconds=5)
                    compiled = guided.compile(spec, vocab, cache=False)
                except GuidedError:
                    cnt["refused"] += 1
                    continue
                validator = jsref.validator(jsref.exact.loads(spec.schema))

                def reference(text, validator=validator):
                    try:
                        return jsref.accepts(validator, text)
                    except jsref.js_error:
                        return None
            elif cls == "regex":
                pattern = random_regex(rng)
                label = pattern
                try:
                    compiled = guided.compile(guided.Regex(pattern, max_states=20_000, max_seconds=5), vocab,
                                              cache=False)
                except GuidedError:
                    cnt["refused"] += 1
                    continue
                oracle = re.compile(pattern)

                def reference(text, oracle=oracle):
                    return oracle.fullmatch(text) is not None
            else:
                source = random_grammar(rng)
                label = source
                try:
                    parser = lark.Lark(source, parser="lalr", lexer="contextual")
                    lark_ok = True
                except lark.exceptions.LarkError:
                    parser, lark_ok = None, False
                try:
                    compiled = guided.compile(Grammar(source, parser="lalr"), vocab, cache=False)
                    guided_ok = True
                except GuidedError as exc:
                    compiled, guided_ok, why = None, False, str(exc)
                    if lark_ok and isinstance(exc, LexerOrderConflict) and lark_lexes_otherwise(parser, exc):
                        cnt["refused"] += 1
                        cnt["refused, lexer order"] += 1
                        continue
                if lark_ok != guided_ok:
                    if lark_ok and any(reason in why for reason in REFUSED_BY_DESIGN):
                        cnt["refused"] += 1  # Lark takes these grammars; guided refuses them, saying why
                        continue
                    cnt["refusal mismatches"] += 1
                    examples.append({"kind": "refusal mismatch", "spec": label, "lark": lark_ok,
                                     "guided": None if guided_ok else why})
                    continue
                if not guided_ok:
                    cnt["refused"] += 1
                    continue

                def reference(text, parser=parser):
                    try:
                        parser.parse(text)
                        return True
                    except lark.exceptions.LarkError:
                        return False
            cnt["compiled"] += 1
            finished: list[str] = []
            for _ in range(args.walks_per_spec):
                cnt["walks"] += 1
                data = walker.walk(compiled, cnt, examples, label)
                if data is None:
                    continue
                cnt["finished walks"] += 1
                text = data.decode("utf-8")
                try:
                    verdict = bounded(args.oracle_seconds, reference, text)
                except OracleTimeout:
                    cnt["oracle timeouts"] += 1
                    continue
                if verdict is None:
                    cnt["no reference verdict"] += 1
                elif not verdict:
                    cnt["invalid accepted"] += 1
                    examples.append({"kind": "invalid accepted", "spec": label, "text": text})
                else:
                    finished.append(text)
            for text in dict.fromkeys(finished[: args.mutants]):
                for _ in range(3):
                    mutant = mutate(rng, text, cls)
                    if mutant == text:
                        continue
                    try:
                        verdict = bounded(args.oracle_seconds, reference, mutant)
                    except OracleTimeout:
                        cnt["oracle timeouts"] += 1
                        continue
                    if verdict is None:
                        continue
                    ok = walker.accepts_text(compiled, mutant)
                    cnt["mutants"] += 1
                    if ok and not verdict:
                        cnt["mutants accepted"] += 1
                        examples.append({"kind": "mutant accepted", "spec": label, "text": mutant, "from": text})
                    elif verdict and not ok:
                        cnt["mutants valid, rejected"] += 1
        if args.progress and time.perf_counter() >= next_report:
            next_report += args.progress
            done = {c: counts[c]["walks"] for c in classes}
            print(f"  {time.perf_counter() - start:.0f} s: walks {done}", file=sys.stderr, flush=True)
    return {"seconds": round(time.perf_counter() - start, 1), "seed": args.seed,
            "counts": {c: dict(counts[c]) for c in classes}, "examples": examples[:200]}


FAILURES = ("invalid accepted", "mask/advance disagreements", "dead ends", "mutants accepted", "refusal mismatches")
COLUMNS = ("specs", "compiled", "refused", "refused, lexer order", "walks", "finished walks", "tokens", "masks",
           "unfinished walks", "mutants", "mutants valid, rejected", "no reference verdict", "oracle timeouts") + FAILURES


def report(result: dict) -> str:
    counts = result["counts"]
    classes = list(counts)
    lines = [f"seed {result['seed']}, {result['seconds']} s", "",
             "| count | " + " | ".join(classes) + " | total |", "|---|" + "---|" * (len(classes) + 1)]
    for col in COLUMNS:
        vals = [counts[c].get(col, 0) for c in classes]
        name = f"**{col}**" if col in FAILURES else col
        lines.append(f"| {name} | " + " | ".join(str(v) for v in vals) + f" | {sum(vals)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--walks", type=int, default=3000, help="walks in all, shared by the classes")
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--walks-per-spec", type=int, default=25)
    ap.add_argument("--max-steps", type=int, default=40, help="tokens before a walk steers towards its end")
    ap.add_argument("--mutants", type=int, default=6, help="finished texts per spec to mutate (3 mutants each)")
    ap.add_argument("--time-limit", type=float, default=0, help="seconds (0: none)")
    ap.add_argument("--oracle-seconds", type=float, default=2.0, help="time bound of one reference verdict")
    ap.add_argument("--progress", type=float, default=60, help="print progress every N seconds (0: never)")
    ap.add_argument("--json", help="write counts and failing examples here")
    args = ap.parse_args(argv)
    args.classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    unknown = set(args.classes) - set(CLASSES)
    if unknown:
        ap.error(f"unknown classes: {', '.join(sorted(unknown))}")
    result = run(args)
    print(report(result))
    for ex in result["examples"][:10]:
        print(json.dumps(ex, ensure_ascii=False)[:400])
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))
    failed = sum(result["counts"][c].get(f, 0) for c in result["counts"] for f in FAILURES)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
