"""The reference recogniser: the one executable definition of what an IR accepts, byte by byte.

`guided.ir.cfg` states the semantics of a `CfgIR` in words (rules 1 to 12); this module runs them
as directly as they read, with no tables built ahead, no caches and no masks, so that each rule
can be checked against its line here.  Every engine is tested against it: a mask allows a token
exactly when `Reference.step` over the token's bytes keeps the position viable
(`Reference.is_viable`), and end-of-sequence exactly when `Reference.accepts_end` says so.
For a `ByteDFA` the same interface is a walk of its transition table.

Positions are immutable and hashable (`CfgPosition`, or an int for a DFA), so a test may memoise
steps, branch a walk over every token of a vocabulary, or compare two positions.

>>> import guided
>>> ir = guided.Grammar('start: "[" NUMBER ("," NUMBER)* "]"\\n%import common.NUMBER\\n%ignore " "').to_ir()
>>> accepts(ir, b"[1, 22]"), accepts(ir, b"[1,"), is_prefix(ir, b"[1,"), is_prefix(ir, b"[1]]")
(True, False, True, False)
>>> accepts(guided.Regex("ab+").to_ir(), b"abbb")
True
"""

from __future__ import annotations

from typing import Any, NamedTuple, Union

import numpy as np

from guided.errors import InvalidIR
from guided.ir.cfg import END, CfgIR, canonical_json
from guided.ir.dfa import DEAD, ByteDFA

__all__ = ["CfgPosition", "NamesState", "Reference", "UniqueState", "accepts", "is_prefix"]

# Modes of the matched-names check (`guided.ir.cfg.MatchedNames`): where the last lexeme fed
# to the parser left the tag being written.
OUT, OPEN_NAME, TAG, CLOSE_NAME = range(4)


class NamesState(NamedTuple):
    """What the matched-names check remembers: open element names, innermost last, and the tag
    being written."""

    open: tuple[bytes, ...] = ()
    mode: int = OUT
    element: bytes = b""  # the name of the start tag being written (pushed at its open_end)
    attributes: frozenset[bytes] = frozenset()  # attribute names of that start tag so far


class UniqueState(NamedTuple):
    """What the unique-items check remembers (rule 9, `guided.ir.cfg.UniqueItems`).

    ``texts`` runs beside the parser stack: the text of each entry (``b""`` where no frame is open
    below it, so that positions outside unique arrays compare equal); ``frames`` are the open
    frames, innermost last, each as (index of its entry in the stack, the values seen).
    """

    texts: tuple[bytes, ...] = (b"",)
    frames: tuple[tuple[int, frozenset], ...] = ()


class CfgPosition(NamedTuple):
    """Where a text has got to in a `CfgIR`.

    ``lexeme`` is empty at a lexeme boundary (only before the first byte: a byte that ends a
    lexeme starts the next one); otherwise it holds the live ``(terminal, DFA state)`` pairs of
    the pending lexeme, by terminal, and ``text`` its bytes where matched names may read them (a
    close tag's name, or a start tag's lexeme that may still be a name; elsewhere ``b""``, so that
    positions in text content and attribute values compare equal).
    """

    stack: tuple  # parser states, bottom first (Earley item sets, first first, for rule 10)
    lexeme: tuple[tuple[int, int], ...] = ()  # a counted terminal's state: (DFA state, count)
    text: bytes = b""
    after_ignore: bool = False  # the lexeme that ended last was an ignored one
    names: NamesState | None = None
    unique: UniqueState | None = None  # rule 9; ``text`` then holds the lexeme while a frame is open
    # rule 12: the open item-count frames, innermost last: (stack index, count, min, max)
    counts: tuple[tuple[int, int, int, int | None], ...] | None = None


Position = Union[CfgPosition, int]


class Reference:
    """The semantics of ``ir`` (a `CfgIR` or a `ByteDFA`) over positions.

    ``start()`` is the position before any input; ``step(pos, byte)`` the position after one more
    byte, or None where the text has left the language; ``is_viable(pos)`` whether the text can
    still be completed (rule 7); ``accepts_end(pos)`` whether it is a complete document (rule 6).
    """

    def __init__(self, ir: CfgIR | ByteDFA):
        if not isinstance(ir, (CfgIR, ByteDFA)):
            raise InvalidIR(f"the reference recogniser takes a CfgIR or a ByteDFA, not a {type(ir).__name__}")
        self.ir = ir

    # -- the common interface --------------------------------------------------------------------

    def start(self) -> Position:
        ir = self.ir
        if isinstance(ir, ByteDFA):
            return ir.initial
        if ir.earley:
            return CfgPosition(stack=(self._closure((), [(r, 0, 0) for r, (lhs, _) in enumerate(ir.rules)
                                                         if lhs == 0]),))
        return CfgPosition(stack=(ir.start_state,), names=NamesState() if ir.matched_names else None,
                           unique=UniqueState() if ir.unique_items else None,
                           counts=() if ir.item_counts else None)

    def step(self, pos: Position, byte: int) -> Position | None:
        if isinstance(pos, int):
            nxt = int(self.ir.transitions[pos, byte])  # type: ignore[union-attr]
            return nxt if nxt != DEAD else None
        return self._step(pos, byte)

    def walk(self, pos: Position | None, data: bytes) -> Position | None:
        """The position after ``data`` (None once it has left the language)."""
        for b in data:
            if pos is None:
                return None
            pos = self.step(pos, b)
        return pos

    def is_viable(self, pos: Position) -> bool:
        if isinstance(pos, int):
            return pos != DEAD  # a trimmed DFA: every live state reaches acceptance
        if not pos.lexeme:
            return True
        # Rule 7: the pending lexeme is alive in a candidate the parser accepts here (an ignored
        # candidate always counts).
        ir = self.ir
        assert isinstance(ir, CfgIR)
        if pos.unique is not None and pos.unique.frames:
            # Rule 9's refinement of rule 7: a lexeme with few ways left to end must end one of them.
            ends = self.lexeme_completions(pos)
            if ends is not None:
                return any(self.end_lexeme(p) is not None for p in ends)
        if pos.counts is not None:  # rule 12: the count checks are part of "the parser accepts"
            return any(t in ir.ignore or self._feed_counts(pos.stack, pos.counts, t) is not None
                       for t, _ in pos.lexeme)
        return any(t in ir.ignore or self.feed(pos.stack, t) is not None for t, _ in pos.lexeme)

    def accepts_end(self, pos: Position) -> bool:
        if isinstance(pos, int):
            return bool(self.ir.accepting[pos])  # type: ignore[union-attr]
        if pos.lexeme:
            ended = self.end_lexeme(pos)
            if ended is None:
                return False
            pos = ended
        if pos.names is not None and pos.names.open:
            return False  # rule 8: an element is still open
        if pos.unique is not None:
            return self._can_end_unique(pos.stack, pos.unique)
        return self.can_end(pos.stack)

    # -- lexing (rules 1 to 3) ---------------------------------------------------------------------

    def candidates(self, stack: tuple, after_ignore: bool) -> list[int]:
        """Rule 1: the terminals that may start a lexeme here."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        top = stack[-1]
        if ir.earley:  # rule 10: the terminals some item expects next
            out = sorted({s for r, d, _ in top for s in ir.rule_rhs[r][d:d + 1] if s >= 0})
            if ir.ignore_repeats or not after_ignore:
                out = sorted(set(out) | ir.ignore)
            return out
        out = sorted(t for t in ir.actions[top] if t != END)
        if top not in ir.no_ignore_states and (ir.ignore_repeats or not after_ignore):
            out = sorted(set(out) | ir.ignore)
        return out

    def _step(self, pos: CfgPosition, byte: int) -> CfgPosition | None:
        ir = self.ir
        assert isinstance(ir, CfgIR)
        if pos.lexeme:
            grown = self.read(pos.lexeme, byte)
            if grown:  # rule 2: the lexeme grows while a candidate can read the byte
                return self._check_name_prefix(pos._replace(lexeme=grown, text=self._text(pos, grown, pos.text, byte)))
            ended = self.end_lexeme(pos)  # the byte extends no candidate: the lexeme ends here
            if ended is None:
                return None
            pos = ended
        start = tuple((t, self.initial(t)) for t in self.candidates(pos.stack, pos.after_ignore)
                      if ir.terminals[t].dfa.initial != DEAD)
        grown = self.read(start, byte)
        if not grown:
            return None
        return self._check_name_prefix(pos._replace(lexeme=grown, text=self._text(pos, grown, b"", byte)))

    def initial(self, t: int):
        """A terminal's component before its first byte: its DFA's initial state, and for a
        counted terminal (rule 11) that state with a count of 0."""
        term = self.ir.terminals[t]  # type: ignore[union-attr]
        return term.dfa.initial if term.count is None else (term.dfa.initial, 0)

    def read(self, lexeme: tuple, byte: int) -> tuple:
        terms = self.ir.terminals  # type: ignore[union-attr]
        out: list[tuple[int, Any]] = []
        for t, s in lexeme:
            term = terms[t]
            if term.count is None:
                s2 = int(term.dfa.transitions[s, byte])
                if s2 != DEAD:
                    out.append((t, s2))
                continue
            # Rule 11: a counted component is (DFA state, count so far); it reads the byte only
            # while a completion can still end within the bounds.
            state, n = s
            s2 = int(term.dfa.transitions[state, byte])
            if s2 == DEAD:
                continue
            n2 = n + int(term.count.counted[state, byte])
            if term.count_alive(s2, n2):
                out.append((t, (s2, n2)))
        return tuple(out)

    def _accepting(self, t: int, s) -> bool:
        term = self.ir.terminals[t]  # type: ignore[union-attr]
        if term.count is None:
            return bool(term.dfa.accepting[s])
        return bool(term.dfa.accepting[s[0]]) and term.count.accepts(s[1])

    def _text(self, pos: CfgPosition, lexeme: tuple[tuple[int, int], ...], text: bytes, byte: int) -> bytes:
        """The pending lexeme's bytes where a name check may read them: inside a close tag, or
        inside a start tag while the lexeme may still be a name.  Elsewhere ``b""``."""
        if pos.unique is not None:
            return text + bytes((byte,)) if pos.unique.frames else b""
        names = pos.names
        if names is None or names.mode == OUT:
            return b""
        name = self.ir.matched_names.name  # type: ignore[union-attr]
        if names.mode == CLOSE_NAME or any(t == name for t, _ in lexeme):
            return text + bytes((byte,))
        return b""

    def choose(self, lexeme: tuple[tuple[int, int], ...]) -> int | None:
        """Rule 3: the terminal a lexeme ending here is an instance of (None: none accepts it)."""
        terms = self.ir.terminals  # type: ignore[union-attr]
        accepting = [t for t, s in lexeme if self._accepting(t, s)]
        if not accepting:
            return None
        return min(accepting, key=lambda t: (-terms[t].priority, not terms[t].is_string, terms[t].order))

    def end_lexeme(self, pos: CfgPosition) -> CfgPosition | None:
        """The pending lexeme ends: rule 3 picks its terminal, rule 4 feeds it, rule 8 checks names."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        terminal = self.choose(pos.lexeme)
        if terminal is None:
            return None
        if terminal in ir.ignore:  # rule 4: an ignored lexeme is dropped
            return pos._replace(lexeme=(), text=b"", after_ignore=True)
        if pos.unique is not None:
            fed = self._feed_unique(pos.stack, pos.unique, terminal, pos.text)
            if fed is None:
                return None
            return CfgPosition(stack=fed[0], unique=fed[1])
        if pos.counts is not None:
            counted = self._feed_counts(pos.stack, pos.counts, terminal)
            if counted is None:
                return None
            return CfgPosition(stack=counted[0], counts=counted[1])
        stack = self.feed(pos.stack, terminal)
        if stack is None:
            return None
        names = pos.names
        if names is not None:
            names = self._names_after(names, terminal, pos.text)
            if names is None:
                return None
        return CfgPosition(stack=stack, names=names)

    # -- parsing (rules 4 to 6) --------------------------------------------------------------------

    def feed(self, stack: tuple, terminal: int) -> tuple | None:
        """Rules 4 and 5: reductions while the table says reduce, then one shift (None: an error)."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        if ir.earley:  # rule 10: Earley's scan, then prediction and completion
            scanned = [(r, d + 1, o) for r, d, o in stack[-1] if ir.rule_rhs[r][d:d + 1] == (terminal,)]
            return stack + (self._closure(stack, scanned),) if scanned else None
        while True:
            action = ir.actions[stack[-1]].get(terminal)
            if action is None:
                return None
            if action >= 0:
                stack = stack + (action,)
                if ir.max_nesting and sum(s in ir.nesting_states for s in stack) > ir.max_nesting:
                    return None
                return stack
            stack = self._reduce(stack, action)

    def can_end(self, stack: tuple) -> bool:
        """Rule 6: the parser reaches ``end_state`` by reducing on END."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        if ir.earley:  # rule 10: an item of the start symbol spans the whole input
            return any(o == 0 and d == len(ir.rule_rhs[r]) and ir.rules[r][0] == 0 for r, d, o in stack[-1])
        while stack[-1] != ir.end_state:
            action = ir.actions[stack[-1]].get(END)
            if action is None or action >= 0:
                return False
            stack = self._reduce(stack, action)
        return True

    def _closure(self, columns: tuple, items: list[tuple[int, int, int]]) -> frozenset[tuple[int, int, int]]:
        """Rule 10: the Earley item set holding ``items`` after ``columns`` (earlier item sets):
        items are (rule, dot, origin: the index of the item set the rule started in)."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        here = len(columns)
        nullable = self.__dict__.get("_nullable_memo") or self.__dict__.setdefault("_nullable_memo", self._nullable())
        found = set(items)
        todo = list(found)
        while todo:
            r, d, o = todo.pop()
            rhs = ir.rule_rhs[r]
            new = []
            if d == len(rhs):  # completion: the items of the origin waiting for this rule's lhs
                lhs = ir.rules[r][0]
                for r2, d2, o2 in list(found if o == here else columns[o]):
                    if ir.rule_rhs[r2][d2:d2 + 1] == (~lhs,):
                        new.append((r2, d2 + 1, o2))
            elif rhs[d] < 0:  # prediction; a nullable symbol is also stepped over (Aycock and Horspool)
                new = [(r2, 0, here) for r2, (lhs, _) in enumerate(ir.rules) if lhs == ~rhs[d]]
                if nullable[~rhs[d]]:
                    new.append((r, d + 1, o))
            for item in new:
                if item not in found:
                    found.add(item)
                    todo.append(item)
        return frozenset(found)

    def _nullable(self) -> list[bool]:
        ir = self.ir
        assert isinstance(ir, CfgIR)
        out = [False] * len(ir.nonterminals)
        changed = True
        while changed:
            changed = False
            for (lhs, _), rhs in zip(ir.rules, ir.rule_rhs):
                if not out[lhs] and all(s < 0 and out[~s] for s in rhs):
                    out[lhs] = changed = True
        return out

    def _reduce(self, stack: tuple[int, ...], action: int) -> tuple[int, ...]:
        lhs, length = self.ir.rules[-action - 1]  # type: ignore[union-attr]
        if length:
            stack = stack[:-length]
        return stack + (self.ir.gotos[stack[-1]][lhs],)  # type: ignore[union-attr]

    # -- matched names (rule 8) --------------------------------------------------------------------

    def _names_after(self, names: NamesState, terminal: int, text: bytes) -> NamesState | None:
        """The names check after a lexeme of ``terminal`` spelt ``text`` is fed to the parser."""
        spec = self.ir.matched_names  # type: ignore[union-attr]
        assert spec is not None
        mode = names.mode
        if terminal == spec.open_start:
            return names._replace(mode=OPEN_NAME, element=b"", attributes=frozenset())
        if terminal == spec.close_start:
            return names._replace(mode=CLOSE_NAME)
        if terminal == spec.open_end:
            opened = names.open + (names.element,) if mode == TAG else names.open
            return NamesState(open=opened)
        if terminal == spec.empty_end:
            return NamesState(open=names.open)
        if terminal == spec.name:
            if mode == OPEN_NAME:
                return names._replace(mode=TAG, element=text)
            if mode == TAG:
                if spec.unique_attributes and text in names.attributes:
                    return None
                return names._replace(attributes=names.attributes | {text})
            if mode == CLOSE_NAME:
                if not names.open or text != names.open[-1]:
                    return None
                return NamesState(open=names.open[:-1])
        return names

    def _check_name_prefix(self, pos: CfgPosition) -> CfgPosition | None:
        """Inside a close tag the name so far must be a prefix of the innermost open name."""
        names = pos.names
        if names is None or names.mode != CLOSE_NAME:
            return pos
        expected = names.open[-1] if names.open else b""
        return pos if expected.startswith(pos.text) else None


    # -- unique items (rule 9) ---------------------------------------------------------------------

    def _feed_unique(self, stack: tuple[int, ...], unique: UniqueState, terminal: int,
                     text: bytes) -> tuple[tuple[int, ...], UniqueState] | None:
        """`feed` with rule 9: reductions check items, a shift records the lexeme's text, may open
        a frame, and must not force a duplicate item."""
        ir = self.ir
        assert isinstance(ir, CfgIR) and ir.unique_items is not None
        texts, frames = unique.texts, unique.frames
        while True:
            action = ir.actions[stack[-1]].get(terminal)
            if action is None:
                return None
            if action >= 0:
                stack = stack + (action,)
                if ir.max_nesting and sum(s in ir.nesting_states for s in stack) > ir.max_nesting:
                    return None
                texts = texts + (text if frames else b"",)
                if action in ir.unique_items.open_states:
                    frames = frames + ((len(stack) - 1, frozenset()),)
                if not self._forced_ok(stack, texts, frames):
                    return None
                return stack, UniqueState(texts, frames)
            reduced = self._reduce_unique(stack, texts, frames, action)
            if reduced is None:
                return None
            stack, texts, frames = reduced

    def lexeme_completions(self, pos: CfgPosition) -> list[CfgPosition] | None:
        """Rule 9: the positions after each way ``pos``'s pending lexeme can still end (each byte
        string after which a candidate accepts), or None when they are infinitely many or more
        than `UniqueItems.COMPLETIONS`."""
        ends = self._lexeme_ends(pos.lexeme)
        if ends is None:
            return None
        return [pos._replace(lexeme=lexeme, text=pos.text + more) for more, lexeme in ends]

    def _lexeme_ends(self, lexeme: tuple[tuple[int, int], ...]):
        """(bytes still to read, the lexeme then) for each way ``lexeme`` can end; None: too many."""
        memo = self.__dict__.setdefault("_ends_memo", {})
        if lexeme in memo:
            return memo[lexeme]
        ir = self.ir
        assert isinstance(ir, CfgIR) and ir.unique_items is not None
        if any(not isinstance(state, int) for _, state in lexeme):
            memo[lexeme] = None  # a counted terminal is alive: many ways (rule 9)
            return None
        limit = ir.unique_items.COMPLETIONS
        out: list = []
        path: set = set()

        def visit(lex, more) -> bool:
            if lex in path:
                return False  # a cycle: infinitely many
            if self.choose(lex) is not None:
                out.append((more, lex))
                if len(out) > limit:
                    return False
            path.add(lex)
            readable = sorted({int(b) for t, s in lex for b in np.flatnonzero(ir.terminals[t].dfa.transitions[s] != DEAD)})
            for b in readable:
                if not visit(self.read(lex, b), more + bytes((b,))):
                    return False
            path.discard(lex)
            return True

        result = tuple(out) if visit(lexeme, b"") else None
        memo[lexeme] = result
        return result

    def _reduce_unique(self, stack, texts, frames, action):
        """One reduction with rule 9's bookkeeping (None: it reduces a duplicate item)."""
        ir = self.ir
        rule = -action - 1
        lhs, length = ir.rules[rule]  # type: ignore[union-attr]
        keep = len(stack) - length  # entries that stay; the new one goes at index ``keep``
        spanned = b"".join(texts[keep:])
        frames = tuple(f for f in frames if f[0] < keep)  # frames whose entry is popped close
        if rule in ir.unique_items.item_rules and frames:  # type: ignore[union-attr]
            value = canonical_json(spanned)
            at, seen = frames[-1]
            if value in seen:
                return None
            frames = frames[:-1] + ((at, seen | {value}),)
        stack = stack[:keep] + (ir.gotos[stack[keep - 1]][lhs],)  # type: ignore[union-attr]
        texts = texts[:keep] + (spanned if frames else b"",)
        return stack, texts, frames

    def _forced_rule(self, state: int) -> int | None:
        """The reduction every action of ``state`` does (None: it has a shift, none, or several)."""
        actions = set(self.ir.actions[state].values())  # type: ignore[union-attr]
        if len(actions) == 1:
            (a,) = actions
            if a < 0:
                return a
        return None

    def _forced_ok(self, stack, texts, frames) -> bool:
        """Rule 9's look-ahead: the reductions the top state forces reduce no duplicate item."""
        for _ in range(10_000):  # a chain of unit rules that cycles shifts nothing: stop
            if not frames:
                return True
            action = self._forced_rule(stack[-1])
            if action is None:
                return True
            reduced = self._reduce_unique(stack, texts, frames, action)
            if reduced is None:
                return False
            stack, texts, frames = reduced
        return True

    def _can_end_unique(self, stack: tuple[int, ...], unique: UniqueState) -> bool:
        """`can_end` with rule 9's checks on the reductions."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        texts, frames = unique.texts, unique.frames
        while stack[-1] != ir.end_state:
            action = ir.actions[stack[-1]].get(END)
            if action is None or action >= 0:
                return False
            reduced = self._reduce_unique(stack, texts, frames, action)
            if reduced is None:
                return False
            stack, texts, frames = reduced
        return True


    # -- item counts (rule 12) ---------------------------------------------------------------------

    def _feed_counts(self, stack: tuple[int, ...], frames: tuple, terminal: int) -> tuple[tuple, tuple] | None:
        """`feed` with rule 12: item reductions count in the innermost frame, the shift is checked
        against its bounds, and a shift into an open state opens a frame."""
        ir = self.ir
        assert isinstance(ir, CfgIR) and ir.item_counts is not None
        spec = ir.item_counts
        while True:
            action = ir.actions[stack[-1]].get(terminal)
            if action is None:
                return None
            if action >= 0:
                break
            rule = -action - 1
            keep = len(stack) - ir.rules[rule][1]  # entries that stay
            frames = tuple(f for f in frames if f[0] < keep)  # frames whose entry is popped close
            if rule in spec.item_rules and frames:
                at, n, lo, hi = frames[-1]
                frames = frames[:-1] + ((at, n + 1, lo, hi),)
            stack = self._reduce(stack, action)
        if frames:
            _, n, lo, hi = frames[-1]
            if action in spec.separator_states and hi is not None and n >= hi:
                return None  # a separator after the last item allowed
            if action in spec.close_states and n < lo:
                return None  # the array closes before its minimum
        stack = stack + (action,)
        if ir.max_nesting and sum(s in ir.nesting_states for s in stack) > ir.max_nesting:
            return None
        bound = spec.by_state.get(action)
        if bound is not None:
            frames = frames + ((len(stack) - 1, 0, bound[0], bound[1]),)
        return stack, frames


def accepts(ir: CfgIR | ByteDFA, data: bytes) -> bool:
    """Is ``data`` a complete document of ``ir``?"""
    ref = Reference(ir)
    pos = ref.walk(ref.start(), data)
    return pos is not None and ref.accepts_end(pos)


def is_prefix(ir: CfgIR | ByteDFA, data: bytes) -> bool:
    """Can ``data`` still be completed to a document of ``ir`` (what masks allow)?"""
    ref = Reference(ir)
    pos = ref.walk(ref.start(), data)
    return pos is not None and ref.is_viable(pos)
