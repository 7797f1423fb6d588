"""The reference recogniser: the one executable definition of what an IR accepts, byte by byte.

`guided.ir.cfg` states the semantics of a `CfgIR` in words (rules 1 to 8); this module runs them
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

from typing import NamedTuple, Union

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

    stack: tuple[int, ...]  # parser states, bottom first
    lexeme: tuple[tuple[int, int], ...] = ()
    text: bytes = b""
    after_ignore: bool = False  # the lexeme that ended last was an ignored one
    names: NamesState | None = None
    unique: UniqueState | None = None  # rule 9; ``text`` then holds the lexeme while a frame is open


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
        return CfgPosition(stack=(ir.start_state,), names=NamesState() if ir.matched_names else None,
                           unique=UniqueState() if ir.unique_items else None)

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

    def candidates(self, stack: tuple[int, ...], after_ignore: bool) -> list[int]:
        """Rule 1: the terminals that may start a lexeme here."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        top = stack[-1]
        out = sorted(t for t in ir.actions[top] if t != END)
        if top not in ir.no_ignore_states and (ir.ignore_repeats or not after_ignore):
            out = sorted(set(out) | ir.ignore)
        return out

    def _step(self, pos: CfgPosition, byte: int) -> CfgPosition | None:
        ir = self.ir
        assert isinstance(ir, CfgIR)
        if pos.lexeme:
            grown = self._read(pos.lexeme, byte)
            if grown:  # rule 2: the lexeme grows while a candidate can read the byte
                return self._check_name_prefix(pos._replace(lexeme=grown, text=self._text(pos, grown, pos.text, byte)))
            ended = self.end_lexeme(pos)  # the byte extends no candidate: the lexeme ends here
            if ended is None:
                return None
            pos = ended
        start = tuple((t, ir.terminals[t].dfa.initial) for t in self.candidates(pos.stack, pos.after_ignore)
                      if ir.terminals[t].dfa.initial != DEAD)
        grown = self._read(start, byte)
        if not grown:
            return None
        return self._check_name_prefix(pos._replace(lexeme=grown, text=self._text(pos, grown, b"", byte)))

    def _read(self, lexeme: tuple[tuple[int, int], ...], byte: int) -> tuple[tuple[int, int], ...]:
        terms = self.ir.terminals  # type: ignore[union-attr]
        out = []
        for t, s in lexeme:
            s2 = int(terms[t].dfa.transitions[s, byte])
            if s2 != DEAD:
                out.append((t, s2))
        return tuple(out)

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
        accepting = [t for t, s in lexeme if terms[t].dfa.accepting[s]]
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

    def feed(self, stack: tuple[int, ...], terminal: int) -> tuple[int, ...] | None:
        """Rules 4 and 5: reductions while the table says reduce, then one shift (None: an error)."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
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

    def can_end(self, stack: tuple[int, ...]) -> bool:
        """Rule 6: the parser reaches ``end_state`` by reducing on END."""
        ir = self.ir
        assert isinstance(ir, CfgIR)
        while stack[-1] != ir.end_state:
            action = ir.actions[stack[-1]].get(END)
            if action is None or action >= 0:
                return False
            stack = self._reduce(stack, action)
        return True

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
                if not visit(self._read(lex, b), more + bytes((b,))):
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
