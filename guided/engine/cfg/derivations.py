"""Cheapest derivations: a grammar's rules read back from its LALR tables, and the cheapest
completion of a parser stack by finishing the rules in progress on it.

A `guided.ir.CfgIR` keeps only tables (a rule is its left-hand side and its length), but the
right-hand sides can be read back: every LR state is entered by one symbol (its *accessing*
symbol), and the states on any path of ``k`` moves into a state that reduces a rule of length
``k`` are entered by the rule's symbols, in order.  With them come each nonterminal's cheapest
yield (fewest bytes, each terminal spelt by its shortest string) and, for a parser stack, the
rules in progress on it: rule ``r`` with ``j`` symbols read is in progress at a node when the
``j`` nodes down to it were entered by the first ``j`` symbols of ``r`` and the node below them
has a goto on ``r``'s left-hand side.  Finishing one (the cheapest yield of the rest of ``r``,
then the goto) leaves a stack no higher, so a Dijkstra search over those moves ends after a
few nodes per level of the stack, where a search over terminals (`guided.engine.cfg.closing`)
meets every stack of a cost below the completion's: exponentially many when constructs nest.

The result is a terminal sequence for the grammar's rules; LALR(1) lookaheads, priorities and
the nesting bound may still refuse it, so callers verify it byte by byte.

>>> import guided
>>> ir = guided.Grammar('start: "(" start ")" | "x"').to_ir()
>>> d = Derivations(ir, lambda t: 1)
>>> sorted(ir.terminals[t].name for t in d.rhs[0] if t < len(ir.terminals))  # read back from the tables
['LPAR', 'RPAR']
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

from guided.engine.cfg.stacks import Stack, StackTable
from guided.ir import CfgIR

INF = float("inf")


class Derivations:
    """A grammar's right-hand sides, cheapest yields, and cheapest stack completions.

    Symbols: terminal ``t`` is ``t``; nonterminal ``A`` is ``len(ir.terminals) + A``.
    ``cost(t)`` is a terminal's length in bytes (None: it cannot be spelt, and is never used).
    """

    def __init__(self, ir: CfgIR, cost: Callable[[int], int | None]):
        self.ir = ir
        n_terms = self.n_terms = len(ir.terminals)
        access: list[int | None] = [None] * ir.num_states
        below: list[int | None] = [None] * ir.num_states  # one state with a move into each state
        for p, acts in enumerate(ir.actions):
            for t, a in acts.items():
                if a >= 0 and t >= 0:
                    access[a], below[a] = t, p
        for p, gos in enumerate(ir.gotos):
            for nt, q in gos.items():
                access[q], below[q] = n_terms + nt, p
        self.access = access
        reduced_in: dict[int, int] = {}  # rule -> a state that reduces it
        for q, acts in enumerate(ir.actions):
            for a in acts.values():
                if a < 0:
                    reduced_in.setdefault(-a - 1, q)
        # rhs[r]: the symbols of rule r, or None for a rule no state reduces (never finished).
        self.rhs: list[tuple[int, ...] | None] = []
        for r, (_, length) in enumerate(ir.rules):
            state: int | None = reduced_in.get(r)
            read: list[int] = []
            while state is not None and len(read) < length:
                sym = access[state]
                if sym is None:
                    break
                read.append(sym)
                state = below[state]
            self.rhs.append(tuple(reversed(read)) if len(read) == length and r in reduced_in else None)
        # Rules in progress, indexed by the symbol that entered the top node: (rule, symbols read).
        self.ending_with: dict[int, list[tuple[int, int]]] = {}
        for r, rhs in enumerate(self.rhs):
            for j, sym in enumerate(rhs or (), start=1):
                self.ending_with.setdefault(sym, []).append((r, j))
        self.start_symbol = next((n_terms + nt for nt, q in ir.gotos[ir.start_state].items() if q == ir.end_state),
                                 None)
        self._cheapest_yields(cost)

    def _cheapest_yields(self, cost: Callable[[int], int | None]) -> None:
        """Each nonterminal's cheapest yield, by rounds of relaxation; ties go to the shallower
        derivation, so that following the chosen rules always ends."""
        n_terms, ir = self.n_terms, self.ir
        self.term_cost: list[float] = []
        for t in range(n_terms):
            length = cost(t)
            self.term_cost.append(INF if length is None else float(length))
        best: list[tuple[float, int]] = [(INF, 0)] * len(ir.nonterminals)  # (bytes, derivation height)
        self.best_rule: list[int | None] = [None] * len(ir.nonterminals)
        changed = True
        while changed:
            changed = False
            for r, symbols in enumerate(self.rhs):
                if symbols is None:
                    continue
                total, height = 0.0, 0
                for s in symbols:
                    if s < n_terms:
                        total += self.term_cost[s]
                    else:
                        nt_total, nt_height = best[s - n_terms]
                        total += nt_total
                        height = max(height, nt_height)
                if total == INF:
                    continue
                lhs = ir.rules[r][0]
                if (total, height + 1) < best[lhs]:
                    best[lhs] = (total, height + 1)
                    self.best_rule[lhs] = r
                    changed = True
        self.nt_cost = [c for c, _ in best]

    def cost(self, symbols: tuple[int, ...]) -> float:
        n = self.n_terms
        return sum(self.term_cost[s] if s < n else self.nt_cost[s - n] for s in symbols)

    def terminals(self, symbols: tuple[int, ...]) -> list[int]:
        """The terminals of the cheapest yield of ``symbols`` (each of finite cost)."""
        out: list[int] = []
        todo = list(reversed(symbols))
        while todo:
            s = todo.pop()
            if s < self.n_terms:
                out.append(s)
            else:
                rule = self.best_rule[s - self.n_terms]
                assert rule is not None  # finite cost: a rule was chosen
                todo.extend(reversed(self.rhs[rule]))  # type: ignore[arg-type]
        return out

    def completion(self, stack: Stack, stacks: StackTable, can_end: Callable[[Stack], bool],
                   budget: list[int]) -> list[int] | None:
        """The terminals of the cheapest way to finish the rules in progress on ``stack`` until
        the parser can accept; None if none was found within ``budget[0]`` nodes (each node
        expanded is taken from it)."""
        n_terms, ir = self.n_terms, self.ir
        counter = itertools.count()
        # (cost, tie, node, path): path is a persistent list ((symbols to derive), rest)
        frontier: list[tuple[float, int, Stack, tuple]] = [(0.0, next(counter), stack, ())]
        seen: set[int] = set()
        while frontier and budget[0] > 0:
            cost, _, node, path = heapq.heappop(frontier)
            if node.uid in seen:
                continue
            seen.add(node.uid)
            budget[0] -= 1
            if can_end(node):
                pieces = []
                while path:
                    pieces.append(path[0])
                    path = path[1]
                out: list[int] = []
                for symbols in reversed(pieces):
                    out.extend(self.terminals(symbols))
                return out
            moves: list[tuple[tuple[int, ...], int, Stack]] = []  # (rest of the rule, lhs, node below)
            if node.parent is None:
                if self.start_symbol is not None:
                    moves.append(((self.start_symbol,), self.start_symbol - n_terms, node))
            else:
                for r, j in self.ending_with.get(self.access[node.state], ()):  # type: ignore[arg-type]
                    symbols = self.rhs[r]
                    assert symbols is not None
                    p: Stack | None = node
                    for k in range(j - 1, -1, -1):
                        if p is None or self.access[p.state] != symbols[k]:
                            break
                        p = p.parent
                    else:
                        if p is not None:
                            moves.append((symbols[j:], ir.rules[r][0], p))
            for rest, lhs, p in moves:
                target = ir.gotos[p.state].get(lhs)
                extra = self.cost(rest)
                if target is None or extra == INF:
                    continue
                nxt = stacks.node(target, p)
                if nxt.uid not in seen:
                    heapq.heappush(frontier, (cost + extra, next(counter), nxt, (rest, path)))
        return None
