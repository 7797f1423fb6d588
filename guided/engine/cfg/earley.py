"""Earley item sets as parser stacks: grammars whose LALR(1) tables have conflicts (`guided.ir.cfg` rule 10).

A `Column` is the Earley item set after the terminals fed so far; it stands where an LR stack
stands in the rest of the engine (`guided.engine.cfg.stacks`): it has a lexer context
(``state``: the terminals some item expects next, registered with `LexerTable.context`), a
``uid`` and per-column memos (``feeds``: the column after each terminal), so the recogniser,
the masks and their caches run on it unchanged.  Items are ``(rule, dot, origin)``, the origin
being the column the rule started in (None: this one).  Columns are interned by their items
(origins by identity), so equal item sets reached by different texts are the same object and
share their masks; a list of repeated elements goes round a few columns rather than making a
new one per element.  Every candidate terminal can be shifted by some parse, so a column is
never restricted the way LALR(1) lookaheads restrict a stack (``viable`` is None).

>>> import guided
>>> ir = guided.Grammar('start: x "a" "b"\\nx: "a" |').to_ir()   # a shift/reduce conflict: Earley
>>> from guided.engine.cfg.lexer import LexerTable
>>> table = EarleyTable(ir, LexerTable(ir, 10_000))
>>> a, b = ir.terminal_index("A"), ir.terminal_index("B")
>>> after_a = table.feed(table.root, a)
>>> table.can_end(table.feed(after_a, b)), table.feed(table.feed(after_a, a), b) is not None
(True, True)
"""

from __future__ import annotations

import itertools
import threading

from guided.engine.cfg.lexer import LexerTable
from guided.engine.tuning import INTERN_LIMIT
from guided.ir import END, CfgIR

_UNKNOWN = object()


class Column:
    """An interned Earley item set (see the module docstring); the engine's stack for rule 10."""

    __slots__ = ("state", "uid", "feeds", "viable", "parent", "height", "depth", "items", "waiting", "scans",
                 "complete", "leo", "__weakref__")

    def __init__(self, uid: int):
        self.uid = uid
        self.feeds: dict = {}
        self.viable = None  # every candidate terminal is shiftable
        self.parent = None
        self.height = 0
        self.depth = 0
        self.state = -1
        self.items: frozenset = frozenset()
        # nonterminal -> the items waiting for it, dot already past it, origins resolved
        self.waiting: dict[int, list[tuple[int, int, Column]]] = {}
        # terminal -> the items expecting it, dot already past it, origins resolved
        self.scans: dict[int, list[tuple[int, int, Column]]] = {}
        self.complete = False
        self.leo: dict[int, tuple | None] = {}  # nonterminal -> `EarleyTable._leo` (memo)


class EarleyTable:
    """The columns of one grammar, interned, and the parser's moves on them (`StackTable`'s interface)."""

    def __init__(self, ir: CfgIR, lexers: LexerTable):
        self.ir = ir
        self.lexers = lexers
        self._lock = threading.Lock()
        self._interned: dict[frozenset, Column] = {}
        self._uids = itertools.count(1)
        self.rhs = ir.rule_rhs
        self.lhs = [lhs for lhs, _ in ir.rules]
        self.by_lhs: list[list[int]] = [[] for _ in ir.nonterminals]
        for r, lhs in enumerate(self.lhs):
            self.by_lhs[lhs].append(r)
        nullable = [False] * len(ir.nonterminals)
        changed = True
        while changed:
            changed = False
            for r, rhs in enumerate(self.rhs):
                if not nullable[self.lhs[r]] and all(s < 0 and nullable[~s] for s in rhs):
                    nullable[self.lhs[r]] = changed = True
        self.nullable = nullable
        self.root = self._column([(r, 0, None) for r in self.by_lhs[0]], root=True)

    def feed(self, column: Column, terminal: int) -> Column | None:
        """The column after ``terminal`` (Earley's scan, prediction, completion), None if no item expects it."""
        cached = column.feeds.get(terminal, _UNKNOWN)
        if cached is not _UNKNOWN:
            return cached
        scanned = column.scans.get(terminal)
        result = self._column(scanned) if scanned else None
        column.feeds[terminal] = result
        return result

    def can_end(self, column: Column) -> bool:
        """Does an item of the start symbol span the whole input?"""
        return column.complete

    def _leo(self, column: Column, symbol: int) -> tuple | None:
        """Leo's deterministic completion: where ``column`` has exactly one item waiting for
        ``symbol``, as its last symbol, completing ``symbol`` completes that item; if that one's
        left-hand side is again the last symbol of the one item waiting for it, and so on, only
        the topmost item of the chain matters (the items below complete nothing else).  Returns
        (that item, whether the chain skipped an item of the start symbol from the root), or None
        where the item waiting is not unique or not complete.  Right recursion then costs a
        constant per token instead of the depth of the recursion."""
        memo = column.leo
        if symbol in memo:
            return memo[symbol]
        memo[symbol] = None  # a chain coming back here stops here: the item is added as it is
        found = None
        waiting = column.waiting.get(symbol)
        if waiting is not None and len(waiting) == 1:
            item = waiting[0]
            r, d, origin = item
            if d == len(self.rhs[r]):
                above = self._leo(origin, self.lhs[r])
                if above is None:
                    found = (item, False)
                else:
                    found = (above[0], above[1] or (self.lhs[r] == 0 and origin is self.root))
        memo[symbol] = found
        return found

    def _column(self, seeds, root: bool = False) -> Column:
        rhs_of, lhs_of, by_lhs, nullable = self.rhs, self.lhs, self.by_lhs, self.nullable
        found: set[tuple] = set()
        waiting_here: dict[int, list[tuple]] = {}  # nonterminal -> items of this column waiting for it
        todo: list[tuple] = []
        through_start = False  # a completion skipped an item of the start symbol from the root

        def add(item) -> None:
            if item not in found:
                found.add(item)
                todo.append(item)
                r, d, _ = item
                rhs = rhs_of[r]
                if d < len(rhs) and rhs[d] < 0:
                    waiting_here.setdefault(~rhs[d], []).append(item)

        for item in seeds:
            add(item)
        while todo:
            r, d, o = todo.pop()
            rhs = rhs_of[r]
            if d == len(rhs):  # completion
                lhs = lhs_of[r]
                if o is None:  # an empty derivation here: nullable, stepped over at prediction too
                    for r2, d2, o2 in list(waiting_here.get(lhs, ())):
                        add((r2, d2 + 1, o2))
                else:
                    leo = self._leo(o, lhs)
                    if leo is not None:  # a chain of right recursion, completed in one step
                        add(leo[0])
                        through_start = through_start or leo[1]
                    else:
                        for item in o.waiting.get(lhs, ()):
                            add(item)
            elif rhs[d] < 0:  # prediction (Aycock and Horspool: a nullable symbol is also stepped over)
                b = ~rhs[d]
                for r2 in by_lhs[b]:
                    add((r2, 0, None))
                if nullable[b]:
                    add((r, d + 1, o))
        key = frozenset((r, d, 0 if o is None else o.uid) for r, d, o in found)
        with self._lock:
            column = self._interned.get(key)
        if column is not None:
            return column
        column = Column(next(self._uids))
        waiting: dict[int, list] = {}
        scans: dict[int, list] = {}
        complete = through_start
        root_column = column if root else self.root
        for r, d, o in found:
            rhs = rhs_of[r]
            origin = column if o is None else o
            if d < len(rhs):
                (waiting.setdefault(~rhs[d], []) if rhs[d] < 0 else scans.setdefault(rhs[d], [])).append(
                    (r, d + 1, origin))
            elif lhs_of[r] == 0 and origin is root_column:
                complete = True
        column.items, column.waiting, column.scans, column.complete = key, waiting, scans, complete
        column.state = self.lexers.context(frozenset(scans))
        with self._lock:
            existing = self._interned.get(key)
            if existing is not None:
                return existing
            if len(self._interned) >= INTERN_LIMIT:
                old, self._interned = self._interned, {}
                for stale in old.values():
                    stale.feeds = {}
            self._interned[key] = column
        return column


__all__ = ["Column", "EarleyTable", "END"]
