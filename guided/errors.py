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
    """Compiling a constraint went past a configured limit (states, time, nesting depth, repeat count)."""


class UsageError(GuidedError, TypeError, ValueError):
    """A public function got an argument of the wrong type or value; the message names the
    argument and what it takes.  Also a `TypeError` and a `ValueError`, as Python's own checks are."""


class ConstraintViolation(GuidedError):
    """A token was fed to a matcher that does not allow it."""


class TokenizerMismatch(GuidedError, ValueError):
    """A compiled grammar, a vocabulary and a model's logits disagree on the token space."""


class ModelUnavailable(GuidedError):
    """The requested model cannot be found or loaded locally."""


class InvalidIR(GuidedError, ValueError):
    """An intermediate form (`guided.ir`), built or read back from bytes, breaks one of its stated
    invariants; the message names the field and the offending index."""


class UnsafeCache(GuidedError):
    """A cache folder or file is not private to this user (owned by someone else, or writable by
    others), so guided refuses to read it; the message names the path and the fix."""


class CacheWarning(UserWarning):
    """A cache entry was ignored (truncated, tampered with, planted) or a cache was turned off;
    guided rebuilt what it needed and carries on."""


def warn_caller(warning: Warning) -> None:
    """Issue ``warning`` attributed to the first frame outside guided: the user's line that
    compiled or generated, however deep inside the library the cause was found."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    level, frame = 2, sys._getframe(1)  # stacklevel 1 is this function, 2 its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        level += 1
        frame = frame.f_back
    warnings.warn(warning, stacklevel=level)
