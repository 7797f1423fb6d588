"""Mask time of grammars parsed by Earley (`guided.ir.cfg` rule 9) beside an LALR(1) grammar, on
SmolLM2's vocabulary, both on the Python engine (the only one that parses by Earley).

Each grammar's text is walked token by token (the longest allowed token that spells the text
next); every mask on the way is timed.  Run: ``.venv/bin/python benchmarks/earley_masks.py``.
"""

from __future__ import annotations

import time

import guided
from guided import models

TEXT = "(12 + 3) * 45 + (6 * (7 + 8)) * 9 + 10"
GRAMMARS = {
    "ambiguous expressions (Earley)": ('start: e\ne: e "+" e | e "*" e | "(" e ")" | NUM\nNUM: /[0-9]+/\n'
                                       '%ignore " "', TEXT),
    "shipped arithmetic (LALR)": ("arithmetic", TEXT),
    "statements, ambiguous '-' (Earley)": ('start: stmt+\nstmt: NAME "=" expr ";" | expr ";"\n'
                                           'expr: NAME | NUM | expr "-" expr\nNAME: /[a-c]+/\nNUM: /[0-9]+/\n'
                                           '%ignore " "', "a = b - 1 - c; b = 2; c - a - 33; a = 1 - 2 - 3 - 4;"),
}


def main() -> None:
    vocab = guided.Vocabulary.from_tokenizer(models.load_tokenizer())
    for name, (source, text) in GRAMMARS.items():
        grammar = guided.compile(guided.Grammar(source), vocab, engine="python", cache=False)
        matcher = grammar.matcher()
        data, pos, times = text.encode(), 0, []
        while True:
            start = time.perf_counter()
            mask = matcher.mask()
            times.append(time.perf_counter() - start)
            if pos == len(data):
                break
            allowed = mask.nonzero()[0].tolist()
            token = max((t for t in allowed if data.startswith(vocab.token_bytes[t], pos)),
                        key=lambda t: len(vocab.token_bytes[t]))
            matcher.advance(token)
            pos += len(vocab.token_bytes[token])
        assert matcher.accepts_eos()
        print(f"{name}: {len(times)} masks, mean {1000 * sum(times) / len(times):.2f} ms, "
              f"max {1000 * max(times):.2f} ms ({'Earley' if grammar.ir.earley else 'LALR(1)'})")


if __name__ == "__main__":
    main()
