"""The unique-items engine: a `guided.ir.CfgIR` with `guided.ir.UniqueItems` as exact token masks.

JSON Schema's ``uniqueItems`` over an infinite item domain is not context-free.  The IR marks the
parser states that open such an array and the rules that reduce one of its items (rule 9 of
`guided.ir.cfg`); `UniqueGrammar` runs the CFG engine on the IR's tables and keeps beside each CFG
configuration what rule 9 needs (`UniqueConfig`): the text of each parser stack entry inside an
open array, the open arrays (*frames*) with the canonical values of their items so far, and the
bytes of the pending lexeme.  Everything is an immutable tuple, so `copy` and `rollback` of a
matcher stay O(1).

Masks are exact (as rule 9 defines them).  The CFG mask (vectorised, cached) is a superset: the
check only takes tokens away.  Only the tokens that can reach a check are walked again byte by byte
with it: while a frame is open, those that end the pending lexeme and those that leave it with few
ways left to end (then one of them must end well: `UniqueGrammar.completions`); with no frame open, those that end the pending lexeme and hold the
first byte of a terminal that opens a frame (or all that end it, where the pending lexeme may be
such a terminal).  Inside a long string item, a step walks none.

The completion helpers (`closing_distance`, `closing_tokens`, `forced_bytes`, `budget_mask`'s
bound) are the CFG's: they ignore uniqueness, so a shortest completion they propose may repeat an
item (masks never allow it).  The native core's twin (`guided.engine.native.NativeUniqueGrammar`,
src/guided_native/unique_engine.h) is held to this engine mask for mask.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b"2", b",", b" ", b"<eos>"], eos_token_ids=[6])
>>> g = guided.compile(guided.JsonSchema({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}), vocab)
>>> m = g.matcher()
>>> for t in (0, 2, 4, 2): m.advance(t)
>>> m.mask().tolist()   # "[1,1": "1" may grow ("11"), but "]", "," and " " would end a duplicate
[False, False, True, True, False, False, False]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from guided.engine.lru import LockedLru
from guided.engine.bitmask import pack, set_bits, unpack
from guided.engine.cfg import CfgGrammar, Stack
from guided.engine.cfg.matcher import CheckedStackMatcher
from guided.engine.tuning import MASK_CACHE_SIZE
from guided.errors import SpecError
from guided.ir import DEAD, END, CfgIR, canonical_json
from guided.vocab import Vocabulary

__all__ = ["UniqueConfig", "UniqueGrammar", "UniqueMatcher"]

_NO_FRAMES: tuple = ()
_UNKNOWN = object()


class UniqueConfig(NamedTuple):
    """Where a unique-items matcher stands: a CFG configuration plus rule 9's bookkeeping."""

    stack: Stack  # the CFG engine's parser stack
    lex: int  # and lexer state
    texts: tuple[bytes, ...]  # by stack height: the text of each entry (b"" below every open frame)
    frames: tuple[tuple[int, frozenset], ...]  # open frames, innermost last: (entry height, values)
    lexeme: bytes  # the pending lexeme's bytes while a frame is open, else b""


class UniqueGrammar:
    """A `CfgIR` with unique items compiled for one vocabulary."""

    def __init__(self, ir: CfgIR, vocab: Vocabulary):
        unique = ir.unique_items
        if unique is None:
            raise SpecError(f"UniqueGrammar needs a CfgIR with unique_items ({ir.source[:80]!r} has none)")
        self.ir = ir
        self.vocab = vocab
        self.cfg = CfgGrammar(ir, vocab)
        self.open_states = unique.open_states
        self.item_rules = unique.item_rules
        # The reduction each state forces (every action the same reduction), else 0.
        self.forced = [0] * ir.num_states
        for q, row in enumerate(ir.actions):
            values = set(row.values())
            if len(values) == 1:
                (a,) = values
                if a < 0:
                    self.forced[q] = a
        # Terminals a shift of which opens a frame, and the bytes their lexemes start with.
        self.open_terminals = np.array(sorted({t for row in ir.actions for t, a in row.items()
                                               if a >= 0 and a in self.open_states}), np.int64)
        first = set()
        for t in self.open_terminals.tolist():
            dfa = ir.terminals[t].dfa
            if dfa.initial != DEAD:
                first.update(np.flatnonzero(dfa.transitions[dfa.initial] != DEAD).tolist())
        holds = np.zeros(vocab.size, dtype=bool)
        tb = vocab.token_bytes
        for i in self.cfg.table.token_ids.tolist():
            holds[i] = any(b in first for b in tb[i])
        self.holds_open = pack(holds)
        stack, lex = self.cfg.start()
        self.start = UniqueConfig(stack, lex, (b"",), _NO_FRAMES, b"")
        self._masks: LockedLru[UniqueConfig, np.ndarray] = LockedLru(MASK_CACHE_SIZE)
        self._completions: dict[int, tuple | None] = {}
        self._counts: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"UniqueGrammar({self.ir.source!r}, vocab={self.vocab.size})"

    def matcher(self) -> "UniqueMatcher":
        return UniqueMatcher(self)

    # -- rule 9 ------------------------------------------------------------------------------------

    def _reduce(self, node: Stack, texts: tuple, frames: tuple, action: int):
        """One reduction with rule 9's bookkeeping: (stack, texts, frames), or None for a duplicate."""
        rule = -action - 1
        lhs, length = self.ir.rules[rule]
        below = node
        for _ in range(length):
            below = below.parent  # type: ignore[assignment]
        keep = below.height + 1  # the new entry's height
        spanned = b"".join(texts[keep:])
        while frames and frames[-1][0] >= keep:
            frames = frames[:-1]
        if frames and rule in self.item_rules:
            value = canonical_json(spanned)
            at, seen = frames[-1]
            if value in seen:
                return None
            frames = frames[:-1] + ((at, seen | {value}),)
        stack = self.cfg.stacks.node(self.ir.gotos[below.state][lhs], below)
        return stack, texts[:keep] + (spanned if frames else b"",), frames

    def feed(self, stack: Stack, texts: tuple, frames: tuple, terminal: int, text: bytes):
        """`CfgGrammar.feed` with rule 9: (stack, texts, frames) after ``terminal`` spelt ``text``,
        or None."""
        result = self.cfg.feed(stack, terminal)
        if result is None:
            return None
        actions = self.ir.actions
        node = stack
        while True:  # the reductions before the shift (they end: the CFG's feed found the shift)
            action = actions[node.state][terminal]
            if action >= 0:
                break
            reduced = self._reduce(node, texts, frames, action)
            if reduced is None:
                return None
            node, texts, frames = reduced
        texts = texts[:result.height] + (text if frames else b"",)
        if result.state in self.open_states:
            frames = frames + ((result.height, frozenset()),)
        if frames and not self._forced_ok(result, texts, frames):
            return None
        return result, texts, frames

    def _forced_ok(self, stack: Stack, texts: tuple, frames: tuple) -> bool:
        """Rule 9's look-ahead: the reductions the top state forces reduce no duplicate item."""
        forced = self.forced
        for _ in range(10_000):
            action = forced[stack.state]
            if not action or not frames:
                return True
            reduced = self._reduce(stack, texts, frames, action)
            if reduced is None:
                return False
            stack, texts, frames = reduced
        return True

    def can_end(self, stack: Stack, texts: tuple, frames: tuple) -> bool:
        """`CfgGrammar.can_end` with rule 9's checks on the reductions."""
        if not self.cfg.can_end(stack):
            return False
        if not frames:
            return True
        ir = self.ir
        while stack.state != ir.end_state:
            reduced = self._reduce(stack, texts, frames, ir.actions[stack.state][END])
            if reduced is None:
                return False
            stack, texts, frames = reduced
        return True

    # -- configurations ------------------------------------------------------------------------------

    def completions(self, lex: int) -> tuple[tuple[bytes, int], ...] | None:
        """Rule 9: each way the pending lexeme of lexer state ``lex`` can still end, as (bytes
        still to read, lexer state then), or None when infinitely many or more than
        `UniqueItems.COMPLETIONS` (memoised per lexer state)."""
        found = self._completions.get(lex, _UNKNOWN)
        if found is not _UNKNOWN:
            return found  # type: ignore[return-value]
        lexers = self.cfg.lexers
        limit = self.ir.unique_items.COMPLETIONS  # type: ignore[union-attr]
        counting = self.cfg.counting
        if counting is not None and any(t in counting.expansions for t, _ in lexers.components(lex)):
            self._completions[lex] = None  # a counted terminal is alive: many ways (rule 9)
            return None
        if lex in lexers.start_states or self._count(lex, limit) > limit:
            self._completions[lex] = None
            return None
        out: list[tuple[bytes, int]] = []
        path: set[int] = set()

        def visit(state: int, text: bytes) -> bool:
            if state in path:
                return False
            if lexers.chosen[state] >= 0:
                out.append((text, state))
                if len(out) > limit:
                    return False
            path.add(state)
            row = (lexers.table if lexers.filled[state] else lexers.ready(state))[state]
            for b in np.flatnonzero(row).tolist():
                if not visit(int(row[b]), text + bytes((b,))):
                    return False
            path.discard(state)
            return True

        result = tuple(out) if lex not in lexers.start_states and visit(lex, b"") else None
        self._completions[lex] = result
        return result

    def _count(self, lex: int, limit: int) -> int:
        """How many ways the lexeme of lexer state ``lex`` can still end, capped at ``limit + 1``
        (also for infinitely many); memoised per lexer state, iterative (long enum strings)."""
        counts = self._counts
        if lex in counts:
            return counts[lex]
        lexers = self.cfg.lexers
        over = limit + 1
        on_path: set[int] = set()
        todo: list[tuple[int, bool]] = [(lex, False)]
        while todo:
            state, done = todo.pop()
            if done:
                on_path.discard(state)
                row = (lexers.table if lexers.filled[state] else lexers.ready(state))[state]
                total = int(lexers.chosen[state] >= 0)
                for nxt in np.flatnonzero(row).tolist():
                    total = min(over, total + counts[int(row[nxt])])
                counts[state] = total
                continue
            if state in counts:
                continue
            on_path.add(state)
            todo.append((state, True))
            row = (lexers.table if lexers.filled[state] else lexers.ready(state))[state]
            for nxt in set(row[np.flatnonzero(row)].tolist()):
                if nxt in on_path:  # a cycle: infinitely many
                    for s in on_path:
                        counts[s] = over
                    return over
                if nxt not in counts:
                    todo.append((nxt, False))
        return counts[lex]

    def step(self, config: UniqueConfig, byte: int) -> UniqueConfig | None:
        """The configuration after one more byte, or None where the text leaves the language."""
        stack, lex, texts, frames, lexeme = config
        cfg = self.cfg
        ended = cfg.lexeme_end(lex, byte)
        if ended is None:
            moved = cfg.step(stack, lex, byte)
            if moved is None:
                return None
            return UniqueConfig(stack, moved[1], texts, frames, lexeme + bytes((byte,)) if frames else b"")
        if ended < 0:
            return None
        ignored = ended in self.ir.ignore
        if not ignored:
            fed = self.feed(stack, texts, frames, ended, lexeme)
            if fed is None:
                return None
            stack, texts, frames = fed
        lexers = cfg.lexers
        start = lexers.start(stack.state, ignored)
        nxt = int(lexers.table[start, byte])
        if not nxt:
            return None
        if cfg.counting is not None:  # a counted terminal's first byte starts its count (rule 11)
            nxt = cfg.counting.after(start, nxt, byte, True)
            if not nxt:
                return None
        return UniqueConfig(stack, nxt, texts, frames, bytes((byte,)) if frames else b"")

    def end_lexeme(self, config: UniqueConfig):
        """The pending lexeme ends: (stack, texts, frames) after it, or None."""
        stack, lex, texts, frames, lexeme = config
        if lex in self.cfg.lexers.start_states:
            return stack, texts, frames
        terminal = int(self.cfg.lexers.chosen[lex])
        if terminal < 0:
            return None
        if terminal in self.ir.ignore:
            return stack, texts, frames
        return self.feed(stack, texts, frames, terminal, lexeme)

    def is_viable(self, config: UniqueConfig) -> bool:
        if not self.cfg.is_viable(config.stack, config.lex):
            return False
        if config.frames:
            ends = self.completions(config.lex)
            if ends is not None:  # rule 9: a lexeme with few ways left to end must end one of them
                stack, _, texts, frames, lexeme = config
                return any(self.end_lexeme(UniqueConfig(stack, lex, texts, frames, lexeme + more)) is not None
                           for more, lex in ends)
        return True

    def accepts_end(self, config: UniqueConfig) -> bool:
        ended = self.end_lexeme(config)
        return ended is not None and self.can_end(*ended)

    def walk(self, config: UniqueConfig, data: bytes) -> UniqueConfig | None:
        """The configuration after ``data`` if it stays viable, else None."""
        for b in data:
            moved = self.step(config, b)
            if moved is None:
                return None
            config = moved
        return config if self.is_viable(config) else None

    # -- masks -----------------------------------------------------------------------------------

    def words(self, config: UniqueConfig) -> np.ndarray:
        words = self._masks.get(config)
        if words is None:
            words = self._compute(config)
            self._masks.put(config, words)
        return words

    def risky(self, config: UniqueConfig) -> np.ndarray:
        """Packed: the tokens whose bytes may reach a rule 9 check from ``config`` (a superset)."""
        masks = self.cfg.masks
        lex = config.lex
        ends = ~masks.lexeme_info(lex).inside  # tokens that end the pending lexeme
        if config.frames:
            out = ends
            for end, group in masks.inside_by_end(lex).items():
                if self.completions(end) is not None:
                    out = out | group
            return out
        if self.open_terminals.size and lex not in self.cfg.lexers.start_states \
                and self.cfg.lexers.alive[lex, self.open_terminals].any():
            return ends  # the pending lexeme may open a frame
        return ends & self.holds_open

    def _compute(self, config: UniqueConfig) -> np.ndarray:
        cfg_words = self.cfg.words(config.stack, config.lex)
        check = cfg_words & self.risky(config)
        words = cfg_words & ~check
        tb = self.vocab.token_bytes
        # Tokens share prefixes ('"', '",', '"]', ...): each prefix is stepped once.
        after: dict[bytes, UniqueConfig | None] = {b"": config}
        viable: dict[bytes, bool] = {}
        ok = []
        for i in np.flatnonzero(unpack(check, self.vocab.size)).tolist():
            data = tb[i]
            if not data:
                continue
            cur: UniqueConfig | None = config
            for j in range(1, len(data) + 1):
                head = data[:j]
                if head in after:
                    cur = after[head]
                else:
                    cur = after[head] = self.step(cur, data[j - 1])  # type: ignore[arg-type]
                if cur is None:
                    break
            if cur is None:
                continue
            good = viable.get(data)
            if good is None:
                good = viable[data] = self.is_viable(cur)
            if good:
                ok.append(i)
        if ok:
            set_bits(words, np.array(ok, dtype=np.int64))
        if self.accepts_end(config):
            words |= self.cfg.eos_words
        else:
            words &= ~self.cfg.eos_words
        return words


class UniqueMatcher(CheckedStackMatcher):
    """Matcher over a `UniqueGrammar`: its history holds `UniqueConfig` (None once finished)."""

    __slots__ = ()

    def __repr__(self) -> str:
        config = self._history[0]
        state = "finished" if config is None else f"lr={config.stack.state}, arrays={len(config.frames)}"
        return f"UniqueMatcher({state}, tokens={self._n})"
