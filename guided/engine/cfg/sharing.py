"""Per-lexer-state mask data, and its sharing between grammars built from the same terminals.

What a lexer state decides about tokens (`LexemeInfo`) depends only on the part of the lexer
automaton it can reach and on where lexemes may end there.  Grammars built from the same
terminals (every JSON grammar's strings and numbers, say) reach identical sub-automata under
different state numbers; a canonical key (`sub_automaton`: a breadth-first numbering in byte
order, hashed) lets them share that data through one cache per vocabulary, stored renumbered
from the state it was computed for (`to_local`) and translated back on use (`to_global`).
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Callable, NamedTuple

import numpy as np

from guided.engine.cfg.lexer import LexerTable, dfa_memo
from guided.engine.token_table import Seeds, TokenTable
from guided.engine.tuning import SHARE_LIMIT, SHARED_LIMIT
from guided.ir import ByteDFA


class LexemeInfo(NamedTuple):
    """What a lexer state alone decides about every token (shared by all stacks).

    ``inside``: packed mask of the tokens whose bytes all extend the current lexeme (allowed
    whatever the stack); ``after_end``: packed mask of the tokens whose first byte ends the
    lexeme (then allowed as the start of the next lexeme, which depends on the stack), None when
    the lexeme cannot end here; ``seeds``: trie nodes below the first byte where the lexeme ends,
    with the lexer state before the node's byte, resolved per stack.
    """

    inside: np.ndarray
    after_end: np.ndarray | None
    seeds: Seeds


InsideByEnd = dict[int, np.ndarray]
"""A lexer state's inside tokens grouped by the lexer state they end in (packed masks)."""


class SubAutomaton(NamedTuple):
    """A canonical key of the automaton reachable from a state, and its states in key order."""

    key: bytes
    states: np.ndarray  # int64, global lexer states; ``states[0]`` is the state searched from


def sub_automaton(lex: int, successors: Callable[[int], tuple | None], arrays,
                  limit: int = SHARE_LIMIT) -> SubAutomaton | None:
    """The `SubAutomaton` reachable from ``lex``.

    States are numbered by a breadth-first search that visits successors in byte order, so two
    grammars with the same sub-automaton get the same key whatever their global numbering.
    ``successors(state)`` lists a state's distinct targets in byte order, or is None to give up;
    ``arrays()`` returns the transition table and the accepted terminals (read after the search,
    which may fill rows).  None when more than ``limit`` states are reachable.
    """
    order = [lex]
    index = {lex: 0}
    for state in order:
        targets = successors(state)
        if targets is None:
            return None
        for target in targets:
            if target not in index:
                if len(order) >= limit:
                    return None
                index[target] = len(order)
                order.append(target)
    table, chosen = arrays()
    states = np.array(order, dtype=np.int64)
    lookup = np.zeros(int(states.max()) + 1, dtype=np.int32)
    lookup[states] = np.arange(1, states.size + 1, dtype=np.int32)
    local = lookup[table[states]]  # dead stays 0, and the states reach none beyond themselves
    key = hashlib.blake2b(local.tobytes() + (chosen[states] >= 0).tobytes(), digest_size=16).digest()
    return SubAutomaton(key, states)


def block_sub_automaton(dfa: ByteDFA, state: int) -> SubAutomaton | None:
    """`sub_automaton` of a terminal DFA's state, in the DFA's numbering (memoised per DFA).

    A block of lexer rows is its DFA shifted by a base, so the key is the one a search of the
    lexer table finds, and every grammar using the DFA object reuses it.
    """
    memo = dfa_memo(dfa)
    if state not in memo.subs:
        memo.subs[state] = sub_automaton(state, memo.successors_of, lambda: (memo.transitions, memo.accepting))
    return memo.subs[state]


def lexer_sub_automaton(lexers: LexerTable, lex: int) -> SubAutomaton | None:
    """The `SubAutomaton` of a lexer state worth a key: a terminal's block state or a context's start."""
    block = lexers.block_at(lex)
    if block is not None:  # within one terminal's DFA: its search is done once per DFA state
        sub = block_sub_automaton(lexers.terminals[block.terminal].dfa, lex - block.base)
        return None if sub is None else SubAutomaton(sub.key, sub.states + block.base)
    if lex in lexers.start_states:
        return sub_automaton(lex, lexers.successors, lambda: (lexers.table, lexers.chosen))
    return None  # inside a union of terminals: measured, these are practically never shared


_shared_lexemes: "weakref.WeakKeyDictionary[TokenTable, dict]" = weakref.WeakKeyDictionary()


def shared(table: TokenTable, lexers: LexerTable, lex: int, kind: str,
           compute: Callable[[int, np.ndarray | None], LexemeInfo | InsideByEnd]):
    """``compute(lex, states)``, from the per-vocabulary cache where another grammar has it.

    ``compute`` gets the sub-automaton's states (None when ``lex`` has no key) and must return
    data numbered by them (`to_local`); ``kind`` tells kinds of data apart.
    """
    sub = lexer_sub_automaton(lexers, lex)
    if sub is None:
        return compute(lex, None)
    cache = _shared_lexemes.setdefault(table, {})
    local = cache.get((kind, sub.key))
    if local is None:
        if len(cache) >= SHARED_LIMIT:
            cache.clear()
        local = cache[(kind, sub.key)] = compute(lex, sub.states)
    return to_global(local, sub.states)


def to_local(global_states: np.ndarray, states: np.ndarray) -> np.ndarray:
    """Lexer states as positions in ``states`` (a sub-automaton's), for data stored shared."""
    if not global_states.size:
        return global_states.astype(np.int32)
    lookup = np.full(int(max(states.max(), global_states.max())) + 1, -1, np.int32)
    lookup[states] = np.arange(states.size, dtype=np.int32)
    return lookup[global_states]


def to_global(local: LexemeInfo | InsideByEnd, states: np.ndarray) -> LexemeInfo | InsideByEnd:
    """Translate shared per-lexer-state data back to this grammar's state numbers."""
    if isinstance(local, LexemeInfo):
        seeds = local.seeds
        if seeds.state.size:
            seeds = Seeds(seeds.level, seeds.node, states[seeds.state].astype(np.int32))
        return LexemeInfo(local.inside, local.after_end, seeds)
    return {int(states[end]): words for end, words in local.items()}
