"""Mask assembly: a configuration's allowed tokens from per-lexer-state parts and per-stack walks.

Masks walk the vocabulary's byte trie level by level (see `guided.engine.token_table`).  Within
a lexeme a step is one table lookup; where a byte cannot extend the current lexeme the lexeme
ends (greedy lexing), its terminal is fed to the parser (reductions, then a shift, memoised per
stack) and the byte starts the next lexeme.  What depends on the lexer state alone
(`LexemeInfo`: the tokens that stay inside the lexeme, those whose first byte ends it, and the
trie nodes deeper down where it ends) is computed once per lexer state and shared between
grammars (`guided.engine.cfg.sharing`); only the rest is resolved per stack, per distinct
(stack, terminal) pair, never per token.  Finished masks are cached per configuration.
"""

from __future__ import annotations

import time
import weakref
from typing import NamedTuple

import numpy as np

from guided.engine.lru import LockedLru
from guided.engine.automaton import MaskStats
from guided.engine.bitmask import clear_bits, pack, set_bits
from guided.engine.cfg.recognizer import Recognizer
from guided.engine.cfg.sharing import InsideByEnd, LexemeInfo, shared, to_local
from guided.engine.cfg.stacks import Stack
from guided.engine.token_table import (SCALAR_WORK, Seeds, TokenTable, children_of, subtree_tokens, trie_lists,
                                       trie_nodes, trie_order, walk_automaton, walk_divergence, with_duplicate_ids)
from guided.engine.tuning import DIVERGENCE_BUDGET, MASK_CACHE_SIZE, REFERENCE_MIN_BYTES
from guided.ir import DEAD
from guided.vocab import Vocabulary


class StackSeeds(NamedTuple):
    """Trie nodes where a walk starts a new lexeme, each with its parser stack.

    Node ``node[i]`` of level ``level[i]`` is read with the lexer in state ``lex[i]`` (a lexeme
    boundary of ``stacks[stack[i]]``, the list the walk is given).
    """

    level: np.ndarray
    node: np.ndarray
    lex: np.ndarray
    stack: np.ndarray


_first_byte_cache: "weakref.WeakKeyDictionary[TokenTable, np.ndarray]" = weakref.WeakKeyDictionary()


def first_byte_words(vocab: Vocabulary, table: TokenTable) -> np.ndarray:
    """``[256, words]``: packed masks of the text tokens starting with each byte (cached per vocabulary)."""
    words = _first_byte_cache.get(table)
    if words is None:
        first = np.full(vocab.size, -1, dtype=np.int64)
        first[table.token_ids] = [vocab.token_bytes[i][0] for i in table.token_ids.tolist()]
        words = _first_byte_cache[table] = np.stack([pack(first == b) for b in range(256)])
    return words


class MaskAssembler:
    """The masks of one grammar's configurations, computed on first use and cached."""

    def __init__(self, recognizer: Recognizer, vocab: Vocabulary, table: TokenTable, eos_words: np.ndarray,
                 stats: MaskStats):
        self.ir = recognizer.ir
        self.vocab = vocab
        self.table = table
        self.lexers = recognizer.lexers
        self.eos_words = eos_words
        self.stats = stats
        # The configuration semantics, bound once: these run per byte of the scalar walks.
        self.feed = recognizer.feed
        self.step = recognizer.step
        self.is_viable = recognizer.is_viable
        self.viable = recognizer.viable
        self.viable_terminals = recognizer.viable_terminals
        self.accepts_end = recognizer.accepts_end
        self._masks: LockedLru[tuple[int, int], np.ndarray] = LockedLru(MASK_CACHE_SIZE)
        self._lexemes: dict[int, LexemeInfo] = {}
        self._by_end: dict[int, InsideByEnd] = {}
        self._first_byte = first_byte_words(vocab, table)

    def words(self, stack: Stack, lex: int) -> np.ndarray:
        """The packed mask of configuration ``(stack, lex)`` (cached; do not modify it)."""
        key = (stack.uid, lex)
        words = self._masks.get(key)
        if words is not None:
            return words
        start = time.perf_counter()
        words = self._assemble(stack, lex)
        self.stats.states_computed += 1
        self.stats.seconds += time.perf_counter() - start
        self._masks.put(key, words)
        return words

    def _assemble(self, stack: Stack, lex: int) -> np.ndarray:
        """The mask from the per-lexer-state parts, resolving only what depends on the stack."""
        info = self.lexeme_info(lex)
        if self.viable_terminals(stack) is None:
            words = info.inside.copy()
        else:  # LALR(1) lookaheads this stack cannot take: keep lexemes it can still finish
            words = np.zeros_like(info.inside)
            for end, group in self.inside_by_end(lex).items():
                if self.is_viable(stack, end):
                    words |= group
        terminal = int(self.lexers.chosen[lex])
        if terminal >= 0 and info.after_end is not None:
            following = stack if terminal in self.ir.ignore else self.feed(stack, terminal)
            if following is not None:
                start = self.lexers.start(following.state, terminal in self.ir.ignore)
                words |= info.after_end & self.words(following, start)
        seeds = info.seeds
        if seeds.node.size:
            # Each seed ends the lexeme at its byte; that byte starts the next lexeme on the
            # stack the finished terminal leads to.
            terms = self.lexers.chosen[seeds.state]
            stacks: list[Stack] = []
            where: dict[int, int] = {}
            stk = np.full(terms.size, -1, dtype=np.int64)
            starts = np.zeros(terms.size, dtype=np.int32)
            for term in np.unique(terms).tolist():
                following = stack if term in self.ir.ignore else self.feed(stack, term)
                if following is None:
                    continue
                if following.uid not in where:
                    where[following.uid] = len(stacks)
                    stacks.append(following)
                sel = terms == term
                stk[sel] = where[following.uid]
                starts[sel] = self.lexers.start(following.state, term in self.ir.ignore)
            keep = stk >= 0
            if keep.any():
                set_bits(words, self._walk(stacks, StackSeeds(seeds.level[keep], seeds.node[keep], starts[keep],
                                                              stk[keep])))
        if self.accepts_end(stack, lex):
            words |= self.eos_words
        return words

    def _walk(self, stacks: list[Stack], seeds: StackSeeds) -> np.ndarray:
        """Tokens readable from the seeds, as a frontier walk down the trie with boundary handling.

        Only live nodes are expanded, so the cost follows the part of the trie that survives.
        """
        t, lx = self.table, self.lexers
        table, chosen, ignore = lx.table, lx.chosen, self.ir.ignore
        seed_level, seed_node, seed_lex, seed_stk = seeds.level, seeds.node, seeds.lex, seeds.stack
        if seed_node.size <= SCALAR_WORK and int(
                (t.node_descendants[t.level_offsets[seed_level] + seed_node] + 1).sum()) <= SCALAR_WORK:
            return self._seeds_scalar(stacks, seeds)
        where = {s.uid: i for i, s in enumerate(stacks)}
        restricted = [self.viable_terminals(s) is not None for s in stacks]
        width = lx.num_terminals + 1
        # (stack index, finished terminal) -> (stack index after it << 32 | lexer start), -1 if
        # the parser refuses the terminal, -2 not resolved yet: a gather instead of a sort.
        resolved = np.full(len(stacks) * width, -2, dtype=np.int64)
        # Nodes by global number, so that seeds of every depth take their first step together:
        # most die there, and the few that live are finished in Python.
        trie = trie_nodes(t)
        nodes = t.level_offsets[seed_level] + seed_node
        plex, stk = seed_lex, seed_stk
        found: list[np.ndarray] = []
        while nodes.size:
            last = trie.byte[nodes]
            table = lx.ready(plex)
            chosen = lx.chosen
            nlex = table[plex, last]
            boundary = np.flatnonzero((nlex == DEAD) & (chosen[plex] >= 0))
            if boundary.size:
                keys = stk[boundary] * width + chosen[plex[boundary]]
                if int(keys.max()) >= resolved.size:
                    resolved = np.concatenate([resolved, np.full(resolved.size + int(keys.max()) + 1, -2, np.int64)])
                values = resolved[keys]
                if (values == -2).any():
                    for key in np.unique(keys[values == -2]).tolist():
                        s_idx, term = divmod(key, width)
                        node = stacks[s_idx] if term in ignore else self.feed(stacks[s_idx], term)
                        if node is None:
                            resolved[key] = -1
                            continue
                        if node.uid not in where:
                            where[node.uid] = len(stacks)
                            stacks.append(node)
                            restricted.append(self.viable_terminals(node) is not None)
                        resolved[key] = (where[node.uid] << 32) | lx.start(node.state, term in ignore)
                    values = resolved[keys]
                ok = values >= 0
                boundary, values = boundary[ok], values[ok]
                starts = (values & 0xFFFFFFFF).astype(np.int64)
                nlex[boundary] = lx.ready(starts)[starts, last[boundary]]
                stk = stk.copy()
                stk[boundary] = values >> 32
            alive = nlex != DEAD
            nodes, nlex, stk = nodes[alive], nlex[alive], stk[alive]
            tokens = t.node_token[nodes]
            ends = tokens >= 0
            if ends.any():
                ok = ends.copy()
                if any(restricted):
                    for s_idx in np.unique(stk[ends]).tolist():
                        if restricted[s_idx]:
                            sel = ends & (stk == s_idx)
                            ok[sel] = self.viable(stacks[s_idx], nlex[sel])
                found.append(tokens[ok])
            if nodes.size <= SCALAR_WORK and int(t.node_descendants[nodes].sum()) <= SCALAR_WORK:
                levels = np.searchsorted(t.level_offsets, nodes, side="right") - 1
                found.append(np.array(self._walk_scalar(
                    [(level, n - t.level_offsets[level], lx_, stacks[s_])
                     for level, n, lx_, s_ in zip(levels.tolist(), nodes.tolist(), nlex.tolist(), stk.tolist())]),
                    dtype=np.int64))
                break
            parent, nodes = children_of(trie.first_child[nodes], trie.end_child[nodes])
            plex, stk = nlex[parent], stk[parent]
        return with_duplicate_ids(t, np.concatenate(found) if found else np.zeros(0, np.int64))

    def _seeds_scalar(self, stacks: list[Stack], seeds: StackSeeds) -> np.ndarray:
        """`_walk` for a few seeds, entirely in Python."""
        level_bytes, _, offsets, node_token = trie_lists(self.table)
        out: list[int] = []
        items = []
        for level, node, lex, s_idx in zip(*(a.tolist() for a in seeds)):
            config = self.step(stacks[s_idx], lex, level_bytes[level][node])
            if config is None:
                continue
            token = node_token[offsets[level] + node]
            if token >= 0 and self.is_viable(*config):
                out.append(token)
            items.append((level, node, config[1], config[0]))
        out.extend(self._walk_scalar(items))
        return with_duplicate_ids(self.table, np.array(out, dtype=np.int64))

    def _walk_scalar(self, items: list[tuple[int, int, int, Stack]]) -> list[int]:
        """Finish a small frontier in Python: (level, node, lexer state after it, stack) items."""
        level_bytes, level_children, offsets, node_token = trie_lists(self.table)
        last_level = len(level_bytes) - 1
        step, is_viable = self.step, self.is_viable
        out: list[int] = []
        todo = items
        while todo:
            level, node, lex, stack = todo.pop()
            if level >= last_level:
                continue
            children = level_children[level]
            nxt_bytes = level_bytes[level + 1]
            for child in range(children[node], children[node + 1]):
                config = step(stack, lex, nxt_bytes[child])
                if config is None:
                    continue
                token = node_token[offsets[level + 1] + child]
                if token >= 0 and is_viable(*config):
                    out.append(token)
                todo.append((level + 1, child, config[1], config[0]))
        return out

    def lexeme_info(self, lex: int) -> LexemeInfo:
        info = self._lexemes.get(lex)
        if info is None:
            info = self._lexemes[lex] = shared(self.table, self.lexers, lex, "info", self._lexeme_info)
        return info

    def inside_by_end(self, lex: int) -> InsideByEnd:
        """The lexeme's inside tokens grouped by the lexer state they end in (for LALR-restricted stacks)."""
        groups = self._by_end.get(lex)
        if groups is None:
            groups = self._by_end[lex] = shared(self.table, self.lexers, lex, "by_end", self._inside_by_end)
        return groups

    def _lexeme_info(self, lex: int, states: np.ndarray | None) -> LexemeInfo:
        """Walk the trie inside one lexeme: tokens that stay in it, and where others leave it."""
        found = self._from_reference(lex)
        table, chosen = self.lexers.ready(lex), self.lexers.chosen
        if found is None:
            ids, _, seeds = walk_automaton(self.table, table, lex, chosen, self._prepare)
            table, chosen = self.lexers.table, self.lexers.chosen
            inside = np.zeros(self.vocab.size, dtype=bool)
            inside[ids] = True
            inside = pack(inside)
        else:
            inside, seeds = found
        dead_first = table[lex] == DEAD
        after_end = None
        if chosen[lex] >= 0 and dead_first.any():
            after_end = np.bitwise_or.reduce(self._first_byte[dead_first], axis=0)
        if states is not None:
            seeds = Seeds(seeds.level, seeds.node, to_local(seeds.state, states))
        return LexemeInfo(inside, after_end, seeds)

    def _from_reference(self, lex: int):
        """``lex``'s inside tokens and seeds derived from a similar state's, or None.

        A wide state usually moves on most bytes to one state (a free property name that has left
        every declared name behind, say); from there on the two agree, so only the trie paths
        where they still differ are walked (`walk_divergence`).
        """
        reference = self._usual_successor(lex)
        # Only a reference already known, or one that is its own usual successor (a loop such as
        # "any character of a string", whose walk is shared by most states that lead to it): a
        # chain of distinct states (counting characters for maxLength) would walk each anyway.
        if reference is None or reference == lex or (
                reference not in self._lexemes and self._usual_successor(reference) != reference):
            return None
        ref = self.lexeme_info(reference)
        walk = walk_divergence(self.table, self.lexers.table, lex, reference, self.lexers.chosen,
                               DIVERGENCE_BUDGET, self._prepare)
        if walk is None:
            return None
        alive, cut, expanded, (seed_level, seed_node, seed_lex) = walk
        words = ref.inside.copy()
        clear_bits(words, subtree_tokens(self.table, cut))
        set_bits(words, with_duplicate_ids(self.table, alive))
        # The reference's seeds stand where the walks had met above them; the others are redone.
        if ref.seeds.node.size:
            order = trie_order(self.table)
            parents = order.parent[self.table.level_offsets[ref.seeds.level] + ref.seeds.node]
            keep = ~np.isin(parents, expanded, kind="table") if expanded.size else np.ones(parents.size, bool)
            if cut.size:
                starts = np.sort(order.pre[cut])
                ends = starts + self.table.node_descendants[cut][np.argsort(order.pre[cut])]
                rank = order.pre[parents]
                j = np.searchsorted(starts, rank, side="right") - 1
                keep &= ~((j >= 0) & (rank <= ends[np.maximum(j, 0)]))
            seed_level = np.concatenate([ref.seeds.level[keep], seed_level])
            seed_node = np.concatenate([ref.seeds.node[keep], seed_node])
            seed_lex = np.concatenate([ref.seeds.state[keep].astype(seed_lex.dtype), seed_lex])
        return words, Seeds(seed_level, seed_node, seed_lex)

    def _prepare(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the trie walks: fill the rows they are about to read; the arrays to read them from."""
        return self.lexers.ready(states), self.lexers.chosen

    def _usual_successor(self, lex: int) -> int | None:
        """The state ``lex`` moves to on most bytes, if at least `REFERENCE_MIN_BYTES` of them."""
        row = self.lexers.ready(lex)[lex]
        if np.count_nonzero(row) < REFERENCE_MIN_BYTES:
            return None
        targets, counts = np.unique(row[row != DEAD], return_counts=True)
        if not counts.size or counts.max() < REFERENCE_MIN_BYTES:
            return None
        return int(targets[counts.argmax()])

    def _inside_by_end(self, lex: int, states: np.ndarray | None) -> InsideByEnd:
        ids, ends, _ = walk_automaton(self.table, self.lexers.ready(lex), lex, self.lexers.chosen, self._prepare)
        groups = {}
        for end in np.unique(ends).tolist():
            allowed = np.zeros(self.vocab.size, dtype=bool)
            allowed[ids[ends == end]] = True
            groups[end] = pack(allowed)
        if states is not None:
            groups = dict(zip(to_local(np.array(list(groups), np.int64), states).tolist(), groups.values()))
        return groups
