"""`generate`: one call from a prompt to constrained, validated output.

>>> import guided
>>> model = guided.models.random_model(num_layers=2, seed=0)            # doctest: +SKIP
>>> guided.generate(model, "Year?", regex=r"(19|20)[0-9]{2}", seed=0)    # doctest: +SKIP
'2047'
>>> guided.generate(model, "Pick one", choices=["red", "green"])        # doctest: +SKIP
'green'

The constraint is one of ``schema=`` (a Pydantic model class: returns a validated instance),
``json_schema=`` (a dict or JSON text: returns the parsed object), ``regex=``, ``grammar=``
(Lark text or a path to a ``.lark`` file) or ``choices=`` (returns text); none gives free text.
Compiled constraints are cached per (spec, tokenizer), so repeated calls don't recompile.

JSON is written canonically: strings only in the spelling ``json.dumps(..., ensure_ascii=False)``
writes (no needless ``\\u`` escapes), and for ``schema=Model`` objects are closed (no key the model
does not declare, unless it has ``extra="allow"``).  ``schema=`` also takes
``guided.JsonSchema.from_pydantic(Model, lenient=..., whitespace=..., closed=...)`` for other
options; ``json_schema=`` a `guided.JsonSchema`, used as given.

Decoding: greedy when ``temperature=0`` (the default), sampling otherwise, beam search with
``num_beams > 1``; ``n > 1`` returns a list of the ``n`` best (beams, or of ``best_of``
samples ranked by log-probability or by ``score=``).  The sampling knobs, their order and the
ban / must-include / reward options are documented in `guided.sampling`.  Under a constraint
``max_new_tokens`` never truncates a document: the budget-aware decoder closes it in time (if it
cannot, `IncompleteOutput` is raised rather than invalid text returned).
"""

from __future__ import annotations

import codecs
import json
import os
import pathlib
import re
from typing import Any, Callable, Iterator, Mapping, Sequence

import guided
from guided.compiler import compile
from guided.decoding.beam import beam_search
from guided.decoding.constraints import DEFAULT_BUDGET_WINDOW, Constraints, NoAllowedToken
from guided.decoding.runner import ModelRunner
from guided.decoding.sampler import Completion, iter_decode
from guided.decoding.stats import GenerationStats
from guided.errors import GuidedError, UsageError
from guided.frontends.reasoning import Reasoning
from guided.frontends.regex import Regex
from guided.generation import Generation, finish_reason_of
from guided.models import Model
from guided.sampling.phrases import PhraseOptions
from guided.sampling.pipeline import RewardFn, SamplingParams

__all__ = ["IncompleteOutput", "encode_prompt", "generate", "resolve_constraint", "resolve_format"]


class IncompleteOutput(GuidedError):
    """Generation stopped (token budget, time) before the output formed a complete document."""

    def __init__(self, text: str, max_new_tokens: int):
        self.text = text
        super().__init__(
            f"max_new_tokens={max_new_tokens} was reached before the output was complete "
            f"(no completion fits in the budget: raise max_new_tokens): {text!r}"
        )


class FrontendUnavailable(GuidedError, NotImplementedError):
    """The requested kind of constraint has no front-end in this version of guided."""


# ------------------------------------------------------------------------------------------
# Constraint dispatch: the one place that maps generate()'s keywords to specs and parsers.


def _identity(text: str) -> str:
    return text


def resolve_constraint(
    *,
    schema: Any = None,
    json_schema: Any = None,
    regex: Any = None,
    grammar: Any = None,
    choices: Sequence[str] | None = None,
) -> tuple[Any, Callable[[str], Any]]:
    """``(spec, parse)`` for the one constraint given: ``spec`` goes to `guided.compile`
    (``None``: free text) and ``parse`` turns the generated text into the return value.

    >>> spec, parse = resolve_constraint(choices=["a.b", "c"])
    >>> spec.pattern, parse("c")
    ('a\\\\.b|c', 'c')
    """
    given = [k for k, v in (("schema", schema), ("json_schema", json_schema), ("regex", regex),
                            ("grammar", grammar), ("choices", choices)) if v is not None]
    if len(given) > 1:
        raise UsageError(f"give at most one constraint, got {', '.join(given)}")
    identity: Callable[[str], Any] = _identity
    if regex is not None:
        if _is_compiled(regex):
            raise UsageError("regex= takes a pattern (a string or guided.Regex), not a compiled grammar: pass a "
                             "compiled grammar as grammar=")
        if not isinstance(regex, (str, Regex)):
            raise UsageError(f"regex= takes a pattern (a string or guided.Regex), got {type(regex).__name__}")
        return (regex if isinstance(regex, Regex) else Regex(regex)), identity
    if choices is not None:
        if isinstance(choices, (str, bytes)) or not isinstance(choices, (list, tuple, set, frozenset)):
            hint = f": did you mean choices=[{choices!r}]?" if isinstance(choices, str) else ""
            raise UsageError(f"choices= takes a list of strings, got {type(choices).__name__} {choices!r}{hint}")
        options = list(choices)
        if not options:
            raise UsageError("choices= must not be empty")
        wrong = [c for c in options if not isinstance(c, str)]
        if wrong:
            raise UsageError(f"choices= takes strings, got {type(wrong[0]).__name__} {wrong[0]!r}")
        return Regex("|".join(re.escape(c) for c in options)), identity
    if grammar is not None:
        Grammar = _frontend("Grammar", "Lark grammars (grammar=)")
        if isinstance(grammar, Grammar) or _is_compiled(grammar):
            return grammar, identity
        return Grammar(grammar), identity  # Lark text, a .lark path or a shipped grammar's name
    if json_schema is not None:
        JsonSchema = _frontend("JsonSchema", "JSON Schema (json_schema=)")
        if isinstance(json_schema, JsonSchema):
            return json_schema, json.loads
        return _json_schema_spec(json_schema, JsonSchema).with_options(canonical=True), json.loads
    if schema is not None:
        JsonSchema = _frontend("JsonSchema", "Pydantic models (schema=)")
        if isinstance(schema, JsonSchema) and schema.model is not None:
            return schema, schema.model.model_validate_json
        if not (isinstance(schema, type) and hasattr(schema, "model_validate_json")):
            raise UsageError(f"schema= takes a Pydantic model class (or JsonSchema.from_pydantic(Model, ...)), "
                             f"got {type(schema).__name__}; use json_schema= for a JSON Schema")
        return JsonSchema.from_pydantic(schema), schema.model_validate_json
    return None, identity


def _frontend(name: str, what: str):
    spec = getattr(guided, name, None)
    if spec is None:
        raise FrontendUnavailable(f"{what} are not available in this version of guided yet (guided.{name} is missing)")
    return spec


def _read_if_path(value: Any, suffixes: tuple[str, ...]) -> str:
    """The text of ``value``: a path's content (a path-like, or a one-line string ending in one of
    ``suffixes``) or the string itself; `UsageError` for a path that cannot be read."""
    looks_like_path = isinstance(value, str) and "\n" not in value and value.strip().endswith(suffixes)
    if isinstance(value, os.PathLike) or looks_like_path:
        try:
            return pathlib.Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {str(value)!r}: {exc}") from None
    return str(value)


def _json_schema_spec(value: Any, JsonSchema) -> Any:
    """``json_schema=`` (a dict, a boolean, JSON text or the path of a .json file) as a spec."""
    from guided.frontends.jsonschema import InvalidSchema

    if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip().endswith(".json")
                                          and "\n" not in value):
        try:
            return JsonSchema(_read_if_path(value, (".json",)))
        except InvalidSchema as exc:
            raise InvalidSchema(exc.pointer, exc.keyword, f"in {str(value)!r}: {exc.reason}") from None
    if isinstance(value, str):
        if "\n" not in value and value.lstrip()[:1] not in ("{", "[", "t", "f", '"'):
            raise UsageError(f"json_schema={value!r} is neither JSON text nor the path of a .json file")
        return JsonSchema(value)
    if not isinstance(value, (dict, bool)):
        raise UsageError(f"json_schema= takes a dict, JSON text or the path of a .json file, got "
                         f"{type(value).__name__}")
    return JsonSchema(value)


def _is_compiled(value: Any) -> bool:
    """Is ``value`` a compiled grammar (what `guided.compile` returns)?"""
    return hasattr(value, "matcher") and hasattr(value, "vocab") and not isinstance(value, type)


# ------------------------------------------------------------------------------------------


def encode_prompt(model: Model, prompt: Any, chat: bool | None = None) -> list[int]:
    """Token ids of ``prompt`` (a string or a list of ``{"role", "content"}`` messages), through
    the chat template when the tokenizer has one (or ``chat=True``)."""
    tok = model.tokenizer
    if not isinstance(prompt, str):
        _check_messages(prompt)
    messages = prompt if not isinstance(prompt, str) else [{"role": "user", "content": prompt}]
    use_chat = (getattr(tok, "chat_template", None) is not None) if chat is None else chat
    if (use_chat or not isinstance(prompt, str)) and getattr(tok, "chat_template", None) is None and \
            hasattr(tok, "convert_ids_to_tokens"):
        raise UsageError("a chat prompt (a list of messages, or chat=True) needs a tokenizer with a chat template, "
                         "and this one has none: pass the prompt as a string (with chat=False)")
    if use_chat or not isinstance(prompt, str):
        ids = tok.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True, return_dict=False)
        if isinstance(ids, Mapping) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
    else:
        ids = tok(prompt, add_special_tokens=True)["input_ids"]
    ids = [int(i) for i in ids]
    if not ids:
        ids = [min(model.vocab.eos_token_ids)]
    return ids


def _is_batch(prompt: Any) -> bool:
    if isinstance(prompt, str):
        return False
    if not isinstance(prompt, (list, tuple)):
        raise UsageError(f"the prompt is a string, a list of chat messages or a list of prompts, got "
                         f"{type(prompt).__name__}")
    items = list(prompt)
    if not items:
        raise UsageError("the prompt list is empty")
    if all(isinstance(p, Mapping) for p in items):
        return False  # one chat
    for i, p in enumerate(items):
        if not isinstance(p, (str, list, tuple)):
            raise UsageError(f"prompt {i} is a {type(p).__name__}: a batch holds strings or lists of chat messages "
                             f"(a chat is a list of {{'role': ..., 'content': ...}} dicts)")
    return True


def _check_messages(messages: Any) -> None:
    """A chat: a non-empty list of ``{"role": str, "content": str or list}`` mappings."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise UsageError("a chat prompt is a non-empty list of {'role': ..., 'content': ...} messages")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise UsageError(f"chat message {i} is a {type(message).__name__}, not a {{'role', 'content'}} dict")
        for key in ("role", "content"):
            if key not in message:
                raise UsageError(f"chat message {i} has no {key!r}: {dict(message)!r}")
        if not isinstance(message["role"], str):
            raise UsageError(f"chat message {i}: 'role' must be a string, got {message['role']!r}")
        if not isinstance(message["content"], (str, list)):
            raise UsageError(f"chat message {i}: 'content' must be a string (or a list of parts), got "
                             f"{type(message['content']).__name__}")


def generate(
    model: Model,
    prompt: str | Sequence[Mapping[str, str]] | Sequence[str | Sequence[Mapping[str, str]]],
    *,
    schema: Any = None,
    json_schema: Any = None,
    regex: str | Regex | None = None,
    grammar: Any = None,
    choices: Sequence[str] | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_p: float = 0.0,
    typical_p: float = 1.0,
    eta: float = 0.0,
    epsilon: float = 0.0,
    repetition_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    no_repeat_ngram_size: int = 0,
    logit_bias: Mapping[int, float] | None = None,
    ban: Sequence[str] = (),
    ban_case_sensitive: bool = True,
    ban_whole_words: bool = True,
    ban_word_prefixes: bool = True,
    must_include: Sequence[str] = (),
    reward: RewardFn | None = None,
    reward_weight: float = 1.0,
    reward_top_k: int = 16,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    length_normalization: str = "average",
    early_stopping: bool | str = False,
    n: int = 1,
    best_of: int | None = None,
    score: Callable[[str], float] | None = None,
    max_new_tokens: int = 256,
    stop: Sequence[str] | str = (),
    timeout: float | None = None,
    stream: bool | str = False,
    seed: int | None = None,
    chat: bool | None = None,
    stats: GenerationStats | None = None,
    progress: bool | None = None,
    budget_window: int = DEFAULT_BUDGET_WINDOW,
    draft: Any = None,
    jump_forward: bool | None = None,
    format: str | None = None,
    tools: Any = None,
    tool_choice: Any = None,
    details: bool = False,
    response_format: Any = None,
    parallel_tool_calls: bool | None = None,
    tool_format: Any = "auto",
    reasoning: bool | tuple[str, str] | None = None,
    max_reasoning_tokens: int | None = None,
    on_field: Callable[[tuple, Any], None] | None = None,
) -> Any:
    """Generate from ``model`` under at most one constraint; see the module docstring.

    Returns the parsed value (a Pydantic instance for ``schema``, a JSON value for
    ``json_schema``, text otherwise); a list of ``n`` of them when ``n > 1``; a list per prompt
    when ``prompt`` is a list of prompts; a generator of text chunks when ``stream=True``.

    ``ban``: words or phrases that never appear in the output, in any tokenization: by default
    case-sensitive, never at the start of a word, whether as the whole word or as the start of a
    longer one (banning "ocean" blocks "ocean", "oceans" and "oceanwaves", not "seocean");
    ``ban_word_prefixes=False`` bans the whole word only, ``ban_whole_words=False`` raw substrings,
    ``ban_case_sensitive=False`` ignores case (see `guided.sampling.phrases`).  ``must_include``: phrases (substrings) that
    must appear; EOS and any token that would end the document are blocked until they have,
    and `guided.decoding.NoAllowedToken` is raised if they do not fit in ``max_new_tokens``.
    ``reward(prefixes, continuations) -> scores`` reweights the ``reward_top_k`` most likely
    next tokens by ``exp(reward_weight · score)``.  ``stats``: a `GenerationStats` to fill in.

    ``draft``: speculative decoding (`guided.decoding.speculative`), same output as without it
    (greedy) or the same distribution (sampling): ``None``, a `Model` sharing the tokenizer,
    ``"early-exit:K"`` (the model's own first K layers) or ``"prompt-lookup"``.
    ``jump_forward``: draft the bytes the grammar forces, verified in the same pass (default:
    on when ``draft`` is given).  Pass a `guided.decoding.speculative.SpeculativeStats` as
    ``stats`` to read drafted / accepted tokens and forward passes saved.  Beam search,
    streaming, ``reward``, ``timeout`` and ban / must-include with a grammar decode plainly.

    ``format="xml"``: XML instead of JSON: shaped by ``schema``/``json_schema`` (returns the
    validated instance / data read back from it) or, without one, any well-formed XML (text).
    ``tools=[...]`` (OpenAI-style definitions, Python functions or a `guided.Tools`):
    returns a list of `guided.ToolCall`, or the text of a free answer when
    ``tool_choice="auto"`` (the default; ``"required"`` or a tool's name force a call,
    ``"none"`` forbids one); ``parallel_tool_calls=True`` allows several calls;
    ``tool_format``: ``"hermes"``, ``"llama3"``, ``"mistral"`` or ``"auto"`` (the default: the
    format the model's chat template writes, `guided.frontends.tools.tool_format_from_template`).

    ``details=True``: a `guided.Generation` instead of the value (text, value, reasoning,
    finish reason, token counts).  ``response_format=``: OpenAI's shapes
    (`guided.frontends.openai`).  ``reasoning=True`` (markers from the tokenizer / chat
    template) or ``reasoning=("<think>", "</think>")``: the model thinks freely first, at most
    ``max_reasoning_tokens`` tokens (then the end marker is forced), and the constraint applies
    to the answer after the thought (`guided.frontends.reasoning`).  ``stream="objects"``:
    a generator of partial values of a JSON constraint (each field as soon as it is complete;
    the last item is the validated value); ``on_field(path, value)`` is called the moment each
    value is complete (`guided.partial`).
    """
    _check_model(model)
    stop, ban, must_include = _phrases("stop", stop), _phrases("ban", ban), _phrases("must_include", must_include)
    _check_numbers(max_new_tokens=max_new_tokens, n=n, num_beams=num_beams, best_of=best_of, seed=seed,
                   timeout=timeout, budget_window=budget_window)
    _check_options(temperature=temperature, num_beams=num_beams, n=n, best_of=best_of, stats=stats, reward=reward,
                   score=score, logit_bias=logit_bias, width=_logits_width(model))
    _check_new_arguments(details=details, stream=stream, response_format=response_format, tools=tools,
                         parallel_tool_calls=parallel_tool_calls, tool_format=tool_format, reasoning=reasoning,
                         max_reasoning_tokens=max_reasoning_tokens, on_field=on_field)
    if response_format is not None:
        others = [k for k, v in (("schema", schema), ("json_schema", json_schema), ("regex", regex),
                                 ("grammar", grammar), ("choices", choices), ("tools", tools)) if v is not None]
        if others or format not in (None, "json"):
            raise UsageError(f"response_format= cannot be combined with {', '.join(others) or 'format='}")
        from guided.frontends.openai import response_format_constraint

        spec, parse = response_format_constraint(response_format)
    elif tools is not None or format not in (None, "json"):
        from guided.frontends.tools import Tools

        keep_own = isinstance(tools, Tools) and isinstance(tool_format, str) and tool_format == "auto"
        spec, parse = resolve_format(format, tools, tool_choice, schema=schema, json_schema=json_schema,
                                      regex=regex, grammar=grammar, choices=choices, parallel=parallel_tool_calls,
                                      tool_format=None if keep_own else _tool_format(model, tool_format))
    else:
        if tool_choice is not None:
            raise UsageError("tool_choice= needs tools=")
        spec, parse = resolve_constraint(schema=schema, json_schema=json_schema, regex=regex, grammar=grammar,
                                         choices=choices)
    fields_spec = spec  # the answer's spec: what stream="objects" and on_field follow
    batch = _is_batch(prompt)
    prompts = list(prompt) if batch else [prompt]
    ids = [encode_prompt(model, p, chat) for p in prompts]
    thought = None
    if reasoning:
        start, end = _think_markers(model, reasoning)
        thought = Reasoning(spec, start, end, opened=_prompts_open_thought(model, ids, start),
                            max_tokens=max_reasoning_tokens)
        spec, parse = thought, _after_thought(thought, parse)
    params = SamplingParams(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, epsilon=epsilon,
        eta=eta, repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty, no_repeat_ngram_size=no_repeat_ngram_size, logit_bias=logit_bias,
        reward=reward, reward_weight=reward_weight, reward_top_k=reward_top_k,
    )
    constraints = Constraints.build(
        model.vocab,
        grammar=compile(spec, model.vocab) if spec is not None else None,
        ban=list(ban),
        ban_options=PhraseOptions(whole_word=ban_whole_words, case_sensitive=ban_case_sensitive,
                                  word_prefixes=ban_word_prefixes),
        must_include=list(must_include),
        budget_window=budget_window,
    )
    _check_context(model, ids, max_new_tokens)
    stats = stats if stats is not None else GenerationStats()
    runner = model.logits_source() if hasattr(model, "logits_source") else ModelRunner(model)

    if stream or on_field is not None:
        if batch or n > 1 or num_beams > 1:
            what = "stream=" if stream else "on_field="
            raise UsageError(f"{what} needs a single prompt, n=1 and num_beams=1")
        if details and stream:
            raise UsageError("details=True returns one Generation at the end: it cannot be combined with stream=")
    fields = None
    if stream == "objects" or on_field is not None:
        from guided.partial import FieldTracker

        fields = _FieldFeed(FieldTracker.for_spec(fields_spec, on_field=on_field), _thought_skipper(thought))
    if stream == "objects" or (on_field is not None and not stream):
        events = _stream_objects(runner, ids, constraints, params, max_new_tokens, stop, timeout, seed, stats,
                                 fields, parse, stream == "objects")
        if stream == "objects":
            return events
        completion = None
        for completion in events:
            pass
        return _outcome(completion, constraints, parse, max_new_tokens, len(ids[0]), details, thought, model.vocab)
    if stream:
        return _stream(runner, ids, constraints, params, max_new_tokens, stop, timeout, seed, stats, model, fields)

    if num_beams > 1:
        results = beam_search(
            runner, ids, constraints, params, num_beams=num_beams, num_return=n, length_penalty=length_penalty,
            length_normalization=length_normalization, early_stopping=early_stopping,
            max_new_tokens=max_new_tokens, timeout=timeout, stats=stats,
        )
    else:
        copies = best_of or n
        flat = [row for row in ids for _ in range(copies)]
        speculative = _speculative(model, draft, jump_forward, params, constraints, timeout)
        bar = _progress_bar(progress, len(flat), max_new_tokens) if speculative is None else None
        gen = speculative(runner, flat, constraints, params, max_new_tokens, stop, seed, stats) if speculative else iter_decode(
            runner, flat, constraints, params, max_new_tokens=max_new_tokens, stop=stop, timeout=timeout, seed=seed,
            stats=stats, progress=bar.update if bar is not None else None,
        )
        try:
            while True:
                next(gen)
        except StopIteration as done:
            completions = done.value
        finally:
            if bar is not None:
                bar.close()
        results = []
        for p in range(len(ids)):
            group = completions[p * copies : (p + 1) * copies]
            if copies > 1:
                key = (lambda c: score(c.text)) if score is not None else (lambda c: c.score(length_penalty))
                group = sorted(group, key=lambda c: (c.complete, key(c)), reverse=True)
            results.append(group[:n])

    out = []
    for p, group in enumerate(results):
        values = [_outcome(c, constraints, parse, max_new_tokens, len(ids[p]), details, thought, model.vocab)
                  for c in group]
        out.append(values if n > 1 else values[0])
    return out if batch else out[0]


def _outcome(c: Completion, constraints: Constraints, parse: Callable[[str], Any], max_new_tokens: int,
             prompt_tokens: int, details: bool, thought: Reasoning | None, vocab) -> Any:
    """The value of a completion, or its `Generation` with ``details``."""
    value = _finish(c, constraints, parse, max_new_tokens)
    if not details:
        return value
    reasoning_text, reasoning_tokens = None, 0
    if thought is not None:
        reasoning_text = thought.split(c.text)[0]
        reasoning_tokens = _thought_tokens(thought, vocab, c.tokens)
    return Generation(text=c.text, value=value, reasoning=reasoning_text,
                      finish_reason=finish_reason_of(c.finish_reason, c.closed_early), prompt_tokens=prompt_tokens,
                      completion_tokens=len(c.tokens), reasoning_tokens=reasoning_tokens)


# ------------------------------------------------------------------------------------------
# Reasoning: markers, prompts that open the thought, the answer after it


THINK_MARKERS = (("<think>", "</think>"), ("<thinking>", "</thinking>"), ("<reasoning>", "</reasoning>"))
"""Think markers looked for in a tokenizer's added tokens and chat template (``reasoning=True``)."""


def _think_markers(model: Model, reasoning: Any) -> tuple[str, str]:
    if isinstance(reasoning, tuple):
        return reasoning
    tok = model.tokenizer
    template = getattr(tok, "chat_template", None) or ""
    if not isinstance(template, str):
        template = json.dumps(template)
    added = set()
    get_added = getattr(tok, "get_added_vocab", None)
    if callable(get_added):
        try:
            added = set(get_added())
        except Exception:  # noqa: BLE001 - a tokenizer without added-vocabulary support
            added = set()
    for start, end in THINK_MARKERS:
        if start in added or end in added or start in template or end in template:
            return start, end
    raise UsageError("reasoning=True: this model's tokenizer and chat template declare no think markers; "
                     "give them explicitly, e.g. reasoning=('<think>', '</think>')")


def _prompts_open_thought(model: Model, ids: list[list[int]], start: str) -> bool:
    """Do the prompts end with the start marker (a chat template that opens the thought)?  All
    or none of them must."""
    vocab = model.vocab
    opens = []
    for row in ids:
        tail = b"".join(vocab.token_bytes[t] or vocab.special_token_text.get(t, "").encode() for t in row[-16:])
        opens.append(tail.decode("utf-8", "replace").rstrip().endswith(start))
    if any(opens) and not all(opens):
        raise UsageError(f"reasoning=: some prompts already open the thought with {start!r} and others do not")
    return all(opens)


def _after_thought(thought: Reasoning, parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_answer(text: str) -> Any:
        return parse(thought.split(text)[1])

    return parse_answer


def _thought_tokens(thought: Reasoning, vocab, tokens: Sequence[int]) -> int:
    """How many of ``tokens`` the thought took (up to the token that completes the end marker)."""
    data = b""
    end = thought.end.encode()
    skip = len(thought.prefix)
    for i, t in enumerate(tokens):
        data += vocab.token_bytes[t]
        if end in data[skip:]:
            return i + 1
    return len(tokens)


def _thought_skipper(thought: Reasoning | None) -> Callable[[bytes], int | None]:
    """``f(data) -> offset`` where the answer starts in the output so far (``None``: still thinking)."""
    if thought is None:
        return lambda data: 0
    end = thought.end.encode()
    skip = len(thought.prefix)

    def answer_start(data: bytes) -> int | None:
        at = data.find(end, skip)
        return None if at < 0 else at + len(end)

    return answer_start


def _tool_format(model: Model, tool_format: Any) -> Any:
    """``tool_format="auto"``: the format of the model's chat template; else as given."""
    from guided.frontends.tools import ToolFormat, tool_format_from_template

    if isinstance(tool_format, ToolFormat):
        return tool_format
    if tool_format == "auto":
        return tool_format_from_template(getattr(model.tokenizer, "chat_template", None))
    return ToolFormat.for_family(tool_format)


def _check_new_arguments(*, details, stream, response_format, tools, parallel_tool_calls, tool_format, reasoning,
                         max_reasoning_tokens, on_field) -> None:
    """Issue 16's arguments, checked where they enter (a `UsageError` naming the argument)."""
    from guided.frontends.tools import TOOL_FORMATS, ToolFormat

    if not isinstance(details, bool):
        raise UsageError(f"details= takes True or False, got {details!r}")
    if stream not in (False, True, "objects") or (not isinstance(stream, bool) and stream != "objects"):
        raise UsageError(f"stream= takes True, False or 'objects', got {stream!r}")
    if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
        raise UsageError(f"parallel_tool_calls= takes True or False, got {parallel_tool_calls!r}")
    if parallel_tool_calls is not None and tools is None:
        raise UsageError("parallel_tool_calls= needs tools=")
    if not isinstance(tool_format, ToolFormat) and (not isinstance(tool_format, str) or
                                                    tool_format not in (*TOOL_FORMATS, "auto")):
        raise UsageError(f"tool_format= takes 'auto', {', '.join(map(repr, TOOL_FORMATS))} or a guided.ToolFormat, "
                         f"got {tool_format!r}")
    if tool_format != "auto" and tools is None:
        raise UsageError("tool_format= needs tools=")
    if reasoning is not None and not isinstance(reasoning, bool):
        if not (isinstance(reasoning, (tuple, list)) and len(reasoning) == 2 and
                all(isinstance(m, str) for m in reasoning) and reasoning[1]):
            raise UsageError(f"reasoning= takes True or a (start, end) pair of marker strings, got {reasoning!r}")
    if max_reasoning_tokens is not None:
        if not reasoning:
            raise UsageError("max_reasoning_tokens= needs reasoning=")
        if not isinstance(max_reasoning_tokens, int) or isinstance(max_reasoning_tokens, bool) or \
                max_reasoning_tokens < 0:
            raise UsageError(f"max_reasoning_tokens= takes a non-negative integer, got {max_reasoning_tokens!r}")
    if on_field is not None and not callable(on_field):
        raise UsageError(f"on_field= takes a callable (path, value), got {type(on_field).__name__}")


def _speculative(model: Model, draft: Any, jump_forward: bool | None, params, constraints, timeout):
    """A decoding generator factory for ``draft=`` / ``jump_forward=``, or ``None`` (plain)."""
    if jump_forward is None:
        jump_forward = draft is not None
    if draft is None and not jump_forward:
        return None
    from guided.decoding import speculative as S
    from guided.decoding.drafters import make_drafter

    drafter = make_drafter(draft, model)  # validates draft= even where decoding falls back
    if not S.supports(params, constraints, timeout):
        return None

    def run(runner, prompts, constraints, params, max_new_tokens, stop, seed, stats):
        return S.speculative_decode(
            runner, prompts, constraints, params, drafter=drafter, jump_forward=bool(jump_forward),
            tokenize=S.ForcedTokenizer(constraints.vocab, model.tokenizer), max_new_tokens=max_new_tokens,
            stop=stop, seed=seed, stats=stats,
        )
        yield  # pragma: no cover - makes this a generator whose return value is the completions

    return run


def resolve_format(format, tools, tool_choice, *, parallel: bool | None = None, tool_format: Any = None,
                   **given) -> tuple[Any, Callable[[str], Any]]:
    """``(spec, parse)`` for ``format="xml"`` and ``tools=`` (see `guided.frontends.xml`, `guided.frontends.tools`);
    ``given`` are `resolve_constraint`'s keywords, refused beside them."""
    if tools is not None:
        others = [k for k, v in given.items() if v is not None]
        if others or format not in (None, "json"):
            raise UsageError(f"tools= cannot be combined with {', '.join(others) or 'format='}")
        from guided.frontends.tools import tool_constraint

        return tool_constraint(tools, tool_choice if tool_choice is not None else "auto", parallel=parallel,
                               format=tool_format)
    if format != "xml":
        raise UsageError(f"format={format!r}: expected 'json' or 'xml'")
    if tool_choice is not None:
        raise UsageError("tool_choice= needs tools=")
    others = [k for k in ("regex", "grammar", "choices") if given[k] is not None]
    if others:
        raise UsageError(f"format='xml' cannot be combined with {', '.join(others)}")
    from guided.frontends.xml import Xml, parse_xml

    shape = given["schema"] if given["schema"] is not None else given["json_schema"]
    if shape is None:
        return Xml(), lambda text: text
    if isinstance(shape, (str, os.PathLike)):
        from guided.frontends.jsonschema import JsonSchema

        shape = _json_schema_spec(shape, JsonSchema).value
    return Xml(shape), lambda text: parse_xml(text, shape)


def _finish(c: Completion, constraints: Constraints, parse: Callable[[str], Any], max_new_tokens: int) -> Any:
    if c.missing:
        raise NoAllowedToken(
            f"the must-include phrases {c.missing!r} could not be written within max_new_tokens={max_new_tokens}: "
            f"{c.text!r}"
        )
    if constraints.grammar is not None and not c.complete:
        raise IncompleteOutput(c.text, max_new_tokens)
    return parse(c.text)


def _check_context(model: Model, ids: list[list[int]], max_new_tokens: int) -> None:
    config = getattr(getattr(model, "hf", None), "config", None)
    context = getattr(config, "max_position_embeddings", None)
    longest = max(len(i) for i in ids)
    if not isinstance(context, int) or isinstance(context, bool):
        return
    if longest >= context:
        raise UsageError(f"the prompt is {longest} tokens long but the model's context holds {context}: "
                         f"shorten the prompt")
    if longest + max_new_tokens > context:
        raise UsageError(f"the prompt ({longest} tokens) and max_new_tokens={max_new_tokens} do not fit in the "
                         f"model's context of {context} tokens: lower max_new_tokens to at most "
                         f"{context - longest}, or shorten the prompt")


# ------------------------------------------------------------------------------------------
# Checks of generate()'s arguments: a wrong type or value is a UsageError naming the argument
# (not an IndexError or a TypeError deep in the sampler).


def _check_model(model: Any) -> None:
    if isinstance(getattr(model, "vocab", None), guided.Vocabulary) and hasattr(model, "tokenizer") and (
            hasattr(model, "hf") or hasattr(model, "logits_source")):
        return
    kind = type(model).__name__
    if hasattr(model, "config") and hasattr(model, "forward"):
        raise UsageError(f"generate() takes a guided.Model, got a Hugging Face {kind}: wrap it with its tokenizer "
                         f"as guided.Model(hf=model, tokenizer=tokenizer), or load one with guided.load_model(path)")
    if hasattr(model, "convert_ids_to_tokens"):
        raise UsageError(f"generate() takes a guided.Model, got a tokenizer ({kind}): "
                         f"guided.Model(hf=model, tokenizer=tokenizer), or guided.load_model(path)")
    raise UsageError(f"generate() takes a guided.Model (guided.load_model(...)), got {kind}")


def _phrases(name: str, value: Any) -> list[str]:
    """``stop=`` / ``ban=`` / ``must_include=``: one string or a sequence of strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, (list, tuple, set, frozenset)):
        raise UsageError(f"{name}= takes a string or a list of strings, got {type(value).__name__}")
    wrong = [v for v in value if not isinstance(v, str)]
    if wrong:
        raise UsageError(f"{name}= takes strings, got {type(wrong[0]).__name__} {wrong[0]!r}")
    return list(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_numbers(**values: Any) -> None:
    lowest = {"max_new_tokens": 1, "n": 1, "num_beams": 1, "best_of": 1, "budget_window": 0}
    for name, value in values.items():
        if value is None and name in ("best_of", "seed", "timeout"):
            continue
        if name == "timeout":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UsageError(f"timeout= takes a number of seconds above 0 (or None), got {value!r}")
            continue
        if not _is_int(value):
            raise UsageError(f"{name}= takes an int, got {type(value).__name__} {value!r}")
        if name in lowest and value < lowest[name]:
            raise UsageError(f"{name}= must be at least {lowest[name]}, got {value}")


def _check_options(*, temperature, num_beams, n, best_of, stats, reward, score, logit_bias, width) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise UsageError(f"temperature= takes a number, got {type(temperature).__name__} {temperature!r}")
    if best_of is not None and best_of < n:
        raise UsageError(f"best_of={best_of} is less than n={n}")
    if num_beams > 1 and n > num_beams:
        raise UsageError(f"n={n} is more than num_beams={num_beams}")
    if num_beams == 1 and (best_of or n) > 1 and temperature <= 0:
        raise UsageError(f"n={n}{f', best_of={best_of}' if best_of else ''} with greedy decoding (temperature=0) "
                         f"gives identical outputs: sample (temperature > 0), or use beam search (num_beams >= n) "
                         f"for the n best")
    if stats is not None and not isinstance(stats, GenerationStats):
        raise UsageError(f"stats= takes a guided.GenerationStats to fill in (create one, pass it, read it after the "
                         f"call), got {stats!r}")
    for name, fn in (("reward", reward), ("score", score)):
        if fn is not None and not callable(fn):
            raise UsageError(f"{name}= takes a function, got {type(fn).__name__}")
    if logit_bias is not None:
        if not isinstance(logit_bias, Mapping):
            raise UsageError(f"logit_bias= takes a mapping of token id to bias, got {type(logit_bias).__name__}")
        for token, bias in logit_bias.items():
            if not _is_int(token) or not 0 <= token < width:
                raise UsageError(f"logit_bias= key {token!r} is not a token id of this model (0 to {width - 1})")
            if isinstance(bias, bool) or not isinstance(bias, (int, float)):
                raise UsageError(f"logit_bias[{token}] takes a number, got {type(bias).__name__} {bias!r}")


def _logits_width(model: Any) -> int:
    try:
        return int(model.logits_width)
    except Exception:  # noqa: BLE001 - a stand-in model without an LM head: its vocabulary
        return int(model.vocab.size)


def _progress_bar(progress: bool | None, rows: int, max_new_tokens: int):
    """A tqdm bar over generated tokens for long batch generations (``progress=None``: when the
    batch has 4 rows or more and stderr is a terminal)."""
    if progress is None:
        import sys

        progress = rows >= 4 and sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=rows * max_new_tokens, unit="tok", desc="generating", leave=False)


def _stream(runner, ids, constraints, params, max_new_tokens, stop, timeout, seed, stats, model,
            fields: "_FieldFeed | None" = None) -> Iterator[str]:
    """Yield text as it is decoded: whole UTF-8 characters, never past the start of a stop
    string (text that could be one is held back); validated at the end like a plain call.
    ``fields``: ``on_field`` callbacks fire as the answer's values complete."""
    vocab = constraints.vocab
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    stops = [s for s in stop if s]
    hold = max((len(s) for s in stops), default=0)
    gen = iter_decode(
        runner, ids, constraints, params, max_new_tokens=max_new_tokens, stop=stops, timeout=timeout, seed=seed,
        stats=stats,
    )
    text = ""
    emitted = 0
    while True:
        try:
            events = next(gen)
        except StopIteration as done:
            completion = done.value[0]
            break
        for _, tok in events:
            if tok not in vocab.eos_token_ids:
                text += decoder.decode(vocab.token_bytes[tok])
                if fields is not None:
                    fields.add(vocab.token_bytes[tok])
        if fields is not None:
            fields.feed()
        safe = len(text) - hold
        for s in stops:
            found = text.find(s, max(0, emitted - len(s)))
            if found >= 0:
                safe = min(safe, found)
        if safe > emitted:
            yield text[emitted:safe]
            emitted = safe
    final = completion.text
    _finish(completion, constraints, lambda text: text, max_new_tokens)
    if fields is not None:
        fields.tracker.finish()
    if len(final) > emitted:
        yield final[emitted:]


class _FieldFeed:
    """The answer's bytes, as they are generated, fed to a `guided.partial.FieldTracker`
    (``answer_start``: where the answer begins, after a thought)."""

    def __init__(self, tracker, answer_start: Callable[[bytes], int | None]):
        self.tracker = tracker
        self.answer_start = answer_start
        self.data = bytearray()
        self.fed = 0

    def add(self, data: bytes) -> None:
        self.data += data

    def feed(self) -> bool:
        """Feed what was added since the last call; True when a value was completed."""
        start = self.answer_start(bytes(self.data))
        if start is None:
            return False
        self.fed = max(self.fed, start)
        changed = self.tracker.feed(bytes(self.data[self.fed:]))
        self.fed = len(self.data)
        return changed


def _stream_objects(runner, ids, constraints, params, max_new_tokens, stop, timeout, seed, stats,
                    fields: _FieldFeed, parse, yield_partials: bool):
    """Decode one row, feeding the answer's bytes to ``fields``: yields a partial value after
    each token that completed a value, then the validated value (``yield_partials``);
    otherwise yields only the final `Completion`."""
    vocab = constraints.vocab
    tracker = fields.tracker
    gen = iter_decode(runner, ids, constraints, params, max_new_tokens=max_new_tokens, stop=list(stop),
                      timeout=timeout, seed=seed, stats=stats)
    last = None
    while True:
        try:
            events = next(gen)
        except StopIteration as done:
            completion = done.value[0]
            break
        for _, tok in events:
            if tok not in vocab.eos_token_ids:
                fields.add(vocab.token_bytes[tok])
        if fields.feed() and yield_partials:
            partial = tracker.partial()
            snapshot = tracker.snapshot(partial)
            if snapshot != last:  # a closing bracket, or a key the model ignores, changes no field
                last = snapshot
                yield partial
    if not completion.complete and constraints.grammar is not None:
        raise IncompleteOutput(completion.text, max_new_tokens)
    tracker.finish()
    if yield_partials:
        yield _finish(completion, constraints, parse, max_new_tokens)
    else:
        yield completion
