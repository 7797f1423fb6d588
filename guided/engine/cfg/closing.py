"""Closing: short verified completions of a document, the tokens that start them, forced bytes.

Budget-aware decoding needs, near the end of the token budget, the tokens after which the
document can still be finished in time (`Closer.closing_tokens`).  The completion is a terminal
sequence that lets the parser accept, cheap in bytes (the cheapest where a bounded Dijkstra
search over parser stacks finds it; else from the rules in progress on the stack, or layer by
layer: `Closer._closing_terminals`), each terminal spelt by its shortest string over bytes that
are tokens by themselves, and verified byte by byte; so ``len(completion)`` single-byte tokens
always finish it.  All the searches of one completion expand `CLOSING_MAX_POPS` stacks at most.
`Closer.forced_bytes` follows the configurations while exactly one byte keeps the text viable
(jump-forward decoding appends those bytes without sampling).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

import numpy as np

from guided.engine.cfg.derivations import Derivations
from guided.engine.cfg.masks import MaskAssembler
from guided.engine.cfg.recognizer import Config, Recognizer
from guided.engine.cfg.stacks import Stack
from guided.engine.token_table import TokenTable
from guided.engine.tuning import CLOSING_EXACT_POPS, CLOSING_MAX_POPS, FORCED_BYTES_LIMIT
from guided.ir import DEAD
from guided.vocab import Vocabulary


def shortest_path(transitions: np.ndarray, start: int, accepting: np.ndarray, usable: np.ndarray) -> bytes | None:
    """Shortest byte string from ``start`` to an accepting state over ``usable`` bytes (BFS)."""
    paths = {start: b""}
    queue = [start]
    for state in queue:
        if accepting[state]:
            return paths[state]
        for b in np.flatnonzero(usable & (transitions[state] != DEAD)).tolist():
            nxt = int(transitions[state, b])
            if nxt not in paths:
                paths[nxt] = paths[state] + bytes([b])
                queue.append(nxt)
    return None



def _holds(stack: Stack, node: Stack) -> bool:
    """Is ``node`` one of the nodes of ``stack`` (interned: the same object at its height)?"""
    while stack.height > node.height:
        stack = stack.parent  # type: ignore[assignment]  # a height above 0 has a parent
    return stack is node


def _deepest_kept(stack: Stack, original: Stack) -> Stack:
    """The highest node of ``original`` that ``stack`` still holds (at least the bottom one)."""
    while stack.height > original.height:
        stack = stack.parent  # type: ignore[assignment]
    while original.height > stack.height:
        original = original.parent  # type: ignore[assignment]
    while stack is not original:
        stack, original = stack.parent, original.parent  # type: ignore[assignment]
    return stack


class Closer:
    """Completions and forced bytes of one grammar's configurations, memoised."""

    def __init__(self, recognizer: Recognizer, masks: MaskAssembler, vocab: Vocabulary, table: TokenTable):
        self.ir = recognizer.ir
        self.vocab = vocab
        self.table = table
        self.lexers = recognizer.lexers
        self.feed = recognizer.feed
        self.can_end = recognizer.can_end
        self.step = recognizer.step
        self.is_viable = recognizer.is_viable
        self.accepts_end = recognizer.accepts_end
        self.words = masks.words
        self._completions: dict[tuple[int, int], bytes | None] = {}
        self._shortest_cache: dict[int, bytes | None] = {}
        self._index: dict[bytes, list[int]] | None = None
        self._single = self._single_bytes()
        self._forced: dict[tuple[int, int], bytes] = {}
        self._derived: Derivations | None = None
        self.stacks = recognizer.stacks

    def closing_tokens(self, stack: Stack, lex: int, spare: int) -> list[int]:
        """Tokens that start a verified shortest completion and leave it at most ``spare`` bytes long.

        The completion only uses bytes that exist as single-byte tokens, so ``spare`` more
        tokens are always enough to finish it.
        """
        completion = self.completion(stack, lex)
        if completion is None:
            return []
        index = self._token_index()
        out: list[int] = []
        for k in range(1, len(completion) + 1):
            if len(completion) - k <= spare:
                out.extend(index.get(completion[:k], ()))
        words = self.words(stack, lex)
        return [t for t in out if words[t >> 5] >> (t & 31) & 1]

    def completion(self, stack: Stack, lex: int) -> bytes | None:
        """A short byte string that completes the document from here (verified), or None."""
        key = (stack.uid, lex)
        if key in self._completions:
            return self._completions[key]
        best = None
        if lex in self.lexers.start_states:
            options = [(b"", stack)]
        else:
            options = []
            for term, pending in self._lexeme_endings(lex).items():
                following = stack if term in self.ir.ignore else self.feed(stack, term)
                if following is not None:
                    options.append((pending, following))
        separator = self._separator()
        budget = [CLOSING_MAX_POPS]  # stacks all the searches of this completion may expand
        for pending, following in options:
            for terms in self._closing_terminals(following, budget):
                # The searches take only terminals with a shortest string.
                pieces = [p for p in (self._shortest(t) for t in terms) if p is not None]
                shorter = verified = False
                for sep in (b"", separator):
                    if sep is None:
                        continue
                    candidate = pending + sep.join([b""] + pieces) if pieces else pending
                    if best is None or len(candidate) < len(best):
                        shorter = True
                        if self._completes(stack, lex, candidate):
                            best, verified = candidate, True
                            break
                if verified or not shorter:
                    break
        self._completions[key] = best
        return best

    def _completes(self, stack: Stack, lex: int, data: bytes) -> bool:
        config: Config = (stack, lex)
        for b in data:
            moved = self.step(config[0], config[1], b)
            if moved is None:
                return False
            config = moved
        return self.accepts_end(*config)

    def _closing_terminals(self, stack: Stack, budget: list[int]) -> Iterator[list[int]]:
        """Terminal sequences (cheap in bytes) that let the parser accept, best first, from three
        searches that expand ``budget[0]`` stacks at most, all of them together.

        1. The cheapest, by Dijkstra over stacks and terminals (`CLOSING_EXACT_POPS` stacks at
           most).  Its frontier holds every stack of a cost below the completion's: exponentially
           many where terminals open constructs of their own (a fuzzed grammar with brackets
           nested five deep spent 20,000 stacks on each budget mask without finding one; the
           shipped ``tool_call`` grammar needs more than 1,000 to close ``</tool_call>``).
        2. The cheapest way to finish the rules in progress on the stack
           (`guided.engine.cfg.derivations`): a few stacks per level, but what LALR(1)
           lookaheads, priorities or the nesting bound refuse is found only when verified.
        3. By layers: the cheapest sequence that lets the parser accept or pops the deepest node
           of ``stack`` still in place, from where that one ends, and so on down to the bottom;
           the sequences joined are a completion, though not always the cheapest.
        """
        exact = self._cheapest(stack, None, budget, CLOSING_EXACT_POPS)
        if exact is not None:
            yield exact[0]
        if budget[0] > 0:
            derived = self._derivations().completion(stack, self.stacks, self.can_end, budget)
            if derived is not None:
                yield derived
        terms: list[int] = []
        node = stack
        while budget[0] > 0:
            kept = _deepest_kept(node, stack)
            # The bottom node is never popped: below it only the end of the input is left.
            found = self._cheapest(node, kept if kept.parent is not None else None, budget, budget[0])
            if found is None:
                return
            layer, node = found
            terms.extend(layer)
            if self.can_end(node):
                yield terms
                return

    def _derivations(self) -> Derivations:
        if self._derived is None:
            self._derived = Derivations(self.ir, lambda t: None if (s := self._shortest(t)) is None else len(s))
        return self._derived

    def _cheapest(self, stack: Stack, pop: Stack | None, budget: list[int],
                  max_pops: int) -> tuple[list[int], Stack] | None:
        """The cheapest terminal sequence (in bytes) after which the parser can accept, or no
        longer holds ``pop`` (a node of ``stack``), and the stack it leaves; Dijkstra over stacks,
        expanding at most ``max_pops`` of them (each one taken from ``budget[0]``)."""
        counter = itertools.count()
        frontier: list[tuple[int, int, Stack, tuple[int, ...]]] = [(0, next(counter), stack, ())]
        seen: set[int] = set()
        while frontier and max_pops > 0 and budget[0] > 0:
            max_pops -= 1
            budget[0] -= 1
            cost, _, node, terms = heapq.heappop(frontier)
            if node.uid in seen:
                continue
            seen.add(node.uid)
            if self.can_end(node) or (pop is not None and not _holds(node, pop)):
                return list(terms), node
            for term in self.lexers.sets[self.lexers.set_of_state[node.state]]:
                if term in self.ir.ignore:
                    continue
                shortest = self._shortest(term)
                if shortest is None:
                    continue
                nxt = self.feed(node, term)
                if nxt is not None and nxt.uid not in seen:
                    heapq.heappush(frontier, (cost + len(shortest), next(counter), nxt, terms + (term,)))
        return None

    def _single_bytes(self) -> np.ndarray:
        """Which bytes are tokens by themselves (the trie's first level nodes that end a token)."""
        t = self.table
        single = np.zeros(256, dtype=bool)
        if t.level_bytes:
            first = t.level_bytes[0]
            single[first[t.node_token[: first.size] >= 0]] = True
        return single

    def _shortest(self, term: int) -> bytes | None:
        """A shortest string of a terminal, using only bytes that are tokens by themselves."""
        if term not in self._shortest_cache:
            dfa = self.ir.terminals[term].dfa
            self._shortest_cache[term] = shortest_path(dfa.transitions, dfa.initial, dfa.accepting, self._single)
        return self._shortest_cache[term]

    def _lexeme_endings(self, lex: int) -> dict[int, bytes]:
        """For each terminal the pending lexeme can end as, the shortest bytes that end it so."""
        out: dict[int, bytes] = {}
        paths = {lex: b""}
        queue = [lex]
        for state in queue:
            table, chosen = self.lexers.ready(state), self.lexers.chosen
            term = int(chosen[state])
            if term >= 0 and term not in out:
                out[term] = paths[state]
            for b in np.flatnonzero(self._single & (table[state] != DEAD)).tolist():
                nxt = int(table[state, b])
                if nxt not in paths:
                    paths[nxt] = paths[state] + bytes([b])
                    queue.append(nxt)
        return out

    def _separator(self) -> bytes | None:
        options = [o for o in (self._shortest(t) for t in self.ir.ignore) if o]
        return min(options, key=len) if options else None

    def _token_index(self) -> dict[bytes, list[int]]:
        if self._index is None:
            index: dict[bytes, list[int]] = {}
            for token_id in self.table.token_ids.tolist():
                index.setdefault(self.vocab.token_bytes[token_id], []).append(token_id)
            self._index = index
        return self._index

    def forced_bytes(self, stack: Stack, lex: int) -> bytes:
        key = (stack.uid, lex)
        forced = self._forced.get(key)
        if forced is None:
            out = bytearray()
            config: Config | None = (stack, lex)
            while config is not None and len(out) < FORCED_BYTES_LIMIT and not self.accepts_end(*config):
                options = [(b, nxt) for b in range(256)
                           if (nxt := self.step(config[0], config[1], b)) is not None and self.is_viable(*nxt)]
                if len(options) != 1:
                    break
                out.append(options[0][0])
                config = options[0][1]
            forced = self._forced[key] = bytes(out)
        return forced
