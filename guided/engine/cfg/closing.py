"""Closing: what a configuration still needs (in tokens, at least and at most), forced bytes.

Budget-aware decoding (`guided.engine.closing`) needs two numbers per configuration:

- a true **lower bound** on the tokens of any completion: `Closer.mandatory` finds a mandatory
  subsequence (what every completion contains in order): the mandatory bytes of the pending
  lexeme (its closing quote, say), then, while the parser accepts exactly one terminal next
  (ignored whitespace aside), that terminal's mandatory bytes, and so on: required keys, colons,
  closing brackets up to the first place where the grammar branches (optional whitespace
  terminals, a schema grammar's ``_WS?``, stepped over); then, if every document of the grammar
  ends with the same terminal (a root object's ``}``, ``</tool_call>``), that one
  (`Closer.final_terminal`, from the LR tables: the symbol each state is entered by, the last
  symbol of each rule, the terminals each nonterminal can end with).  Past the branch, the
  terminals every path shifts (a required element after optional ones) are found by a dominator
  analysis over the parser stacks reached (`Closer._required_terminals`), and where the pending
  lexeme may end as a few terminals (``<`` of several elements) each is bounded on its own
  (`Closer.lower_bound` takes the least);
- a number of tokens known to be **enough**: a verified completion (`Closer.completion`: a
  terminal sequence that lets the parser accept, cheap in bytes: the cheapest where a bounded
  Dijkstra search over parser stacks finds it, else from the rules in progress on the stack, or
  layer by layer (`Closer._closing_terminals`), all the searches of one completion expanding
  `CLOSING_MAX_POPS` stacks at most; each terminal spelt by its shortest string over bytes that
  are tokens by themselves, verified byte by byte) and its fewest tokens; `Closer.completion_tokens` gives the
  tokens that start such a tokenization (what decoding falls back on when nothing else fits).

`Closer.forced_bytes` follows the configurations while exactly one byte keeps the text viable
(jump-forward decoding appends those bytes without sampling).
"""

from __future__ import annotations

import functools
import heapq
import itertools
from collections.abc import Iterator

import numpy as np

from guided.engine.cfg.derivations import Derivations
from guided.engine.cfg.masks import MaskAssembler
from guided.engine.cfg.recognizer import Config, Recognizer
from guided.engine.cfg.stacks import Stack
from guided.engine.closing import mandatory_bytes, prefix_tokens, subsequence_cover, suffix_tokenizations
from guided.engine.token_table import TokenTable
from guided.engine.tuning import (
    CLOSER_SEARCH_LIMIT,
    CLOSING_EXACT_POPS,
    CLOSING_MAX_POPS,
    COMPLETION_MEMO,
    FORCED_BYTES_LIMIT,
    MANDATORY_MAX_STATES,
    MANDATORY_MAX_SYMBOLS,
    REQUIRED_SEARCH_STACKS,
)
from guided.ir import DEAD, END
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



_WHITESPACE = frozenset(b" \t\r\n")


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
        self._completion_tokens: dict[tuple[int, int], tuple[int, list[int]]] = {}
        self._shortest_cache: dict[int, bytes | None] = {}
        self._index: dict[bytes, list[int]] | None = None
        self._single = self._single_bytes()
        self._forced: dict[tuple[int, int], bytes] = {}
        self._mandatory: dict[tuple[int, int, bool], tuple] = {}
        self._terminal_mandatory: dict[int, list[frozenset]] = {}
        self._closers_memo: dict[int, tuple[list[int], bool]] = {}
        self._rule_data: tuple | None = None
        self._fillers: dict[int, bool] = {}
        self._required: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._ends: dict[int, set[int]] | None = None
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

    def mandatory(self, stack: Stack, lex: int, search: bool = True) -> tuple[frozenset, ...]:
        """A mandatory subsequence of every completion of ``(stack, lex)`` (see the module
        docstring); ``search=False`` leaves out the terminals required after a branch (cheaper)."""
        return self._mandatory_branches(stack, lex, search)[0]

    def lower_bound(self, stack: Stack, lex: int, search: bool = True) -> int:
        """A true lower bound on the tokens of any completion of ``(stack, lex)`` (0 when it may
        end now): where the pending lexeme may still end as one of a few terminals, the least of
        their branches' bounds."""
        if self.accepts_end(stack, lex):
            return 0
        merged, branches = self._mandatory_branches(stack, lex, search)
        cover = subsequence_cover(self.table)
        return max(1, min(cover.cover(b) for b in branches) if branches else cover.cover(merged))

    def token_bounds(self, stack: Stack, lex: int) -> tuple[np.ndarray, np.ndarray]:
        """For every token id: a true lower bound on the tokens a completion needs after it (what
        the token's bytes leave of the mandatory subsequence; per branch of the pending lexeme,
        the least), and how far its bytes advance into that subsequence (0: not at all)."""
        merged, branches = self._mandatory_branches(stack, lex, True)
        cover = subsequence_cover(self.table)
        if branches:  # each completion is in some branch: the least of the branches' bounds
            bounds = np.minimum.reduce([cover.token_bounds(branch) for branch in branches])
        else:
            bounds = cover.token_bounds(merged)
        return bounds, cover.advances(merged)

    def _mandatory_branches(self, stack: Stack, lex: int, search: bool):
        """(a mandatory subsequence of every completion, the mandatory subsequences of the
        completions where the pending lexeme ends as each of its few possible terminals)."""
        key = (stack.uid, lex, search)
        found = self._mandatory.get(key)
        if found is not None:
            return found
        out: list[frozenset] = []
        lexers, ignore = self.lexers, self.ir.ignore
        following: Stack | None = stack
        branches: list[tuple[frozenset, ...]] = []
        if lex not in lexers.start_states:
            out += mandatory_bytes(self._lexer_row, self._may_end, lex)
            terminals = self._lexeme_terminals(lex)
            if terminals is None or len(terminals) != 1:
                following = None
                if terminals and len(terminals) <= 8 and not terminals & ignore:
                    # A "<" that may open any of several elements: each ending, on its own.
                    afters = [self.feed(stack, t) for t in sorted(terminals)]
                    branches = [tuple((out + self._continuation(a, search))[:MANDATORY_MAX_SYMBOLS])
                                for a in afters if a is not None]
            else:
                (term,) = terminals
                following = stack if term in ignore else self.feed(stack, term)
        if branches:
            # Every branch's sequence is covered by the union of theirs, position by position.
            merged = tuple(frozenset().union(*sets) for sets in zip(*branches))
        else:
            merged = tuple((out + self._continuation(following, search))[:MANDATORY_MAX_SYMBOLS])
        found = self._mandatory[key] = (merged, branches)
        return found

    def _continuation(self, following: Stack | None, search: bool) -> list[frozenset]:
        """A mandatory subsequence of what the parser shifts from stack ``following`` on."""
        out: list[frozenset] = []
        # The parser's stacks after the mandatory terminals so far: one, or a few where optional
        # whitespace terminals (``_WS?`` in a grammar) were stepped over.
        frontier: list[Stack] = [] if following is None else [following]
        while frontier and len(out) < MANDATORY_MAX_SYMBOLS:
            step = self._next_mandatory(frontier)
            if step is None:
                break
            term, frontier = step
            out += self._terminal_bytes(term)
        before_branch = list(out)
        if frontier and not any(self.can_end(f) for f in frontier):
            # Closers every stack agrees on (each stack's are mandatory on its own paths).
            found = [self._closers(f) for f in frontier]
            closers = found[0][0] if all(c == found[0][0] for c, _ in found) else []
            final_after = all(f for _, f in found)
            for term in closers:
                out += self._terminal_bytes(term)
            if (final_after or not closers) and self.final_terminal is not None:
                # After the branch, and after the closers: a later occurrence.  (Where the last
                # closer's rule is reduced to the root without another shift, it is that closer.)
                out += self._terminal_bytes(self.final_terminal)
        if search and frontier and len(out) < MANDATORY_MAX_SYMBOLS:
            # Terminals every path from the branch shifts (a required element after optional
            # ones), in order, before the grammar's last terminal: another mandatory
            # subsequence; the one that needs more tokens is kept.
            final = self.final_terminal
            chain = [t for t in self._required_terminals(frontier) if t != final]
            if chain:
                seq = list(before_branch)
                for term in chain:
                    seq += self._terminal_bytes(term)
                if final is not None:
                    seq += self._terminal_bytes(final)
                cover = subsequence_cover(self.table)
                if cover.cover(tuple(seq[:MANDATORY_MAX_SYMBOLS])) > cover.cover(tuple(out[:MANDATORY_MAX_SYMBOLS])):
                    out = seq
        return out

    def _required_terminals(self, frontier: list[Stack]) -> tuple[int, ...]:
        """Terminals shifted on every path from these stacks to a complete document (ignored
        ones aside), in an order their first occurrences always keep: a dominator analysis over
        the stacks they reach, then for each such terminal the ones that can come before it.
        Empty where there are more than `REQUIRED_SEARCH_STACKS` stacks (sound: nothing claimed)."""
        key = tuple(sorted(f.uid for f in frontier))
        found = self._required.get(key)
        if found is not None:
            return found
        lexers, ignore = self.lexers, self.ir.ignore
        nodes: dict[int, Stack] = {f.uid: f for f in frontier}
        edges: list[tuple[int, int, int]] = []
        order = list(frontier)
        for stack in order:
            for t in lexers.sets[lexers.set_of_state[stack.state]]:
                if t in ignore:
                    continue
                nxt = self.feed(stack, t)
                if nxt is None:
                    continue
                edges.append((stack.uid, t, nxt.uid))
                if nxt.uid not in nodes:
                    if len(nodes) >= REQUIRED_SEARCH_STACKS:
                        self._required[key] = ()
                        return ()
                    nodes[nxt.uid] = nxt
                    order.append(nxt)
        must: dict[int, frozenset | None] = {uid: None for uid in nodes}  # None: every terminal
        for f in frontier:
            must[f.uid] = frozenset()
        changed = True
        while changed:  # the sets only shrink: a fixpoint
            changed = False
            for a, t, b in edges:
                came = must[a]
                if came is None or b in key:
                    continue
                before = must[b]
                new = came | {t} if before is None else before & (came | {t})
                if new != must[b]:
                    must[b] = new
                    changed = True
        ends = [m for uid, stack in nodes.items() if self.can_end(stack) and (m := must[uid]) is not None]
        required = sorted(frozenset.intersection(*ends)) if ends else []
        # T precedes U (first occurrences) when no U is shifted on the stacks reached avoiding T.
        out_edges: dict[int, list[tuple[int, int]]] = {}
        for a, t, b in edges:
            out_edges.setdefault(a, []).append((t, b))
        seen_without: dict[int, set[int]] = {}
        for term in required:
            reached, todo, labels = set(key), list(key), set()
            for a in todo:
                for t, b in out_edges.get(a, ()):
                    if t == term:
                        continue
                    labels.add(t)
                    if b not in reached:
                        reached.add(b)
                        todo.append(b)
            seen_without[term] = labels
        ranked = sorted(required, key=lambda t: -sum(u not in seen_without[t] for u in required))
        chain: list[int] = []
        for term in ranked:
            if all(term not in seen_without[c] for c in chain):
                chain.append(term)
        result = self._required[key] = tuple(chain)
        return result

    def _next_mandatory(self, frontier: list[Stack]) -> tuple[int, list[Stack]] | None:
        """The one terminal every continuation of these stacks shifts next, optional whitespace
        terminals (`_is_filler`) stepped over, and the stacks after it; None where the stacks may
        end, or more than one terminal may come next."""
        lexers, ignore = self.lexers, self.ir.ignore
        expanded: list[Stack] = []
        todo = list(frontier)
        for depth in range(3):
            fillers: list[Stack] = []
            for stack in todo:
                if self.can_end(stack):
                    return None
                expanded.append(stack)
                for t in lexers.sets[lexers.set_of_state[stack.state]]:
                    if t not in ignore and self._is_filler(t):
                        after = self.feed(stack, t)
                        if after is not None:
                            fillers.append(after)
            if not fillers:
                break
            if depth == 2 or len(expanded) + len(fillers) > 16:
                return None
            todo = fillers
        term = None
        for stack in expanded:
            for t in lexers.sets[lexers.set_of_state[stack.state]]:
                if t in ignore or self._is_filler(t) or t == term or self.feed(stack, t) is None:
                    continue
                if term is not None:
                    return None
                term = t
        if term is None:
            return None
        shifted: dict[int, Stack] = {}
        for stack in expanded:
            nxt = self.feed(stack, term)
            if nxt is not None:
                shifted.setdefault(nxt.uid, nxt)
        return term, list(shifted.values())

    def _is_filler(self, term: int) -> bool:
        """Does terminal ``term`` spell whitespace only (a grammar's optional ``_WS``)?"""
        found = self._fillers.get(term)
        if found is None:
            dfa = self.ir.terminals[term].dfa
            used = np.flatnonzero((dfa.transitions != DEAD).any(axis=0))
            found = self._fillers[term] = bool(used.size) and set(used.tolist()) <= _WHITESPACE
        return found

    def _closers(self, stack: Stack) -> tuple[list[int], bool]:
        """Terminals that close the open rules of ``stack``, innermost first, each a separate
        occurrence in every completion; and whether the grammar's final terminal
        (`final_terminal`) is a later occurrence still.

        The parser's future is explored on the stack's own states (lookaheads ignored, which only
        adds paths), with every derivation of a nonterminal summarised as one move labelled by
        the terminals it can end with, so the stacks explored stay low.  A node of the stack that
        every path pops gets a closer when the last terminal shifted before its pop is, on every
        path, the same terminal, shifted by a move made after everything above the node was
        reduced (so that two nodes never claim one occurrence); nodes popped together count once,
        for the topmost.  Unsound cases are left out: a search that does not finish in
        `CLOSER_SEARCH_LIMIT` steps gives no closer at all.
        """
        key = stack.uid
        found = self._closers_memo.get(key)
        if found is not None:
            return found
        ir = self.ir
        base: list[Stack] = []
        node = stack
        while node.parent is not None:
            base.append(node)
            node = node.parent
        base.reverse()  # bottom first; the root stays below
        root_state, n = node.state, len(base)
        ends, rules_at = self._rule_tables()
        limit_height = n + self._max_rule_length() + 1
        unknown = -1
        labels: dict[int, set] = {i: set() for i in range(n)}
        topmost_only = [True] * n
        final_ok = True
        # A state of the search: (relative stack of (LR state, tag), label of the move that pushed
        # the top, a fresh move since the last pop of an original node); tag i >= 0: original
        # node i, -1: pushed by later moves only, -2: covering original nodes.
        start = (tuple((b.state, i) for i, b in enumerate(base)), None, False)
        seen = {start}
        todo = [start]

        def push(state) -> None:
            if state not in seen:
                seen.add(state)
                todo.append(state)

        def accepted(rel, label, fresh_since) -> None:
            nonlocal final_ok
            for _, tag in rel:
                if tag >= 0:
                    labels[tag].add(unknown)  # a path on which this node is never popped
            final_ok = final_ok and fresh_since

        while todo:
            if len(seen) > CLOSER_SEARCH_LIMIT:
                found = self._closers_memo[key] = ([], False)
                return found
            rel, label, fresh_since = todo.pop()
            q = rel[-1][0] if rel else root_state
            if q == ir.end_state:
                accepted(rel, label, fresh_since)
            for r in rules_at[q]:
                lhs, length = ir.rules[r]
                if length > len(rel):
                    continue  # would pop the root
                popped = rel[len(rel) - length:]
                originals = [tag for _, tag in popped if tag >= 0]
                top_fresh = bool(popped) and popped[-1][1] == -1
                for j, tag in enumerate(originals):
                    labels[tag].add(label if top_fresh and label is not None else unknown)
                    if j != len(originals) - 1:
                        topmost_only[tag] = False
                rest = rel[: len(rel) - length]
                goto = ir.gotos[rest[-1][0] if rest else root_state].get(lhs)
                if goto is None:
                    continue
                # A node made only of later moves is fresh, its last terminal the popped top's.
                fresh = length > 0 and all(t == -1 for _, t in popped)
                push((rest + ((goto, -1 if fresh else -2),), label if fresh else None,
                      fresh_since and not originals))
            if len(rel) >= limit_height:
                continue
            for t, a in ir.actions[q].items():
                if a >= 0 and t != END:
                    push((rel + ((a, -1),), frozenset((t,)), True))
            for nt, g in ir.gotos[q].items():
                push((rel + ((g, -1),), ends.get(nt), True))
        out: list[int] = []
        for i in range(n - 1, -1, -1):
            options = labels[i]
            if len(options) != 1 or not topmost_only[i]:
                continue
            (only,) = options
            if only == unknown or only is None or len(only) != 1:
                continue
            out.append(next(iter(only)))
        found = self._closers_memo[key] = (out, final_ok and bool(seen))
        return found

    def _rule_tables(self):
        """(terminals each nonterminal can end with, as a frozenset or None when unknown;
        the rules each state can reduce)."""
        if self._rule_data is None:
            ir = self.ir
            ends_sets = self._ends_of_nonterminals()
            ends = {nt: (frozenset(v) if v and -2 not in v else None) for nt, v in ends_sets.items()}
            rules_at = [sorted({-a - 1 for a in acts.values() if a < 0}) for acts in ir.actions]
            self._rule_data = (ends, rules_at)
        return self._rule_data

    def _max_rule_length(self) -> int:
        return max((length for _, length in self.ir.rules), default=0)

    def _ends_of_nonterminals(self) -> dict[int, set[int]]:
        """The terminals each nonterminal's derivations can end with (-2: possibly none, or unknown)."""
        if self._ends is not None:
            return self._ends
        ir = self.ir
        entered_by, last_of_rule = self._entered_by()
        unknown = -2
        ends: dict[int, set[int]] = {nt: set() for nt in range(len(ir.nonterminals))}
        changed = True
        while changed:  # a fixpoint over the rules
            changed = False
            for r, (lhs, length) in enumerate(ir.rules):
                last = last_of_rule.get(r)
                new = {unknown} if length == 0 or last is None else (
                    {last[1]} if last[0] else ends.get(last[1], {unknown}))
                if not new <= ends[lhs]:
                    ends[lhs] |= new
                    changed = True
        self._ends = ends
        return ends

    def _entered_by(self):
        """(state -> (is a terminal, the symbol it is entered by); rule -> its last symbol)."""
        ir = self.ir
        entered_by: dict[int, tuple[bool, int]] = {}
        for acts, gotos in zip(ir.actions, ir.gotos):
            for t, a in acts.items():
                if a >= 0 and t != END:
                    entered_by[a] = (True, t)
            for nt, g in gotos.items():
                entered_by[g] = (False, nt)
        last_of_rule: dict[int, tuple[bool, int]] = {}
        for state, acts in enumerate(ir.actions):
            for a in acts.values():
                if a < 0 and ir.rules[-a - 1][1] > 0 and state in entered_by:
                    last_of_rule[-a - 1] = entered_by[state]
        return entered_by, last_of_rule

    @functools.cached_property
    def final_terminal(self) -> int | None:
        """The terminal every document of the grammar ends with, if there is one (None: several,
        or not known)."""
        ir = self.ir
        entered_by, _ = self._entered_by()
        unknown = -2
        ends = self._ends_of_nonterminals()
        finals: set[int] = set()
        for state, acts in enumerate(ir.actions):
            if END in acts or state == ir.end_state:
                if state not in entered_by:
                    return None  # the empty document
                is_term, sym = entered_by[state]
                finals |= {sym} if is_term else ends.get(sym, {unknown})
        return finals.pop() if len(finals) == 1 and unknown not in finals else None

    def _lexer_row(self, state: int) -> np.ndarray:
        return self.lexers.ready(state)[state]

    def _may_end(self, state: int) -> bool:
        return bool(self.lexers.chosen[state] >= 0)

    def _lexeme_terminals(self, lex: int) -> set[int] | None:
        """The terminals the pending lexeme may still end as (None: too many states to tell)."""
        seen, order, out = {lex}, [lex], set()
        for state in order:
            term = int(self.lexers.chosen[state])
            if term >= 0:
                out.add(term)
            row = self._lexer_row(state)
            for nxt in np.unique(row[row != DEAD]).tolist():
                if nxt not in seen:
                    if len(seen) >= MANDATORY_MAX_STATES:
                        return None
                    seen.add(nxt)
                    order.append(nxt)
        return out

    def _terminal_bytes(self, term: int) -> list[frozenset]:
        found = self._terminal_mandatory.get(term)
        if found is None:
            dfa = self.ir.terminals[term].dfa
            found = self._terminal_mandatory[term] = mandatory_bytes(
                dfa.transitions.__getitem__, lambda s: bool(dfa.accepting[s]), dfa.initial)
        return found

    def completion_tokens(self, stack: Stack, lex: int) -> tuple[int, list[int]]:
        """The fewest tokens of the verified completion (``UNREACHABLE`` without one) and the
        tokens that start a tokenization that short."""
        from guided.engine.closing import UNREACHABLE

        key = (stack.uid, lex)
        found = self._completion_tokens.get(key)
        if found is not None:  # asked at every step near the end of the budget: memoised
            return found[0], list(found[1])
        completion = self.completion(stack, lex)
        if completion is None:
            found = (UNREACHABLE, [])
        elif not completion:
            found = (0, [])
        else:
            suffixes = suffix_tokenizations(self.table, completion)
            best = suffixes[0]
            starts = [t for t, n in prefix_tokens(self.table, completion) if 1 + suffixes[n] == best]
            words = self.words(stack, lex)
            found = (best, [t for t in starts if words[t >> 5] >> (t & 31) & 1])
        if len(self._completion_tokens) >= COMPLETION_MEMO:  # a long-lived grammar: start over
            self._completion_tokens.clear()
        self._completion_tokens[key] = found
        return found[0], list(found[1])

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
        if len(self._completions) >= COMPLETION_MEMO:
            self._completions.clear()
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
