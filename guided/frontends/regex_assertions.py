"""Zero-width assertions in a regex (lookarounds, word boundaries, anchors inside a pattern),
compiled exactly by a subset construction that carries them.

The regex builder (`guided.frontends.regex`) lays an assertion down as a *guarded* epsilon move
of its byte NFA.  Each assertion is a byte DFA over the text as it is spelt (UTF-8, or JSON's
spellings), read one of two ways:

- looking back (``(?<=B)``, ``(?<!B)``, the left half of ``\\b``, ``^``): the DFA of Σ*B runs
  over the whole input from its first byte (a *history*); the move is open where its state
  accepts (does not, for a negative assertion);
- looking ahead (``(?=A)``, ``(?!A)``, the right half of ``\\b``, ``$``): taking the move starts
  a DFA of the suffixes it allows (AΣ* for a lookahead; {"", "\\n"} for Python's ``$``) as an
  *obligation* that runs along with the path, which may only end where the obligation accepts
  (does not, for a negative one).  An obligation whose every continuation is accepted is met
  and dropped; one that can no longer accept is failed (the reverse for a negative one).  A
  lookahead whose body looks back (`ContextualLookahead`) has one such DFA per state of the
  histories its body reads, which the construction runs from the start of the text too.

A state of the result is the histories' states and a set of (NFA state, obligations) pairs.
The spellings are uniquely decodable (a byte string spells at most one text), so these byte-level
products say exactly what the character-level definitions say.

>>> from guided.frontends.regex import regex_to_dfa
>>> d = regex_to_dfa(r".*\\bcat\\b(?!-).*")
>>> d.fullmatch(b"a cat."), d.fullmatch(b"concat"), d.fullmatch(b"cat-")
(True, False, False)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from guided.errors import LimitExceeded
from guided.ir.dfa import DEAD, ByteDFA, ByteNFA, Limits, minimize, trim

PENDING, MET, FAILED = 0, 1, 2


@dataclass(eq=False)
class Assertion:
    """One zero-width test: a DFA read as a history (``behind``) or started as an obligation."""

    dfa: ByteDFA
    behind: bool
    positive: bool
    status: np.ndarray | None = None  # obligations: per DFA state, PENDING, MET or FAILED


def lookbehind(dfa: ByteDFA, positive: bool) -> Assertion:
    """Open where the text so far is in ``dfa``'s language (Σ*B) — or is not, when not ``positive``."""
    return Assertion(dfa, True, positive)


def lookahead(dfa: ByteDFA, positive: bool, universe: ByteDFA) -> Assertion:
    """Open where the rest of the text is in ``dfa``'s language (or is not); ``universe`` is the
    language of all spelt texts, which decides when an obligation is settled early."""
    status = np.full(dfa.num_states, PENDING, np.int8)
    status[_sure_states(dfa, universe)] = MET if positive else FAILED
    status[DEAD] = FAILED if positive else MET
    return Assertion(dfa, False, positive, status)


class ContextualLookahead:
    """A lookahead whose body looks back too (``(?=.*\\bcat)``, ``(?!(?<=a)b)``): its automaton
    depends on the text before its position, which histories running from the start of the text
    summarise (``contexts``), so there is one variant per combination of their states, built
    when first needed (each an ordinary lookahead `Assertion`)."""

    behind = False

    def __init__(self, nfa: ByteNFA, guards: dict, positive: bool, universe: ByteDFA, limits: Limits, what: str):
        self.nfa, self.guards, self.positive = nfa, guards, positive
        self.universe, self.limits, self.what = universe, limits, what
        self.contexts = histories_of(guards)
        self.cuts = _cuts(nfa, guards)
        self._variants: dict[tuple, Assertion] = {}

    def variant(self, context: tuple) -> Assertion:
        """The lookahead where the contexts' states are ``context``."""
        found = self._variants.get(context)
        if found is None:
            start = {id(h): s for h, s in zip(self.contexts, context)}
            dfa = determinize_guarded(self.nfa, self.guards, self.limits, self.what, start)
            found = self._variants[context] = lookahead(dfa, self.positive, self.universe)
        return found


def histories_of(guards: dict) -> list[ByteDFA]:
    """The DFAs that must run from the start of the text for ``guards`` to be decided."""
    out: dict[int, ByteDFA] = {}
    for moves in guards.values():
        for a, _ in moves:
            if isinstance(a, ContextualLookahead):
                out.update((id(h), h) for h in a.contexts)
            elif a.behind:
                out[id(a.dfa)] = a.dfa
    return list(out.values())


def _cuts(nfa: ByteNFA, guards: dict) -> set[int]:
    """The bytes where some NFA range or assertion DFA starts treating bytes differently."""
    cuts = {0, 256}
    for moves in nfa.ranges:
        for lo, hi, _ in moves:
            cuts.update((lo, hi + 1))
    for moves in guards.values():
        for a, _ in moves:
            if isinstance(a, ContextualLookahead):
                cuts |= a.cuts
                continue
            table = a.dfa.transitions
            cuts.update((np.flatnonzero((table[:, 1:] != table[:, :-1]).any(axis=0)) + 1).tolist())
    return cuts


def _sure_states(dfa: ByteDFA, universe: ByteDFA) -> np.ndarray:
    """The states of ``dfa`` from which every text of ``universe`` is accepted.

    A search over the pairs (dfa state, universe state) reachable from (s, universe's start): s
    is sure when no reachable pair ends a text (universe accepts) where ``dfa`` does not.
    """
    nd, nu = dfa.num_states, universe.num_states
    seen = np.zeros(nd * nu, bool)
    frontier = np.unique(np.arange(nd, dtype=np.int64) * nu + universe.initial)
    seen[frontier] = True
    sources, targets = [], []
    while frontier.size:
        x, y = frontier // nu, frontier % nu
        ty = universe.transitions[y]
        keys = dfa.transitions[x].astype(np.int64) * nu + ty
        live = ty != DEAD
        src = np.repeat(frontier, 256).reshape(-1, 256)[live]
        dst = keys[live]
        sources.append(src)
        targets.append(dst)
        fresh = np.unique(dst[~seen[dst]])
        seen[fresh] = True
        frontier = fresh
    src = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    dst = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    pairs = np.arange(nd * nu)
    unsure = seen & universe.accepting[pairs % nu] & ~(dfa.accepting[pairs // nu] & (pairs // nu != DEAD))
    while True:  # backwards: a pair that can reach an unsure pair is unsure
        grown = unsure.copy()
        grown[src[unsure[dst]]] = True
        if grown.sum() == unsure.sum():
            break
        unsure = grown
    sure = ~unsure[np.arange(nd) * nu + universe.initial]
    sure[DEAD] = False
    return np.flatnonzero(sure)


def determinize_guarded(nfa: ByteNFA, guards: dict[int, list[tuple]], limits: Limits,
                        what: str = "regex", start_histories: dict[int, int] | None = None) -> ByteDFA:
    """The trimmed, minimised DFA of ``nfa`` whose epsilon moves ``guards[q] = [(assertion,
    target), ...]`` are open only where their assertion holds (see the module docstring);
    ``start_histories``: the histories' states at the start (by ``id`` of their DFA), where the
    text read is the rest of a longer one (a lookahead's body)."""
    deadline = limits.until()
    # Obligations name their lookahead by index; contextual lookaheads add variants as they are met.
    assertions: list[Assertion] = []
    index_of: dict[int, int] = {}
    histories = histories_of(guards)
    slot = {id(h): k for k, h in enumerate(histories)}
    # Bytes every NFA range and every assertion DFA treats alike form one class.
    bounds = sorted(_cuts(nfa, guards))
    reps = bounds[:-1]
    class_of = np.zeros(257, np.int64)
    for k, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        class_of[lo:hi] = k
    byte_class = class_of[:256]
    moves_by_class: list[list[tuple[int, int, int]]] = [
        [(int(class_of[lo]), int(class_of[hi]) + 1, t) for lo, hi, t in moves] for moves in nfa.ranges]
    accepting = nfa.accepting

    def obligation_index(a: Assertion) -> int:
        k = index_of.get(id(a))
        if k is None:
            k = index_of[id(a)] = len(assertions)
            assertions.append(a)
        return k

    def holds_at_end(obligations) -> bool:
        return all(bool(assertions[k].dfa.accepting[d]) == assertions[k].positive for k, d in obligations)

    def closure(items, hist) -> frozenset:
        seen: set = set()
        stack = list(items)
        while stack:
            item = stack.pop()
            if item in seen:
                continue
            seen.add(item)
            q, obligations = item
            for t in nfa.epsilons[q]:
                stack.append((t, obligations))
            for a, t in guards.get(q, ()):
                if a.behind:
                    if bool(a.dfa.accepting[hist[slot[id(a.dfa)]]]) == a.positive:
                        stack.append((t, obligations))
                    continue
                if isinstance(a, ContextualLookahead):
                    a = a.variant(tuple(hist[slot[id(h)]] for h in a.contexts))
                d = a.dfa.initial
                status = a.status[d]
                if status == MET:
                    stack.append((t, obligations))
                elif status == PENDING:
                    stack.append((t, obligations | {(obligation_index(a), d)}))
        # Only states that read a byte or accept matter to the automaton.
        return frozenset(item for item in seen if nfa.ranges[item[0]] or item[0] in accepting)

    closures: dict = {}  # (items, histories) -> closure: classes of many states lead to the same items
    steps: dict = {}  # (obligations, byte class) -> obligations after it (None: failed)
    hist_steps: dict = {}  # (histories' states, byte class) -> their states after it

    given = start_histories or {}
    hist0 = tuple(given.get(id(h), h.initial) for h in histories)
    start = (hist0, closure([(nfa.start, frozenset())], hist0))
    index = {start: 1}
    order = [start]
    rows = [np.zeros(256, np.int32)]
    accept = [False]
    pending = 0
    while pending < len(order):
        hist, items = order[pending]
        pending += 1
        if len(order) > limits.max_states:
            raise LimitExceeded(f"{what}: more than {limits.max_states} automaton states "
                                f"(raise the limit with max_states=, or simplify the pattern)")
        if pending % 64 == 0 and time.monotonic() > deadline:
            raise LimitExceeded(f"{what}: construction took longer than max_seconds={limits.max_seconds} s")
        accept.append(any(q in accepting and holds_at_end(obl) for q, obl in items))
        by_class: dict[int, list] = {}
        for q, obligations in items:
            for c0, c1, t in moves_by_class[q]:
                for c in range(c0, c1):
                    by_class.setdefault(c, []).append((t, obligations))
        row_by_class = [0] * len(reps)
        for c, targets in by_class.items():
            b = reps[c]
            new_hist = hist_steps.get((hist, c))
            if new_hist is None:
                new_hist = hist_steps[(hist, c)] = tuple(int(h.transitions[s, b]) for h, s in zip(histories, hist))
            nexts = []
            for t, obligations in targets:
                key = (obligations, c)
                after = steps.get(key, ())
                if after == ():
                    after = steps[key] = _step(obligations, assertions, b)
                if after is not None:
                    nexts.append((t, after))
            if not nexts:
                continue
            ckey = (frozenset(nexts), new_hist)
            found = closures.get(ckey)
            if found is None:
                found = closures[ckey] = closure(nexts, new_hist)
                if len(closures) > 200_000:
                    closures.clear()
            state = (new_hist, found)
            if not found:
                continue
            sid = index.get(state)
            if sid is None:
                sid = index[state] = len(order) + 1
                order.append(state)
            row_by_class[c] = sid
        rows.append(np.array(row_by_class, np.int32)[byte_class])
    table = np.stack(rows).astype(np.int32)
    dfa = trim(table, np.array(accept, bool), initial=1, deadline=deadline, what=what)
    return minimize(dfa, deadline)


def _step(obligations: frozenset, assertions: list[Assertion], byte: int):
    """The obligations after ``byte`` (met ones dropped), or None when one has failed."""
    out = set()
    for k, d in obligations:
        a = assertions[k]
        nxt = int(a.dfa.transitions[d, byte])
        status = a.status[nxt]
        if status == FAILED:
            return None
        if status == PENDING:
            out.add((k, nxt))
    return frozenset(out)
