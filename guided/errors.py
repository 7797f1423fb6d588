"""The exceptions guided raises: every failure a user can cause has its own type and names its cause."""

from __future__ import annotations


class GuidedError(Exception):
    """Base class of every error guided raises on purpose."""


class SpecError(GuidedError, ValueError):
    """A constraint (regex, grammar, schema) is malformed or uses something guided cannot enforce."""


class RegexError(SpecError):
    """A regex is malformed or uses an unsupported construct; `position` is the offending offset."""

    def __init__(self, message: str, pattern: str, position: int | None = None):
        self.pattern = pattern
        self.position = position
        where = ""
        if position is not None:
            where = f" at position {position}\n  {pattern}\n  {' ' * position}^"
        super().__init__(f"{message}{where}")


class LimitExceeded(GuidedError):
    """Compiling a constraint went past a configured limit (states, time, memory)."""


class UsageError(GuidedError, TypeError, ValueError):
    """A public function got an argument of the wrong type or value; the message names the
    argument and what it takes.  Also a `TypeError` and a `ValueError`, as Python's own checks are."""


class ConstraintViolation(GuidedError):
    """A token was fed to a matcher that does not allow it."""


class TokenizerMismatch(GuidedError, ValueError):
    """A compiled grammar, a vocabulary and a model's logits disagree on the token space."""


class ModelUnavailable(GuidedError):
    """The requested model cannot be found or loaded locally."""
