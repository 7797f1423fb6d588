"""Fuzz target for the native core (atheris over the Python API): random vocabularies, random and
often malformed IR (byte DFAs, LALR tables, Earley right-hand sides, XML's matched names, item counts, unique items), random token sequences,
rollbacks, copies and bitmask buffers; the core's canonical JSON values against `guided.ir.canonical_json` on random
JSON-like texts; the compile path's automaton kernels (trim, products, subset construction, minimisation) on random
and malformed automata.  Every outcome must be a mask or a clean Python exception (a `guided.GuidedError`,
``ValueError``, ``IndexError`` or ``TypeError``): never a crash, a hang or a sanitizer report.

    make fuzz-native                      # ASan+UBSan build, 60 s
    .venv/bin/python tests/fuzz/fuzz_native.py -max_total_time=60 -rss_limit_mb=4096
    .venv/bin/python tests/fuzz/fuzz_native.py --replay 2000   # without atheris: seeded random inputs
"""

from __future__ import annotations

import random
import sys

import numpy as np

from guided.engine import native
from guided.errors import GuidedError

EXPECTED = (GuidedError, ValueError, IndexError, TypeError)


class Source:
    """Draws values from the fuzzer's bytes (atheris) or from a seeded generator (replay)."""

    def __init__(self, data: bytes | None = None, seed: int = 0):
        if data is not None:
            import atheris

            self.fdp = atheris.FuzzedDataProvider(data)
        else:
            self.fdp = None
            self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        if self.fdp is not None:
            return self.fdp.ConsumeIntInRange(lo, hi)
        return self.rng.randint(lo, hi)

    def bytes(self, n: int) -> bytes:
        if self.fdp is not None:
            return self.fdp.ConsumeBytes(n)
        return bytes(self.rng.randrange(256) for _ in range(n))

    def chance(self, percent: int) -> bool:
        return self.int(0, 99) < percent

    def choice_max(self, lo: int) -> int:
        """A maximum of at least ``lo``, or -1 (none)."""
        return -1 if self.chance(30) else lo + self.int(0, 3)


def random_dfa(src: Source, alphabet: bytes, sound: bool = True):
    n = src.int(1, 6)
    table = np.zeros((n, 256), np.int32)
    for s in range(1, n):
        for b in alphabet:
            if src.chance(40):
                table[s, b] = src.int(0, n - 1)
    accepting = np.array([s > 0 and src.chance(40) for s in range(n)], bool)
    initial = src.int(0, n - 1) if n > 1 else 0
    if not sound and src.chance(30):  # out-of-range targets, a live dead state, a bad initial state
        table[src.int(0, n - 1), src.int(0, 255)] = src.int(-3, n + 3)
        initial = src.int(-1, n + 1)
    return table, accepting, initial


def random_tables(src: Source, n_terms: int, sound: bool):
    n_states = src.int(1, 8)
    n_nt = src.int(1, 4)
    rules = [(src.int(0, n_nt - 1), src.int(0, 3)) for _ in range(src.int(1, 6))]
    actions, gotos = [], []
    for _ in range(n_states):
        row = {}
        for sym in range(n_terms + 1):  # the last one is END
            if src.chance(35):
                row[sym] = src.int(0, n_states - 1) if src.chance(60) else -src.int(1, len(rules))
        actions.append(row)
        gotos.append({nt: src.int(0, n_states - 1) for nt in range(n_nt) if src.chance(60)})
    if not sound and src.chance(30):
        actions[src.int(0, n_states - 1)][src.int(-2, n_terms + 3)] = src.int(-len(rules) - 3, n_states + 3)
    return actions, gotos, rules, n_nt, n_states


def random_earley(src: Source, n_terms: int, rules: list, n_nt: int, sound: bool):
    """Rule 10's right-hand sides of ``rules`` ((lhs, length) rows) as CSR (offsets, symbols), terminals
    more often than nonterminals so that some grammars can finish; unsound: a symbol or an offset
    out of range, or one offset missing."""
    offsets, symbols = [0], []
    for _, length in rules:
        for _ in range(max(length, 0)):
            symbols.append(src.int(0, n_terms - 1) if src.chance(60) else ~src.int(0, n_nt - 1))
        offsets.append(len(symbols))
    if not sound and src.chance(60):
        which = src.int(0, 2)
        if which == 0 and symbols:
            symbols[src.int(0, len(symbols) - 1)] = src.int(-n_nt - 3, n_terms + 3)
        elif which == 1:
            offsets[src.int(0, len(offsets) - 1)] = src.int(-1, len(symbols) + 2)
        else:
            offsets.pop()
    return np.array(offsets, np.int64), np.array(symbols, np.int32)


def random_counts(src: Source, n_states: int, n_rules: int, sound: bool):
    """`counts_grammar`'s arguments: each state open (random bounds), separator, close or plain."""
    bounds, separators, closes = [], [], []
    for s in range(n_states):
        kind = src.int(0, 3)
        if kind == 0:
            lo = src.int(0, 3)
            bounds.append((s, lo, src.choice_max(lo) if sound else src.int(-3, 2 ** 62)))
        elif kind == 1:
            separators.append(s)
        elif kind == 2:
            closes.append(s)
    rules = [r for r in range(n_rules) if src.chance(50)]
    if not sound and src.chance(50):
        [bounds, separators, closes, rules][src.int(0, 3)].append(
            (src.int(-2, n_states + 2), src.int(-2, 3), src.int(-2, 3)) if src.chance(25) else src.int(-2, n_states + 2))
    return bounds, rules, separators, closes


def random_unique(src: Source, n_states: int, n_rules: int, sound: bool):
    """`unique_grammar`'s arguments: random open states and item rules, a small completions limit."""
    states = [s for s in range(n_states) if src.chance(30)]
    rules = [r for r in range(n_rules) if src.chance(50)]
    limit = src.int(0, 8)
    if not sound and src.chance(50):
        which = src.int(0, 2)
        if which == 0:
            states.append(src.int(-2, n_states + 2))
        elif which == 1:
            rules.append(src.int(-2, n_rules + 2))
        else:
            limit = src.int(-3, -1)
    return states, rules, limit


JSONISH = b'[]{}",:0123456789.eE-+ \\tfalsenrunNIuA\xc3\xa9\xed\xa0\x00'


def canonical_values(core, src: Source) -> None:
    """Two JSON-like texts (the second often the first slightly changed): the core's canonical values
    are equal exactly where `canonical_json`'s are (where Decimal can read the numbers)."""
    import decimal

    from guided.ir import canonical_json

    a = bytes(JSONISH[src.int(0, len(JSONISH) - 1)] for _ in range(src.int(0, 24)))
    if src.chance(60) and a:
        i = src.int(0, len(a) - 1)
        b = a[:i] + bytes([JSONISH[src.int(0, len(JSONISH) - 1)]]) + a[i + (1 if src.chance(50) else 0):]
    else:
        b = bytes(JSONISH[src.int(0, len(JSONISH) - 1)] for _ in range(src.int(0, 24)))
    try:
        python = canonical_json(a) == canonical_json(b)
    except decimal.InvalidOperation:  # an exponent past Decimal's range: Python has no answer
        return
    assert (core.canonical_value(a) == core.canonical_value(b)) == python, (a, b)


def csr(rows):
    offsets = np.zeros(len(rows) + 1, np.int64)
    syms, vals = [], []
    for i, row in enumerate(rows):
        for k in sorted(row):
            syms.append(k)
            vals.append(row[k])
        offsets[i + 1] = len(syms)
    return offsets, np.array(syms, np.int32), np.array(vals, np.int32)


def exercise(matcher, src: Source, vocab_size: int) -> None:
    words = (vocab_size + 31) // 32
    for _ in range(src.int(1, 40)):
        op = src.int(0, 9)
        try:
            if op <= 3:
                matcher.advance(src.int(-2, vocab_size + 2))
            elif op == 4:
                matcher.rollback(src.int(-1, matcher.num_tokens + 1))
            elif op == 5:
                matcher = matcher.copy() if src.chance(50) else matcher
            elif op == 6:
                rows, cols = src.int(1, 3), src.int(max(0, words - 1), words + 2)
                buf = np.zeros((rows, cols), np.int32)
                matcher.fill_bitmask(buf, src.int(-1, rows))
            elif op == 7:
                matcher.accepts_eos(), matcher.is_finished(), matcher.forced_bytes()
            elif op == 8:
                matcher.words()
                if isinstance(matcher, native._require().CfgMatcher) and src.chance(50):
                    # budget masks and closing bounds of grammars (closing.h)
                    matcher.budget_words(src.int(-2, 70))
                    matcher.closing_lower_bound()
            else:
                buf = np.zeros((2, words), np.int32)
                native._require().fill_bitmasks([matcher, matcher], buf, src.int(1, 3))
        except EXPECTED:
            pass


def random_nfa(src: Source, sound: bool):
    """(ranges, epsilons, accepting, start) of a random ByteNFA; unsound: bytes, targets or
    states out of range."""
    n = src.int(1, 6)
    lo_b, hi_b, lo_s, hi_s = (0, 255, 0, n - 1) if sound else (-2, 258, -1, n)
    ranges = [[(src.int(lo_b, hi_b), src.int(lo_b, hi_b), src.int(lo_s, hi_s)) for _ in range(src.int(0, 3))]
              for _ in range(n)]
    epsilons = [[src.int(lo_s, hi_s) for _ in range(src.int(0, 2))] for _ in range(n)]
    if not sound and src.chance(20):
        epsilons.pop()
    accepting = [src.int(lo_s, hi_s) for _ in range(src.int(0, 2))]
    return ranges, epsilons, accepting, src.int(lo_s, hi_s)


def random_rules(src: Source, sound: bool):
    """(lhs, rhs, n_nt, bias, start, priority) of random integer grammar rules for the compiled
    LALR(1) construction; unsound: left-hand sides, symbols, start or priorities out of range."""
    n_nt, bias = src.int(1, 5), src.int(1, 70)
    lo_a, hi_a = (0, n_nt - 1) if sound else (-1, n_nt)
    lhs = [src.int(lo_a, hi_a) for _ in range(src.int(0 if not sound else 1, 8))]
    if sound:
        lhs += [a for a in range(n_nt) if a not in lhs]  # every nonterminal defined

    def symbol() -> int:
        if not sound and src.chance(10):
            return src.int(-2, bias + n_nt + 1)
        return src.int(bias, bias + n_nt - 1) if bias == 1 or src.chance(50) else src.int(0, bias - 2)

    rhs = [[symbol() for _ in range(src.int(0, 4))] for _ in lhs]
    priority = [src.int(0, 2) for _ in lhs] if src.chance(50) else []
    if not sound and priority and src.chance(30):
        priority.pop()
    return lhs, rhs, n_nt, bias, src.int(lo_a, hi_a), priority


def automaton_kernels(core, src: Source, alphabet: bytes, sound: bool) -> None:
    """The compiled twins of guided.ir.dfa's operations on random, sometimes malformed, input."""
    try:
        which = src.int(0, 4)
        if which == 4:
            core.lalr_build(*random_rules(src, sound), None)
            return
        if which == 0:
            ranges, epsilons, accepting, start = random_nfa(src, sound)
            core.nfa_determinize(ranges, epsilons, accepting, start, src.int(1, 64), 1.0, "f", "slow")
            return
        table, accepting, initial = random_dfa(src, alphabet, sound)
        if which == 1:
            core.dfa_trim(table, accepting, initial)
        elif which == 2:
            core.dfa_minimize(table, accepting, initial, src.int(0, 8), 1.0)
        else:
            tb, acc_b, init_b = random_dfa(src, alphabet, sound)
            core.dfa_product(table, accepting, initial, tb, acc_b, init_b, src.int(0, 1), src.chance(50),
                             src.int(1, 64), "f")
    except EXPECTED:
        pass


def one_input(src: Source) -> None:
    core = native._require()
    alphabet = bytes(sorted(set(src.bytes(src.int(1, 6)) or b"a")))
    tokens = [bytes(alphabet[src.int(0, len(alphabet) - 1)] for _ in range(src.int(1, 4)))
              for _ in range(src.int(1, 24))]
    tokens.append(b"")  # the EOS id
    eos = len(tokens) - 1
    trie = core.token_trie(tokens, [eos], [eos])
    shared = core.shared_lexemes() if src.chance(50) else None
    sound = src.chance(70)
    if src.chance(20):
        automaton_kernels(core, src, alphabet, sound)
        return
    if src.chance(10):
        canonical_values(core, src)
        return
    try:
        if src.chance(30):
            table, accepting, initial = random_dfa(src, alphabet, sound)
            grammar = core.regex_grammar(trie, core.byte_dfa(table, accepting, initial))
        else:
            n_terms = src.int(1, 4)
            terms = []
            for _ in range(n_terms):
                table, accepting, initial = random_dfa(src, alphabet, sound)
                terms.append((core.byte_dfa(table, accepting, initial), src.int(-1, 2), src.chance(50), src.int(0, 5)))
            actions, gotos, rules, n_nt, n_states = random_tables(src, n_terms, sound)
            ao, asym, aval = csr(actions)
            go, gsym, gval = csr(gotos)
            ignore = [t for t in range(n_terms) if src.chance(20)]
            if src.chance(30):  # parsed by Earley (rule 10): the tables' rules with right-hand sides
                if sound:
                    rules[0] = (0, rules[0][1])  # the start symbol has a rule
                offsets, symbols = random_earley(src, n_terms, rules, n_nt, sound)
                grammar = core.earley_grammar(
                    trie, shared, terms, ignore, src.chance(50), [s for s in range(n_states) if src.chance(20)],
                    ao, asym, aval, go, gsym, gval,
                    np.array([r[0] for r in rules], np.int32), np.array([r[1] for r in rules], np.int32),
                    n_nt, src.int(0, n_states - 1), src.int(0, n_states - 1),
                    [] if sound else [s for s in range(n_states) if src.chance(10)], 0 if sound else src.int(0, 1),
                    src.int(2, 64), offsets, symbols)
                exercise(grammar.matcher(), src, len(tokens))
                return
            grammar = core.cfg_grammar(
                trie, shared, terms, ignore, src.chance(50), [s for s in range(n_states) if src.chance(20)],
                ao, asym, aval, go, gsym, gval,
                np.array([r[0] for r in rules], np.int32), np.array([r[1] for r in rules], np.int32),
                n_nt, src.int(0, n_states - 1) if sound else src.int(-1, n_states),
                src.int(0, n_states - 1), [s for s in range(n_states) if src.chance(30)], src.int(0, 3),
                src.int(2, 64))
            if src.chance(30):  # XML's matched names over it, on random terminals and name bytes
                name_bytes = [b for b in alphabet if src.chance(60)] + ([src.int(-1, 256)] if not sound else [])
                risk = core.xml_risk(trie, name_bytes)
                lo, hi = (0, n_terms - 1) if sound else (-1, n_terms)
                grammar = core.xml_grammar(grammar, risk, *(src.int(lo, hi) for _ in range(5)), src.chance(70))
            elif src.chance(40):  # item counts over it (rule 12), on random states and rules
                grammar = core.counts_grammar(grammar, *random_counts(src, n_states, len(rules), sound))
            elif src.chance(50):  # unique items over it (rule 9), on random states and rules
                grammar = core.unique_grammar(grammar, *random_unique(src, n_states, len(rules), sound))
    except EXPECTED:
        return
    try:
        matcher = grammar.matcher()
    except EXPECTED:
        return
    exercise(matcher, src, len(tokens))


def main() -> None:
    global one_input, exercise, random_dfa, random_tables, random_counts, random_nfa, random_rules, random_earley
    global automaton_kernels, random_unique, canonical_values
    if "--replay" in sys.argv:
        n = int(sys.argv[sys.argv.index("--replay") + 1])
        for seed in range(n):
            one_input(Source(seed=seed))
        print(f"replayed {n} seeded inputs: no crash")
        return
    import atheris

    # Coverage of this harness's branches (which inputs were refused where) guides the fuzzer;
    # the core itself is compiled by gcc without coverage hooks, with the sanitizers.
    for fn in (one_input, exercise, random_dfa, random_tables, random_counts, random_nfa, random_rules, random_earley,
               automaton_kernels,
               random_unique, canonical_values, Source.int, Source.chance):
        atheris.instrument_func(fn)
    atheris.Setup(sys.argv, lambda data: one_input(Source(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
