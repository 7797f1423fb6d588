"""Parser stacks: persistent, interned LR stacks and the LALR(1) moves on them, nesting bound included.

A stack is a linked list of `Stack` nodes, interned per grammar: equal stacks are the same
object, so copies and rollbacks of a matcher are free and every per-stack memo (the result of
feeding each terminal, the terminals viable there) is shared by all matchers of the grammar.
The moves are those of `guided.ir.cfg` (rules 4 to 6 of its semantics).

>>> import guided
>>> ir = guided.Grammar('start: "a" "b"').to_ir()
>>> stacks = StackTable(ir)
>>> a, b = ir.terminal_index("A"), ir.terminal_index("B")
>>> after_a = stacks.feed(stacks.root, a)
>>> stacks.feed(stacks.root, b) is None, stacks.can_end(after_a), stacks.can_end(stacks.feed(after_a, b))
(True, False, True)
>>> stacks.feed(stacks.root, a) is after_a   # interned and memoised
True
"""

from __future__ import annotations

import itertools
import threading
from typing import Literal

import numpy as np

from guided.engine.tuning import INTERN_LIMIT
from guided.ir import END, CfgIR


class Stack:
    """An interned node of a persistent LR stack: its state and the node below it."""

    __slots__ = ("state", "parent", "uid", "depth", "height", "feeds", "viable", "__weakref__")

    def __init__(self, state: int, parent: "Stack | None", uid: int, depth: int):
        self.state = state
        self.parent = parent
        self.uid = uid
        self.depth = depth  # nodes of `CfgIR.nesting_states` in the stack
        self.height: int = 0 if parent is None else parent.height + 1  # nodes below this one
        # terminal -> the stack after feeding it (None: a syntax error); END -> can the input end
        self.feeds: dict[int, Stack | None | bool] = {}
        # The terminals the parser accepts here, set by `CfgGrammar.viable_terminals`.
        self.viable: np.ndarray | None | Literal[False] = False  # False: not computed yet


_UNKNOWN = object()  # not in a memo (a missing key is read once: another thread may empty the memo)


class StackTable:
    """The stacks of one grammar, interned, and the parser's moves on them."""

    def __init__(self, ir: CfgIR):
        self.ir = ir
        self._lock = threading.Lock()
        # Strong references keep equal stacks the same object (and their caches warm) across
        # requests; past INTERN_LIMIT nodes the table restarts, which costs only cache misses.
        # The restart also empties the old nodes' memos: a node's `feeds` holds the stacks fed
        # from it, so through the root every stack ever made stayed reachable (a budget-mask
        # search of a fuzzed grammar kept 800,000 objects per document, and the garbage
        # collector's passes over them made each later search slower).
        self._interned: dict[tuple[int, int], Stack] = {}
        self._uids = itertools.count(1)
        self.root = self.node(ir.start_state, None)

    def node(self, state: int, parent: Stack | None) -> Stack:
        """The interned stack ``parent`` with ``state`` pushed."""
        key = (state, parent.uid if parent is not None else 0)
        with self._lock:
            node = self._interned.get(key)
            if node is None:
                if len(self._interned) >= INTERN_LIMIT:
                    old, self._interned = self._interned, {}
                    for stale in old.values():
                        stale.feeds = {}
                        stale.viable = False
                depth = (parent.depth if parent is not None else 0) + (state in self.ir.nesting_states)
                node = Stack(state, parent, next(self._uids), depth)
                self._interned[key] = node
        return node

    def feed(self, stack: Stack, terminal: int) -> Stack | None:
        """The stack after shifting ``terminal`` (reductions first), or None if it is a syntax error."""
        cached = stack.feeds.get(terminal, _UNKNOWN)
        if cached is not _UNKNOWN:
            return cached  # type: ignore[return-value]
        ir = self.ir
        node: Stack | None = stack
        result = None
        reductions = _Reductions()
        while node is not None:
            action = ir.actions[node.state].get(terminal)
            if action is None:
                break
            if action >= 0:
                result = self.node(action, node)
                if ir.max_nesting and result.depth > ir.max_nesting:
                    result = None
                break
            node = self._reduce(node, action)
            if reductions.cycle(node):
                break
        stack.feeds[terminal] = result
        return result

    def can_end(self, stack: Stack) -> bool:
        """Does the input accepted so far form a complete sentence?"""
        cached = stack.feeds.get(END)
        if cached is not None:
            return bool(cached)
        ir = self.ir
        node: Stack | None = stack
        ok = False
        reductions = _Reductions()
        while node is not None:
            if node.state == ir.end_state:
                ok = True
                break
            action = ir.actions[node.state].get(END)
            if action is None or action >= 0:
                break
            node = self._reduce(node, action)
            if reductions.cycle(node):
                break
        stack.feeds[END] = ok
        return ok

    def _reduce(self, node: Stack, action: int) -> Stack:
        """Pop a rule's right-hand side and push the state its left-hand side leads to."""
        lhs, length = self.ir.rules[-action - 1]
        below: Stack | None = node
        for _ in range(length):
            below = below.parent  # type: ignore[union-attr]  # validated IR: never past the bottom
        assert below is not None
        return self.node(self.ir.gotos[below.state][lhs], below)


class _Reductions:
    """Catches a run of reductions that comes back to a stack it has been on: tables of a grammar
    where a symbol derives itself (``a: a | "x"``, with priorities deciding the collisions) can
    reduce forever.  Such a run shifts nothing, so it is a dead end.  Counting alone costs
    nothing; stacks are remembered only past the first few reductions of a run."""

    __slots__ = ("count", "seen")

    def __init__(self):
        self.count = 0
        self.seen: set[int] | None = None

    def cycle(self, node: Stack) -> bool:
        self.count += 1
        if self.count < 32:
            return False
        if self.seen is None:
            self.seen = set()
        if node.uid in self.seen:
            return True
        self.seen.add(node.uid)
        return False
