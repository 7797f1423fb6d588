"""A direct recogniser for a `CfgIR`: the CFG engine's lexing and parsing rules, without token masks.

Used by the tests to check a compiled schema against many documents quickly: the greedy
contextual lexer (a lexeme grows while any terminal the parser accepts here can extend it; where
none can, the accepting terminal chosen by priority / string-ness / order ends it) over the LALR
tables.
"""

from __future__ import annotations

from guided.ir.dfa import DEAD
from guided.ir import END, CfgIR


def _feed(ir: CfgIR, stack: list[int], terminal: int) -> list[int] | None:
    stack = list(stack)
    while True:
        action = ir.actions[stack[-1]].get(terminal)
        if action is None:
            return None
        if action >= 0:
            stack.append(action)
            if ir.max_nesting and sum(s in ir.nesting_states for s in stack) > ir.max_nesting:
                return None
            return stack
        lhs, length = ir.rules[-action - 1]
        if length:
            del stack[-length:]
        stack.append(ir.gotos[stack[-1]][lhs])


def _can_end(ir: CfgIR, stack: list[int]) -> bool:
    stack = list(stack)
    while True:
        if stack[-1] == ir.end_state:
            return True
        action = ir.actions[stack[-1]].get(END)
        if action is None or action >= 0:
            return False
        lhs, length = ir.rules[-action - 1]
        if length:
            del stack[-length:]
        stack.append(ir.gotos[stack[-1]][lhs])


def accepts(ir: CfgIR, data: bytes) -> bool:
    """Does the engine accept ``data`` as a complete document?"""
    terms = ir.terminals
    stack = [ir.start_state]
    i, n = 0, len(data)
    after_ignore = False
    while True:
        members = [t for t in ir.actions[stack[-1]] if t != END]
        if (ir.ignore_repeats or not after_ignore) and stack[-1] not in ir.no_ignore_states:
            members += sorted(ir.ignore)
        if i == n:
            return _can_end(ir, stack)
        states = {t: terms[t].dfa.initial for t in members}
        j = i
        while j < n:
            nxt = {}
            b = data[j]
            for t, s in states.items():
                s2 = int(terms[t].dfa.transitions[s, b])
                if s2 != DEAD:
                    nxt[t] = s2
            if not nxt:
                break
            states = nxt
            j += 1
        if j == i:
            return False
        accepting = [t for t, s in states.items() if terms[t].dfa.accepting[s]]
        if not accepting:
            return False
        chosen = min(accepting, key=lambda t: (-terms[t].priority, not terms[t].is_string, terms[t].order))
        after_ignore = chosen in ir.ignore
        if not after_ignore:
            new = _feed(ir, stack, chosen)
            if new is None:
                return False
            stack = new
        i = j
