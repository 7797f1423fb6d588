"""The constraints the serving-engine tests send (a schema, a regex, a Lark grammar, a choice) and
`check_output`, which fails unless a generated text is a complete document of its constraint,
checked with a real parser."""

from __future__ import annotations

import json
import re

import jsonschema
import lark

PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 120},
                                           "email": {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"}},
          "required": ["name", "age", "email"], "additionalProperties": False}
PHONE = r"\(\d{3}\) \d{3}-\d{4}"
LIST_LARK = 'start: "[" NUMBER ("," " "? NUMBER)* "]"\nNUMBER: /[0-9]{1,4}/'
COLOURS = ["red", "green", "light blue"]


def check_output(kind: str, text: str) -> None:
    """``kind``: "schema", "regex", "grammar", "shipped grammar" (guided's json.lark), "choice";
    anything else (free text) passes."""
    if kind == "schema":
        jsonschema.validate(json.loads(text), PERSON)
    elif kind == "regex":
        assert re.fullmatch(PHONE, text), text
    elif kind == "grammar":
        lark.Lark(LIST_LARK).parse(text)
    elif kind == "shipped grammar":
        json.loads(text)
    elif kind == "choice":
        assert text in COLOURS, text
