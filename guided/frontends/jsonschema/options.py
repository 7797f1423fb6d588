"""The options one JSON Schema compilation runs under (from the `JsonSchema` spec) and its clock."""

from __future__ import annotations

import time
from typing import Any

from guided.frontends.jsonschema.errors import SchemaTooLarge


class Options:
    """The spec's limits and choices, read once; ``lenient`` is switched off for a while where a
    construction must be exact or fail (``oneOf``, ``contains``)."""

    def __init__(self, spec: Any):
        self.lenient = spec.lenient
        self.ws = 0 if spec.whitespace == "compact" else spec.max_whitespace
        self.closed = spec.closed
        self.canonical = spec.canonical
        self.max_depth = spec.max_depth
        self.max_states = spec.max_states
        self.max_rules = spec.max_rules
        self.max_seconds = spec.max_seconds
        self.max_repeat = spec.max_repeat
        self.max_alternatives = spec.max_alternatives
        self.max_multiple_of = spec.max_multiple_of
        self.max_string_length = spec.max_string_length
        self.max_nesting = spec.max_nesting
        self.unknown_formats = spec.unknown_formats
        self.formats = spec.formats
        self.any_order = spec.property_order == "any"
        self.deadline = time.monotonic() + spec.max_seconds
        # Drafts 6 and later: an integer may be written with a zero fraction (1.0); 3 and 4: not.
        self.int_fraction = True

    def check_time(self, pointer: str = "") -> None:
        """`SchemaTooLarge` once compiling has taken longer than ``max_seconds``."""
        if time.monotonic() > self.deadline:
            raise SchemaTooLarge(pointer, f"compiling took longer than max_seconds={self.max_seconds} s")
