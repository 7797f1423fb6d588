"""`Generation`: what ``guided.generate(..., details=True)`` returns, the output with how it ended.

>>> g = Generation(text='{"a": 1}', value={"a": 1}, reasoning=None, finish_reason="stop",
...                prompt_tokens=12, completion_tokens=5)
>>> g.value, g.finish_reason, g.total_tokens
({'a': 1}, 'stop', 17)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["FINISH_REASONS", "FinishReason", "Generation", "finish_reason_of"]

FinishReason = Literal["stop", "length", "closed_early", "timeout"]
FINISH_REASONS: tuple[str, ...] = ("stop", "length", "closed_early", "timeout")


@dataclass(frozen=True)
class Generation:
    """One generated output and how it ended.

    ``text``: the raw output (the reasoning and its markers included, when there is one);
    ``value``: what ``generate`` returns without ``details=True`` (a Pydantic instance, a JSON
    value, a list of `guided.ToolCall`, or text); ``reasoning``: the text between the think
    markers (``None`` without ``reasoning=``); ``finish_reason``:

    - ``"stop"``: a natural end (the model's end of sequence, the end of the document, a stop string);
    - ``"length"``: ``max_new_tokens`` ran out (free text is cut there);
    - ``"closed_early"``: budget-aware closing had to shorten the document to end it within
      ``max_new_tokens`` (it refused the token the model ranked first among the valid ones);
    - ``"timeout"``: ``timeout=`` ran out (a document is closed by the shortest way first).

    ``prompt_tokens``: tokens of the prompt; ``completion_tokens``: tokens generated (the end of
    sequence not counted); ``reasoning_tokens``: those of them up to the end of the thought.
    """

    text: str
    value: Any
    reasoning: str | None
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def finish_reason_of(decoder_reason: str, closed_early: bool) -> FinishReason:
    """The public finish reason of a decoder's ``Completion.finish_reason``.

    >>> finish_reason_of("eos", False), finish_reason_of("eos", True), finish_reason_of("stop", False)
    ('stop', 'closed_early', 'stop')
    """
    if decoder_reason == "closed_early":  # the decoders' own name for it (`Completion.finish_reason`)
        return "closed_early"
    if decoder_reason == "timeout":
        return "timeout"
    if decoder_reason == "length":
        return "length"
    return "closed_early" if closed_early else "stop"
