"""guided: constrained generation for language models, with exact token masks.

A constraint (a regex, a Lark grammar, a JSON Schema or Pydantic model, XML, tool calls)
compiles against a tokenizer's vocabulary into a grammar whose matchers say, at every decoding
step, exactly which tokens keep the output inside the language.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"4", b"2", b"42", b"x", b"<eos>"], eos_token_ids=[4])
>>> m = guided.compile(guided.Regex(r"\\d+"), vocab).matcher()
>>> m.advance(2); m.accepts_eos()
True
"""

import sys

from guided.compiler import compile
from guided.decoding import GenerationStats, NoAllowedToken, SpeculativeStats
from guided.engine.matcher import CompiledGrammar, Matcher
from guided.engine.native import fill_bitmasks
from guided.errors import (
    ConstraintViolation,
    GuidedError,
    LimitExceeded,
    ModelUnavailable,
    RegexError,
    SpecError,
    TokenizerMismatch,
    UsageError,
)
from guided.frontends.jsonschema import (
    InvalidSchema,
    JsonSchema,
    RelaxedSchemaWarning,
    SchemaTooLarge,
    UnknownFormatWarning,
    UnsupportedSchema,
)
from guided.frontends.lark import Grammar, GrammarError
from guided.frontends.regex import Regex
from guided.generate import IncompleteOutput, generate
from guided.generation import Generation
from guided.frontends.reasoning import Reasoning
from guided.frontends.strict import StrictSchemaError
from guided.integrations.hf import LogitsProcessor
from guided.models import Model, load_model
from guided.sampling import PhraseOptions, SamplingParams
from guided.frontends import tools
from guided.frontends.tools import ToolCall, ToolFormat, Tools
from guided.frontends.xml import Xml
from guided.validate import ValidationResult, validate
from guided.vocab import Vocabulary

__all__ = [
    "CompiledGrammar",
    "ConstraintViolation",
    "Generation",
    "GenerationStats",
    "Grammar",
    "GrammarError",
    "GuidedError",
    "IncompleteOutput",
    "InvalidSchema",
    "JsonSchema",
    "LimitExceeded",
    "LogitsProcessor",
    "Matcher",
    "Model",
    "ModelUnavailable",
    "NoAllowedToken",
    "PhraseOptions",
    "Reasoning",
    "Regex",
    "RegexError",
    "RelaxedSchemaWarning",
    "SamplingParams",
    "SchemaTooLarge",
    "SpecError",
    "SpeculativeStats",
    "StrictSchemaError",
    "TokenizerMismatch",
    "ToolCall",
    "ToolFormat",
    "Tools",
    "UnknownFormatWarning",
    "UnsupportedSchema",
    "UsageError",
    "ValidationResult",
    "Vocabulary",
    "Xml",
    "compile",
    "fill_bitmasks",
    "generate",
    "load_model",
    "validate",
]

# The one version literal: pyproject.toml reads it (``[tool.setuptools.dynamic]``).
__version__ = "0.1.0"

# `guided.tools` moved to `guided.frontends.tools`; ``import guided.tools`` keeps working.
sys.modules.setdefault("guided.tools", tools)
