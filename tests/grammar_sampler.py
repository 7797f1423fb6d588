"""Random sentences of a Lark grammar, for property tests: Lark itself decides what is valid."""

from __future__ import annotations

import random
import re

import lark
import numpy as np

from guided.frontends.lark import Grammar
from guided.frontends.regex import Regex, regex_to_dfa


class SentenceSampler:
    """Draws random sentences from a grammar; every returned sentence parses with Lark."""

    def __init__(self, spec: Grammar, max_depth: int = 8):
        text, path = spec.text_and_path()
        kwargs = dict(parser="lalr", lexer="contextual", start=spec.start,
                      import_paths=[str(path.parent)] if path else [])
        self.oracle = lark.Lark(text, **kwargs)
        self.max_depth = max_depth
        self.rules: dict[str, list] = {}
        for rule in self.oracle.rules:
            self.rules.setdefault(rule.origin.name, []).append(rule.expansion)
        self.start = spec.start
        self.terminals = {t.name: t for t in self.oracle.terminals}
        self.ignore = [self.terminals[n] for n in self.oracle.ignore_tokens if n in self.terminals]
        self._dfas: dict[str, tuple] = {}
        self._height = self._heights()

    def parses(self, text: str) -> bool:
        try:
            self.oracle.parse(text)
            return True
        except lark.exceptions.LarkError:
            return False

    def _heights(self) -> dict[str, int]:
        height = {name: 10**9 for name in self.rules}
        changed = True
        while changed:
            changed = False
            for name, expansions in self.rules.items():
                for exp in expansions:
                    h = 1 + max([height.get(s.name, 0) if not s.is_term else 0 for s in exp], default=0)
                    if h < height[name]:
                        height[name] = h
                        changed = True
        return height

    def sample(self, rng: random.Random, attempts: int = 300) -> str:
        for _ in range(attempts):
            pieces: list[str] = []
            self._expand(self.start, 0, rng, pieces)
            text = self._join(pieces, rng)
            if self.parses(text):
                return text
        raise RuntimeError("could not draw a sentence that Lark accepts")

    def _expand(self, name: str, depth: int, rng: random.Random, out: list[str]) -> None:
        expansions = self.rules[name]
        if depth >= self.max_depth:
            best = min(self._exp_height(e) for e in expansions)
            expansions = [e for e in expansions if self._exp_height(e) == best]
        for sym in rng.choice(expansions):
            if sym.is_term:
                out.append(self._terminal_text(self.terminals[sym.name], rng))
            else:
                self._expand(sym.name, depth + 1, rng, out)

    def _exp_height(self, exp) -> int:
        return max([self._height.get(s.name, 0) if not s.is_term else 0 for s in exp], default=0)

    def _join(self, pieces: list[str], rng: random.Random) -> str:
        if not self.ignore:
            return "".join(pieces)
        out = []
        for i, piece in enumerate(pieces):
            if i and rng.random() < 0.35:
                out.append(self._terminal_text(rng.choice(self.ignore), rng))
            out.append(piece)
        if rng.random() < 0.2:
            out.append(self._terminal_text(rng.choice(self.ignore), rng))
        return "".join(out)

    def _terminal_text(self, terminal, rng: random.Random) -> str:
        pattern = terminal.pattern
        if isinstance(pattern, lark.lexer.PatternStr):
            text = pattern.value
            if "i" in pattern.flags:
                text = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)
            return text
        if terminal.name not in self._dfas:
            flags = "".join(sorted(pattern.flags))
            regex = f"(?{flags}:{pattern.value})" if flags else pattern.value
            dfa = regex_to_dfa(Regex(regex))
            self._dfas[terminal.name] = (dfa, _distances(dfa))
        dfa, dist = self._dfas[terminal.name]
        for _ in range(100):
            data = _random_walk(dfa, dist, rng)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:  # pragma: no cover - the DFA is UTF-8 exact
                continue
            if re.fullmatch(pattern.to_regexp(), text):
                return text
        raise RuntimeError(f"no sample for {terminal.name}")


_PRINTABLE = [b for b in range(0x20, 0x7F)]


def _distances(dfa) -> np.ndarray:
    dist = np.full(dfa.num_states, 10**9, dtype=np.int64)
    dist[dfa.accepting] = 0
    dist[0] = 10**9
    while True:
        new = np.minimum(dist, dist[dfa.transitions].min(axis=1) + 1)
        new[0] = 10**9
        if (new == dist).all():
            return dist
        dist = new


def _random_walk(dfa, dist, rng: random.Random, soft_limit: int = 12) -> bytes:
    s = dfa.initial
    out = bytearray()
    while True:
        options = np.flatnonzero(dfa.transitions[s])
        if dfa.accepting[s] and (len(out) >= soft_limit or not options.size or rng.random() < 0.25):
            return bytes(out)
        if len(out) >= soft_limit:
            options = options[dist[dfa.transitions[s, options]] == dist[s] - 1]
        printable = [b for b in options.tolist() if b in _PRINTABLE or b in (9, 10)]
        mostly_ascii = printable and rng.random() < 0.9
        b = rng.choice(printable if mostly_ascii else options.tolist())
        out.append(b)
        s = int(dfa.transitions[s, b])
