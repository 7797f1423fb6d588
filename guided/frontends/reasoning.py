"""Reasoning first, then the constraint: a think block of free text before the answer's language.

`Reasoning(answer, start="<think>", end="</think>")` accepts ``start``, any text that does not
contain ``end``, ``end``, then a document of ``answer`` (any spec, or ``None`` for free text).
The first occurrence of ``end`` closes the thought.  ``opened=True`` drops ``start`` from the
language (the prompt already ends with it: chat templates that open the thought themselves).
Up to 4 whitespace bytes may follow ``end`` before the answer, unless the answer's own first
lexemes may start with whitespace (its grammar then decides).

Its intermediate form is the answer's with the thought put in front: for an automaton the
concatenation; for a `CfgIR` one more terminal (``THOUGHT``) that a new initial state shifts into
the answer's initial state.  The thought's length in tokens is not a property of the language:
``max_tokens`` is applied by `guided.engine.reasoning` on the compiled grammar (the end marker
is forced once the budget is spent).

>>> from guided.frontends.regex import Regex
>>> from guided.ir.dfa import ByteDFA
>>> ir = Reasoning(Regex("yes|no")).to_ir()
>>> isinstance(ir, ByteDFA), ir.fullmatch(b"<think>hmm, no idea</think>\\n\\nyes"), ir.fullmatch(b"yes")
(True, True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from guided.errors import SpecError
from guided.ir import ByteDFA, CfgIR, Terminal
from guided.ir.dfa_ops import concat_dfas

__all__ = ["Reasoning", "thought_dfa"]

WHITESPACE = b" \t\r\n"


@dataclass(frozen=True)
class Reasoning:
    """A think block, then a document of ``answer`` (see the module docstring).

    ``max_tokens``: the thought's token budget (``None``: unbounded), applied when the spec is
    compiled (`guided.compile` wraps the grammar in `guided.engine.reasoning.ThoughtBudget`).
    """

    answer: Any = None
    start: str = "<think>"
    end: str = "</think>"
    opened: bool = False
    max_tokens: int | None = None

    def __post_init__(self):
        if not isinstance(self.start, str) or not isinstance(self.end, str) or not self.end:
            raise SpecError(f"reasoning markers must be strings and the end marker non-empty, got "
                            f"{self.start!r}, {self.end!r}")
        if self.end in self.start and self.start:
            raise SpecError(f"the end marker {self.end!r} must not occur in the start marker {self.start!r}")
        if self.max_tokens is not None and (not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool)
                                            or self.max_tokens < 0):
            raise SpecError(f"max_reasoning_tokens must be a non-negative integer, got {self.max_tokens!r}")

    def without_budget(self) -> "Reasoning":
        return Reasoning(self.answer, self.start, self.end, self.opened, None)

    @property
    def prefix(self) -> bytes:
        """What the output starts with before the thought's text (the start marker, unless opened)."""
        return b"" if self.opened else self.start.encode()

    def to_ir(self) -> ByteDFA | CfgIR:
        inner = _answer_ir(self.answer)
        thought = thought_dfa(self.start.encode(), self.end.encode(), opened=self.opened)
        if isinstance(inner, ByteDFA):
            return concat_dfas([thought, _whitespace_dfa(4), inner], what="reasoning, then the answer")
        return prefix_cfg(inner, thought)

    def split(self, text: str) -> tuple[str | None, str]:
        """``(thought, answer)`` of an output of this spec: the thought without its markers and
        surrounding whitespace, the answer without the whitespace before it."""
        body = text[len(self.start):] if not self.opened and text.startswith(self.start) else text
        at = body.find(self.end)
        if at < 0:
            return body.strip(), ""
        return body[:at].strip(), body[at + len(self.end):].lstrip(WHITESPACE.decode())


def _answer_ir(answer: Any) -> ByteDFA | CfgIR:
    if answer is None:
        from guided.frontends.regex import Regex, regex_to_dfa

        return regex_to_dfa(Regex(r"(?s:.)*"))
    from guided.frontends.pydantic import is_pydantic_model, pydantic_spec

    if is_pydantic_model(answer):
        answer = pydantic_spec(answer)
    if not callable(getattr(answer, "to_ir", None)):
        raise SpecError(f"reasoning needs a spec for the answer, got {type(answer).__name__}")
    return answer.to_ir()


def _whitespace_dfa(n: int) -> ByteDFA:
    from guided.frontends.regex import Regex, regex_to_dfa

    return regex_to_dfa(Regex(r"[ \t\r\n]{0,%d}" % n))


def thought_dfa(start: bytes, end: bytes, *, opened: bool = False, trailing_whitespace: int = 0) -> ByteDFA:
    """``start`` (unless ``opened``), UTF-8 text without ``end``, ``end``, then up to
    ``trailing_whitespace`` whitespace bytes."""
    from guided.frontends.regex import Regex, regex_to_dfa
    from guided.frontends.tools import _free_text_dfa

    body = _free_text_dfa(end, then_forbidden=True)
    if not opened and start:
        body = concat_dfas([regex_to_dfa(Regex(re.escape(start.decode()))), body], what="thought")
    if trailing_whitespace:
        body = concat_dfas([body, _whitespace_dfa(trailing_whitespace)], what="thought")
    return body


def _starts_with_whitespace(dfa: ByteDFA) -> bool:
    row = dfa.transitions[dfa.initial]
    return any(int(row[b]) for b in WHITESPACE)


def prefix_cfg(inner: CfgIR, thought: ByteDFA) -> CfgIR:
    """``inner``'s tables with a ``THOUGHT`` terminal in front (see the module docstring)."""
    if inner.earley:
        raise SpecError("reasoning before a grammar parsed by Earley (its LALR(1) tables have conflicts) is not "
                        "supported yet: pass Grammar(..., parser='lalr') to use Lark's LALR resolution, or "
                        "remove the conflicts")
    firsts = [t for t in inner.actions[inner.start_state] if t >= 0 and t not in inner.ignore]
    if not any(_starts_with_whitespace(inner.terminals[t].dfa) for t in firsts):
        thought = concat_dfas([thought, _whitespace_dfa(4)], what="thought")
    index = len(inner.terminals)
    terminals = inner.terminals + (Terminal("THOUGHT", thought, order=index),)
    initial = len(inner.actions)
    return CfgIR(
        terminals=terminals, ignore=inner.ignore, actions=inner.actions + ({index: inner.start_state},),
        gotos=inner.gotos + ({},), rules=inner.rules, nonterminals=inner.nonterminals, start_state=initial,
        end_state=inner.end_state, source=f"reasoning, then: {inner.source[:150]}", rule_names=inner.rule_names,
        ignore_repeats=inner.ignore_repeats, no_ignore_states=inner.no_ignore_states | {initial},
        nesting_states=inner.nesting_states, max_nesting=inner.max_nesting, matched_names=inner.matched_names,
    )

