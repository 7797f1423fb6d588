"""The item-counts engine: a `guided.ir.CfgIR` with `guided.ir.ItemCounts` as exact token masks.

JSON Schema's ``minItems``/``maxItems`` past what the front-end unrolls are counted at run time
(rule 12 of `guided.ir.cfg`): the IR marks the parser states that open such an array (with its
bounds), the rules that reduce one of its items, and the states a separator or the closing
bracket shifts into.  `CountsGrammar` runs the CFG engine on the IR's tables and keeps beside
each CFG configuration the open arrays (*frames*) with their counts so far (`CountsConfig`).
Everything is an immutable tuple, so `copy` and `rollback` of a matcher stay O(1).

Masks are exact (as rule 12 defines them).  The CFG mask (vectorised, cached) is a superset: the
checks only take tokens away, and only at a shift of a *checked* terminal (one that shifts into
a separator or close state).  So only the tokens that hold the first byte of a checked terminal
are walked again byte by byte with the counts, or, while the pending lexeme may itself be a
checked one that can still grow (or fails its check), every token the CFG allows.  With no
frame open, a token must also open one to reach a check.  Masks are memoised under the counts made coarse: a count far
from both bounds (further than a token's bytes can move it) behaves like any other such count,
so a 100,000-item array costs a handful of distinct masks, not one per item.

The completion helpers (`forced_bytes`, `budget_mask`'s and `closing_lower_bound`'s bounds) are
the CFG's, which ignore the counts: its language is a superset, so its lower bounds stay lower
bounds and its forced bytes stay forced.  Its completion closes every array as soon as it may,
which the counts refuse while an array is below its minimum: the completion is walked with the
counts, and where they refuse it `closing_distance` answers `UNREACHABLE` (no completion known)
rather than a wrong one.  The native core's twin (`guided.engine.native.NativeCountsGrammar`)
is held to this engine mask for mask.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b",", b"<eos>"], eos_token_ids=[4])
>>> g = guided.compile(guided.JsonSchema({"type": "array", "items": {"type": "integer"}, "minItems": 1000,
...                                       "maxItems": 1001}), vocab)
>>> m = g.matcher()
>>> m.advance(0); m.mask().tolist()   # "[": "]" would close it 1000 items early
[False, False, True, False, False]
>>> for _ in range(999): m.advance(2); m.advance(3)
>>> m.advance(2); m.mask().tolist()   # 1000 items: "]" may close, "," one more
[False, True, True, True, False]
>>> m.advance(3); m.advance(2); m.mask().tolist()   # 1001: no ","
[False, True, True, False, False]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from guided.engine.bitmask import pack, set_bits, unpack
from guided.engine.cfg import CfgGrammar, Stack
from guided.engine.cfg.matcher import CheckedStackMatcher
from guided.engine.lru import LockedLru
from guided.engine.tuning import MASK_CACHE_SIZE
from guided.errors import SpecError
from guided.ir import DEAD, CfgIR
from guided.vocab import Vocabulary

__all__ = ["CountsConfig", "CountsGrammar", "CountsMatcher"]

Frame = tuple[int, int, int, "int | None"]  # (height of the entry holding it, count, min, max)


class CountsConfig(NamedTuple):
    """Where an item-counts matcher stands: a CFG configuration plus rule 12's frames."""

    stack: Stack  # the CFG engine's parser stack
    lex: int  # and lexer state
    frames: tuple[Frame, ...]  # open frames, innermost last


class CountsGrammar:
    """A `CfgIR` with item counts compiled for one vocabulary."""

    def __init__(self, ir: CfgIR, vocab: Vocabulary):
        counts = ir.item_counts
        if counts is None:
            raise SpecError(f"CountsGrammar needs a CfgIR with item_counts ({ir.source[:80]!r} has none)")
        self.ir = ir
        self.vocab = vocab
        self.cfg = CfgGrammar(ir, vocab)
        self.bounds = counts.by_state
        self.item_rules = counts.item_rules
        self.separator_states = counts.separator_states
        self.close_states = counts.close_states
        checked = counts.separator_states | counts.close_states
        shifts = [(t, a) for row in ir.actions for t, a in row.items() if a >= 0]
        # Terminals a shift of which is checked, and those that open a frame; the bytes they start with.
        self.checked_terminals = np.array(sorted({t for t, a in shifts if a in checked}), np.int64)
        self.open_terminals = np.array(sorted({t for t, a in shifts if a in self.bounds}), np.int64)
        self.holds_checked = self._holding(self.checked_terminals)
        self.holds_open = self._holding(self.open_terminals)
        # How far one token can move a count: each item takes at least one byte.
        self.reach = max((len(b) for b in vocab.token_bytes), default=0) + 1
        stack, lex = self.cfg.start()
        self.start = CountsConfig(stack, lex, ())
        self._masks: LockedLru[tuple, np.ndarray] = LockedLru(MASK_CACHE_SIZE)

    def _holding(self, terminals: np.ndarray) -> np.ndarray:
        """Packed: the tokens holding a byte that a lexeme of one of ``terminals`` may start with."""
        first: set[int] = set()
        for t in terminals.tolist():
            dfa = self.ir.terminals[t].dfa
            if dfa.initial != DEAD:
                first.update(np.flatnonzero(dfa.transitions[dfa.initial] != DEAD).tolist())
        lut = np.zeros(256, dtype=bool)
        lut[sorted(first)] = True
        # Down the token trie, level by level: a node holds one if its parent does or its byte is one.
        table = self.cfg.table
        levels: list[np.ndarray] = []
        for parents, last in zip(table.level_parents, table.level_bytes):
            here = lut[last]
            levels.append(here | levels[-1][parents] if levels else here)
        nodes = np.concatenate(levels) if levels else np.zeros(0, bool)
        holds = np.zeros(self.vocab.size, dtype=bool)
        holds[table.token_ids] = nodes[table.token_nodes]
        return pack(holds)

    def __repr__(self) -> str:
        return f"CountsGrammar({self.ir.source!r}, vocab={self.vocab.size})"

    def matcher(self) -> "CountsMatcher":
        return CountsMatcher(self)

    # -- rule 12 -----------------------------------------------------------------------------------

    def feed(self, stack: Stack, frames: tuple, terminal: int):
        """`CfgGrammar.feed` with rule 12: (stack, frames) after ``terminal``, or None."""
        result = self.cfg.feed(stack, terminal)
        if result is None:
            return None
        ir = self.ir
        actions, rules, item_rules = ir.actions, ir.rules, self.item_rules
        node = stack
        while True:  # the reductions before the shift (they end: the CFG's feed found the shift)
            action = actions[node.state][terminal]
            if action >= 0:
                break
            rule = -action - 1
            lhs, length = rules[rule]
            below = node
            for _ in range(length):
                below = below.parent  # type: ignore[assignment]
            keep = below.height + 1  # the new entry's height
            while frames and frames[-1][0] >= keep:
                frames = frames[:-1]  # its entry is popped: the frame closes
            if frames and rule in item_rules:
                at, n, lo, hi = frames[-1]
                frames = frames[:-1] + ((at, n + 1, lo, hi),)
            node = self.cfg.stacks.node(ir.gotos[below.state][lhs], below)
        if frames:
            _, n, lo, hi = frames[-1]
            if hi is not None and n >= hi and action in self.separator_states:
                return None  # a separator after the last item allowed
            if n < lo and action in self.close_states:
                return None  # the array closes before its minimum
        bound = self.bounds.get(action)
        if bound is not None:
            frames = frames + ((result.height, 0, bound[0], bound[1]),)
        return result, frames

    # -- configurations ------------------------------------------------------------------------------

    def step(self, config: CountsConfig, byte: int) -> CountsConfig | None:
        """The configuration after one more byte, or None where the text leaves the language."""
        stack, lex, frames = config
        cfg = self.cfg
        ended = cfg.lexeme_end(lex, byte)
        if ended is None:
            moved = cfg.step(stack, lex, byte)
            return None if moved is None else CountsConfig(stack, moved[1], frames)
        if ended < 0:
            return None
        ignored = ended in self.ir.ignore
        if not ignored:
            fed = self.feed(stack, frames, ended)
            if fed is None:
                return None
            stack, frames = fed
        lexers = cfg.lexers
        start = lexers.start(stack.state, ignored)
        nxt = int(lexers.table[start, byte])
        if not nxt:
            return None
        if cfg.counting is not None:  # a counted terminal's first byte starts its count (rule 11)
            nxt = cfg.counting.after(start, nxt, byte, True)
            if not nxt:
                return None
        return CountsConfig(stack, nxt, frames)

    def end_lexeme(self, config: CountsConfig):
        """The pending lexeme ends: (stack, frames) after it, or None."""
        stack, lex, frames = config
        if lex in self.cfg.lexers.start_states:
            return stack, frames
        terminal = int(self.cfg.lexers.chosen[lex])
        if terminal < 0:
            return None
        if terminal in self.ir.ignore:
            return stack, frames
        return self.feed(stack, frames, terminal)

    def _may_be_checked(self, lex: int) -> bool:
        """May the pending lexeme of ``lex`` still end as a checked terminal?"""
        lexers = self.cfg.lexers
        return bool(self.checked_terminals.size) and lex not in lexers.start_states \
            and bool(lexers.alive[lex, self.checked_terminals].any())

    def is_viable(self, config: CountsConfig) -> bool:
        stack, lex, frames = config
        if not self.cfg.is_viable(stack, lex):
            return False
        if frames and self._may_be_checked(lex):
            # Rule 7 with rule 12's checks: some terminal the lexeme is alive in is accepted.
            return any(t in self.ir.ignore or self.feed(stack, frames, t) is not None
                       for t, _ in self.cfg.lexers.components(lex))
        return True

    def accepts_end(self, config: CountsConfig) -> bool:
        ended = self.end_lexeme(config)
        return ended is not None and self.cfg.can_end(ended[0])  # END only reduces: nothing to check

    def walk(self, config: CountsConfig, data: bytes) -> CountsConfig | None:
        """The configuration after ``data`` if it stays viable, else None."""
        for b in data:
            moved = self.step(config, b)
            if moved is None:
                return None
            config = moved
        return config if self.is_viable(config) else None

    def closing_ok(self, config: CountsConfig) -> bool:
        """Does the CFG's completion (`CfgGrammar.completion`) keep the counts?  It closes every
        array as soon as it may, so not while one is below its minimum; it is walked here."""
        data = self.cfg.completion(config.stack, config.lex)
        if data is None:
            return False
        end = self.walk(config, data) if data else config
        return end is not None and self.accepts_end(end)

    # -- masks -----------------------------------------------------------------------------------

    def key(self, config: CountsConfig) -> tuple:
        """The memo key of ``config``'s mask: each count made coarse where no token can tell it
        from its neighbours (further than `reach` from both bounds)."""
        reach = self.reach
        frames = []
        for at, n, lo, hi in config.frames:
            near_max = hi is not None and n + reach >= hi
            if n >= lo and not near_max:
                n = -1  # every check of the next token passes
            elif n + reach < lo and not near_max:
                n = -2  # every close check fails, every separator check passes
            frames.append((at, n, lo, hi))
        return config.stack, config.lex, tuple(frames)

    def words(self, config: CountsConfig) -> np.ndarray:
        key = self.key(config)
        words = self._masks.get(key)
        if words is None:
            words = self._compute(config)
            self._masks.put(key, words)
        return words

    def risky(self, config: CountsConfig) -> np.ndarray | None:
        """Packed: the tokens whose bytes may reach a rule 12 check from ``config`` (a superset);
        None: all of them."""
        if config.frames:
            if self._may_be_checked(config.lex):
                lexers = self.cfg.lexers
                lex = config.lex
                row = (lexers.table if lexers.filled[lex] else lexers.ready(lex))[lex]
                if not row.any() and self.end_lexeme(config) is not None:
                    # A "," or "]" that cannot grow: every token ends it with its first byte, and
                    # it passes its check; the rest of a token is checked only past a checked byte.
                    return self.holds_checked
                return None
            return self.holds_checked
        lexers = self.cfg.lexers
        if self.open_terminals.size and config.lex not in lexers.start_states \
                and lexers.alive[config.lex, self.open_terminals].any():
            return self.holds_checked  # the pending lexeme may open a frame
        return self.holds_checked & self.holds_open

    def _compute(self, config: CountsConfig) -> np.ndarray:
        cfg_words = self.cfg.words(config.stack, config.lex)
        risky = self.risky(config)
        check = cfg_words if risky is None else cfg_words & risky
        words = cfg_words & ~check
        tb = self.vocab.token_bytes
        # Tokens share prefixes (",", ", ", ",\n", "],"): each prefix is stepped once.
        after: dict[bytes, CountsConfig | None] = {b"": config}
        ok = []
        for i in np.flatnonzero(unpack(check, self.vocab.size)).tolist():
            data = tb[i]
            if not data:
                continue
            cur: CountsConfig | None = config
            for j in range(1, len(data) + 1):
                head = data[:j]
                if head in after:
                    cur = after[head]
                else:
                    cur = after[head] = self.step(cur, data[j - 1])  # type: ignore[arg-type]
                if cur is None:
                    break
            if cur is not None and self.is_viable(cur):
                ok.append(i)
        if ok:
            set_bits(words, np.array(ok, dtype=np.int64))
        if self.accepts_end(config):
            words |= self.cfg.eos_words
        else:
            words &= ~self.cfg.eos_words
        return words


class CountsMatcher(CheckedStackMatcher):
    """Matcher over a `CountsGrammar`: its history holds `CountsConfig` (None once finished)."""

    __slots__ = ()

    def __repr__(self) -> str:
        config = self._history[0]
        state = "finished" if config is None else \
            f"lr={config.stack.state}, counts={[n for _, n, _, _ in config.frames]}"
        return f"CountsMatcher({state}, tokens={self._n})"

    def _completion_kept(self, config) -> bool:
        return self.grammar.closing_ok(config)

    def closing_tokens(self) -> np.ndarray:
        tokens = super().closing_tokens()
        return tokens[self.mask()[tokens]]  # (a token that adds an item past a maximum is not one)
