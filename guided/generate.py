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
from guided.errors import GuidedError
from guided.frontends.regex import Regex
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
        raise TypeError(f"give at most one constraint, got {', '.join(given)}")
    identity: Callable[[str], Any] = _identity
    if regex is not None:
        return (regex if isinstance(regex, Regex) else Regex(str(regex))), identity
    if choices is not None:
        options = [str(c) for c in choices]
        if not options:
            raise ValueError("choices must not be empty")
        return Regex("|".join(re.escape(c) for c in options)), identity
    if grammar is not None:
        Grammar = _frontend("Grammar", "Lark grammars (grammar=)")
        if isinstance(grammar, Grammar):
            return grammar, identity
        return Grammar(grammar), identity  # Lark text, a .lark path or a shipped grammar's name
    if json_schema is not None:
        JsonSchema = _frontend("JsonSchema", "JSON Schema (json_schema=)")
        if isinstance(json_schema, JsonSchema):
            return json_schema, json.loads
        if isinstance(json_schema, (str, os.PathLike)):
            text = _read_if_path(json_schema, (".json",))
            json_schema = json.loads(text)
        return JsonSchema(json_schema, canonical=True), json.loads
    if schema is not None:
        JsonSchema = _frontend("JsonSchema", "Pydantic models (schema=)")
        if isinstance(schema, JsonSchema) and schema.model is not None:
            return schema, schema.model.model_validate_json
        if not (isinstance(schema, type) and hasattr(schema, "model_validate_json")):
            raise TypeError("schema= takes a Pydantic model class (or JsonSchema.from_pydantic(Model, ...)); "
                            "use json_schema= for a JSON Schema")
        return JsonSchema.from_pydantic(schema), schema.model_validate_json
    return None, identity


def _frontend(name: str, what: str):
    spec = getattr(guided, name, None)
    if spec is None:
        raise FrontendUnavailable(f"{what} are not available in this version of guided yet (guided.{name} is missing)")
    return spec


def _read_if_path(value: Any, suffixes: tuple[str, ...]) -> str:
    if isinstance(value, os.PathLike) or (
        isinstance(value, str) and "\n" not in value and value.endswith(suffixes) and pathlib.Path(value).is_file()
    ):
        return pathlib.Path(value).read_text(encoding="utf-8")
    return str(value)


# ------------------------------------------------------------------------------------------


def encode_prompt(model: Model, prompt: Any, chat: bool | None = None) -> list[int]:
    """Token ids of ``prompt`` (a string or a list of ``{"role", "content"}`` messages), through
    the chat template when the tokenizer has one (or ``chat=True``)."""
    tok = model.tokenizer
    messages = prompt if not isinstance(prompt, str) else [{"role": "user", "content": prompt}]
    use_chat = (getattr(tok, "chat_template", None) is not None) if chat is None else chat
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
    items = list(prompt)
    if not items:
        raise ValueError("empty prompt list")
    if all(isinstance(p, Mapping) for p in items):
        return False  # one chat
    return True


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
    stream: bool = False,
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
    ``tool_choice="auto"`` (the default; ``"required"`` or a tool's name force a call).
    """
    if isinstance(stop, str):
        stop = [stop]
    if tools is not None or format not in (None, "json"):
        spec, parse = resolve_format(format, tools, tool_choice, schema=schema, json_schema=json_schema,
                                      regex=regex, grammar=grammar, choices=choices)
    else:
        if tool_choice is not None:
            raise TypeError("tool_choice= needs tools=")
        spec, parse = resolve_constraint(schema=schema, json_schema=json_schema, regex=regex, grammar=grammar,
                                         choices=choices)
    params = SamplingParams(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, epsilon=epsilon,
        eta=eta, repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty, no_repeat_ngram_size=no_repeat_ngram_size, logit_bias=logit_bias,
        reward=reward, reward_weight=reward_weight, reward_top_k=reward_top_k,
    )
    if n < 1 or (best_of is not None and best_of < n):
        raise ValueError("need n >= 1 and best_of >= n")
    if num_beams > 1 and n > num_beams:
        raise ValueError(f"n={n} is more than num_beams={num_beams}")
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    constraints = Constraints.build(
        model.vocab,
        grammar=compile(spec, model.vocab) if spec is not None else None,
        ban=list(ban),
        ban_options=PhraseOptions(whole_word=ban_whole_words, case_sensitive=ban_case_sensitive,
                                  word_prefixes=ban_word_prefixes),
        must_include=list(must_include),
        budget_window=budget_window,
    )
    batch = _is_batch(prompt)
    prompts = list(prompt) if batch else [prompt]
    ids = [encode_prompt(model, p, chat) for p in prompts]
    _check_context(model, ids, max_new_tokens)
    stats = stats if stats is not None else GenerationStats()
    runner = model.logits_source() if hasattr(model, "logits_source") else ModelRunner(model)

    if stream:
        if batch or n > 1 or num_beams > 1:
            raise ValueError("stream=True needs a single prompt, n=1 and num_beams=1")
        return _stream(runner, ids, constraints, params, max_new_tokens, stop, timeout, seed, stats, model)

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
    for group in results:
        values = [_finish(c, constraints, parse, max_new_tokens) for c in group]
        out.append(values if n > 1 else values[0])
    return out if batch else out[0]


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


def resolve_format(format, tools, tool_choice, **given) -> tuple[Any, Callable[[str], Any]]:
    """``(spec, parse)`` for ``format="xml"`` and ``tools=`` (see `guided.frontends.xml`, `guided.frontends.tools`);
    ``given`` are `resolve_constraint`'s keywords, refused beside them."""
    if tools is not None:
        others = [k for k, v in given.items() if v is not None]
        if others or format not in (None, "json"):
            raise TypeError(f"tools= cannot be combined with {', '.join(others) or 'format='}")
        from guided.frontends.tools import tool_constraint

        return tool_constraint(tools, tool_choice if tool_choice is not None else "auto")
    if format != "xml":
        raise ValueError(f"format={format!r}: expected 'json' or 'xml'")
    if tool_choice is not None:
        raise TypeError("tool_choice= needs tools=")
    others = [k for k in ("regex", "grammar", "choices") if given[k] is not None]
    if others:
        raise TypeError(f"format='xml' cannot be combined with {', '.join(others)}")
    from guided.frontends.xml import Xml, parse_xml

    shape = given["schema"] if given["schema"] is not None else given["json_schema"]
    if shape is None:
        return Xml(), lambda text: text
    if isinstance(shape, (str, os.PathLike)):
        shape = json.loads(_read_if_path(shape, (".json",)))
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
    context = getattr(model.hf.config, "max_position_embeddings", None)
    longest = max(len(i) for i in ids)
    if context is not None and longest >= context:
        raise GuidedError(f"the prompt is {longest} tokens long but the model's context holds {context}")


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


def _stream(runner, ids, constraints, params, max_new_tokens, stop, timeout, seed, stats, model) -> Iterator[str]:
    """Yield text as it is decoded: whole UTF-8 characters, never past the start of a stop
    string (text that could be one is held back); validated at the end like a plain call."""
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
    if len(final) > emitted:
        yield final[emitted:]
