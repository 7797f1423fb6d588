"""The errors and the warning of the JSON Schema front-end, each naming the part of the schema."""

from __future__ import annotations

from guided.errors import LimitExceeded, SpecError


class UnsupportedSchema(SpecError):
    """A schema keyword guided cannot enforce exactly (strict mode), naming its JSON pointer."""

    def __init__(self, pointer: str, keyword: str, reason: str):
        self.pointer = pointer or "#"
        self.keyword = keyword
        self.reason = reason
        super().__init__(f"{self.pointer}: {keyword}: {reason}")


class InvalidSchema(UnsupportedSchema):
    """The schema is not valid JSON Schema (a keyword of the wrong type, an unknown type name, text
    that is not JSON); names the JSON pointer and the keyword."""


class SchemaTooLarge(LimitExceeded):
    """The schema's grammar went past a configured limit; names the part of the schema."""

    def __init__(self, pointer: str, message: str):
        self.pointer = pointer or "#"
        super().__init__(f"{self.pointer}: {message}")


class RelaxedSchemaWarning(UserWarning):
    """``lenient=True`` relaxed keywords it cannot enforce; the message lists every one."""



class UnknownFormatWarning(RelaxedSchemaWarning):
    """The schema names string ``format``s that neither guided nor the JSON Schema specification
    knows; as the specification says, they constrain nothing (compiled as plain strings).  The
    message lists each one with its JSON pointer; ``JsonSchema(..., unknown_formats="refuse")``
    raises `UnsupportedSchema` instead."""
