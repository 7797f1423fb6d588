"""The ``guided`` command line: generate under a constraint, or validate a file against one.

    guided generate --regex '[0-9]{4}' "Year of the moon landing?"
    guided generate --schema schemas/person.json --temperature 0.7 "Describe a person"
    guided generate --grammar grammars/json.lark --max-new-tokens 200 "Some JSON"
    guided generate --choices yes no maybe "Is water wet?"
    guided validate answer.json --schema schemas/person.json

``generate`` streams to the terminal (``--no-stream`` prints at the end; ``--stream objects``
with ``--schema`` prints the document so far as one JSON line per completed value) and
``--stats`` prints tokens/s and where the time went on stderr.  The prompt may follow
``--choices`` (the last word is the prompt, as above).  ``validate`` needs no model: it walks
the file's bytes through the compiled constraint and reports the first offending position.
Exit status: 0 on success, 1 when validation fails or generation cannot satisfy the constraint,
2 on usage errors (a bad option or value, a malformed or too large constraint, a file or
model that cannot be read).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Sequence

__all__ = ["main"]


def _add_constraint_args(p: argparse.ArgumentParser, choices: bool = True) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--schema", "--json-schema", dest="schema", metavar="FILE", help="JSON Schema file")
    g.add_argument("--regex", metavar="PATTERN", help="regular expression (whole output)")
    g.add_argument("--grammar", metavar="FILE", help="Lark grammar file, or a shipped grammar's name (json, sql, ...)")
    if choices:
        g.add_argument("--choices", nargs="+", metavar="TEXT", help="one of these strings")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guided", description="Constrained generation with exact token masks.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate text under a constraint")
    gen.add_argument("prompt", nargs="?", help="the prompt (use - to read it from stdin)")
    _add_constraint_args(gen)
    gen.add_argument("--model", default=None, help="local HF model folder or .gguf (default: SmolLM2-135M-Instruct)")
    gen.add_argument("--max-new-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-k", type=int, default=0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--min-p", type=float, default=0.0)
    gen.add_argument("--typical-p", type=float, default=1.0)
    gen.add_argument("--eta", type=float, default=0.0)
    gen.add_argument("--epsilon", type=float, default=0.0)
    gen.add_argument("--repetition-penalty", type=float, default=1.0)
    gen.add_argument("--frequency-penalty", type=float, default=0.0)
    gen.add_argument("--presence-penalty", type=float, default=0.0)
    gen.add_argument("--ban", action="append", default=[], metavar="PHRASE", help="never output this word/phrase")
    gen.add_argument("--must-include", action="append", default=[], metavar="PHRASE")
    gen.add_argument("--num-beams", type=int, default=1)
    gen.add_argument("--stop", action="append", default=[], metavar="TEXT")
    gen.add_argument("--timeout", type=float, default=None, help="seconds")
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--no-chat", action="store_true", help="do not apply the chat template")
    gen.add_argument("--no-stream", action="store_true", help="print the output at the end")
    gen.add_argument("--stream", choices=["text", "objects"], default="text",
                     help="objects: with --schema, print the document so far as one JSON line each time a value "
                          "is complete, the validated document last")
    gen.add_argument("--stats", action="store_true", help="print generation statistics on stderr")

    val = sub.add_parser("validate", help="check a file against a constraint")
    val.add_argument("file", help="file to check (- for stdin)")
    _add_constraint_args(val, choices=False)
    return parser


def _spec_kwargs(args) -> dict:
    if getattr(args, "schema", None):
        return {"json_schema": pathlib.Path(args.schema)}
    if getattr(args, "regex", None):
        return {"regex": args.regex}
    if getattr(args, "grammar", None):
        return {"grammar": args.grammar}
    if getattr(args, "choices", None):
        return {"choices": args.choices}
    return {}


def _generate(args) -> int:
    import guided
    from guided.decoding import GenerationStats

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    model = guided.load_model(args.model)
    stats = GenerationStats()
    kw = dict(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        min_p=args.min_p, typical_p=args.typical_p, eta=args.eta, epsilon=args.epsilon,
        repetition_penalty=args.repetition_penalty, frequency_penalty=args.frequency_penalty,
        presence_penalty=args.presence_penalty, ban=args.ban, must_include=args.must_include,
        num_beams=args.num_beams, stop=args.stop, timeout=args.timeout, seed=args.seed, stats=stats,
        chat=False if args.no_chat else None,
    )
    kw.update(_spec_kwargs(args))
    if args.stream == "objects":
        if "json_schema" not in kw:
            print("guided generate: --stream objects needs --schema", file=sys.stderr)
            return 2
        for obj in guided.generate(model, prompt, stream="objects", **kw):
            print(json.dumps(obj, ensure_ascii=False), flush=True)
        if args.stats:
            print(str(stats), file=sys.stderr)
        return 0
    stream = not args.no_stream and args.num_beams == 1
    result = guided.generate(model, prompt, stream=stream, **kw)
    if stream:
        for chunk in result:
            sys.stdout.write(chunk)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        print(result if isinstance(result, str) else json.dumps(result, ensure_ascii=False))
    if args.stats:
        print(str(stats), file=sys.stderr)
    return 0


def _validate(args) -> int:
    import guided
    from guided.generate import resolve_constraint

    data = sys.stdin.buffer.read() if args.file == "-" else pathlib.Path(args.file).read_bytes()
    kw = _spec_kwargs(args)
    if not kw:
        print("guided validate: give --schema, --regex or --grammar", file=sys.stderr)
        return 2
    spec, parse = resolve_constraint(**kw)
    vocab = byte_vocabulary()
    matcher = guided.compile(spec, vocab).matcher()
    for i, b in enumerate(data):
        try:
            matcher.advance(b)
        except guided.ConstraintViolation:
            line = data[:i].count(b"\n") + 1
            col = i - (data.rfind(b"\n", 0, i) + 1) + 1
            print(f"{args.file}:{line}:{col}: invalid at byte {i} ({bytes([b])!r})", file=sys.stderr)
            return 1
    if not matcher.accepts_eos():
        print(f"{args.file}: incomplete: the text ends before the document does", file=sys.stderr)
        return 1
    print(f"{args.file}: valid")
    return 0


def byte_vocabulary():
    """A 257-token vocabulary (every byte, then EOS): walks any text through any constraint."""
    import guided

    global _BYTES
    if _BYTES is None:
        _BYTES = guided.Vocabulary.from_token_bytes([bytes([i]) for i in range(256)] + [b"<eos>"], eos_token_ids=[256])
    return _BYTES


_BYTES = None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``guided`` command (``[project.scripts] guided = "guided.cli:main"``)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "generate" and args.prompt is None:
        if args.choices and len(args.choices) > 1:
            args.prompt = args.choices.pop()  # --choices yes no maybe "Is water wet?"
        else:
            parser.error("the prompt is missing (give it after the options, or before --choices)")
    from guided.errors import (
        GuidedError,
        LimitExceeded,
        ModelUnavailable,
        SpecError,
        TokenizerMismatch,
        UsageError,
    )

    try:
        return _generate(args) if args.command == "generate" else _validate(args)
    except (UsageError, SpecError, LimitExceeded, ModelUnavailable, TokenizerMismatch, OSError) as e:
        print(f"guided: {e}", file=sys.stderr)
        return 2  # the input is wrong: the constraint, an option's value, a file or the model
    except GuidedError as e:
        print(f"guided: {e}", file=sys.stderr)
        return 1  # generation could not satisfy the constraint


if __name__ == "__main__":
    sys.exit(main())
