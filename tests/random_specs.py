"""Random constraints for the soundness tests and harness: JSON Schemas, regexes, Lark grammars.

Each generator takes a `random.Random` so that a seed fixes what it draws.  They aim at the
classes of soundness bugs: numbers compared by value under every combinator (in every
spelling), classes with ``]``, ``^`` and ``-`` anywhere and Unicode class escapes, grammars with
rules that never finish and now and then a zero-width terminal.  Grammar terminals overlap
(``/[a-e]+/`` and ``"do"``): guided refuses the grammars that Lark's lexer order would read
otherwise than guided's greedy lexer (`guided.frontends.lark_order`).
"""

from __future__ import annotations

from typing import Any

# ------------------------------------------------------------------------------------------------
# Random JSON Schemas: numbers by value under every combinator, strings with ECMA patterns,
# arrays with contains, objects.

NUMS = [0, 1, -1, 2, 5, 10, -2.5, 0.5, 1.25, 100, 3]


def _num(rng):
    return rng.choice(NUMS)


def _scalar_leaf(rng) -> dict:
    k = rng.randrange(16)
    if k == 0:
        return {"type": rng.choice(["integer", "number", "string", "boolean", "null"])}
    if k == 1:
        return {rng.choice(["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"]): _num(rng)}
    if k == 2:
        return {"multipleOf": rng.choice([2, 3, 0.5, 0.25])}
    if k == 3:
        return {"const": rng.choice(NUMS + ["a", True, None])}
    if k == 4:
        return {"enum": rng.sample(NUMS + ["a", "b", False], rng.randint(1, 3))}
    if k == 5:
        return {"type": "integer", rng.choice(["minimum", "maximum"]): _num(rng)}
    if k == 6:
        return {"type": "number", "minimum": _num(rng), "maximum": _num(rng) + 10}
    if k == 7:
        return {"type": "string", "pattern": rng.choice(PATTERNS)}
    if k == 8:
        return {"type": "string", "maxLength": rng.randint(0, 4)}
    if k == 9:
        return {"type": "string", "minLength": rng.randint(1, 3), "pattern": rng.choice(PATTERNS)}
    if k == 10:
        return {"not": {"type": rng.choice(["integer", "string", "number"])}}
    if k == 11:
        return {"type": ["integer", "string"]}
    if k == 12:
        return {"enum": [rng.choice(NUMS), rng.choice(NUMS)], "type": "integer"}
    return {}


PATTERNS = ["^[a-c]+$", "b", "^[^]]*$", "^[]a]?$", "\\d", "^\\w*$", "^[^\\s]{1,3}$", "a|b$", "^(ab)*$", "[^]",
            "^\\S?$", "^[\\W\\d]+$", "x{,2}", "^a[]?$"]


def random_schema(rng, depth: int = 0) -> Any:
    if depth >= 2 or rng.random() < 0.35:
        return _scalar_leaf(rng)
    k = rng.randrange(12)
    sub = lambda: random_schema(rng, depth + 1)
    if k == 0:
        return {"not": sub()}
    if k == 1:
        return {"oneOf": [sub(), sub()]}
    if k == 2:
        return {"if": sub(), "then": sub(), "else": sub()}
    if k == 3:
        return {"anyOf": [sub(), sub()]}
    if k == 4:
        return {"allOf": [sub(), sub()]}
    if k == 5:
        return {"type": "array", "items": sub(), "maxItems": rng.randint(1, 4)}
    if k == 6:
        out = {"type": "array", "contains": sub(), "maxItems": 4}
        if rng.random() < 0.7:
            out["maxContains"] = rng.randint(0, 2)
        if rng.random() < 0.5:
            out["minContains"] = rng.randint(0, 2)
        return out
    if k == 7:
        return {"type": "object", "properties": {"a": sub(), "b": sub()},
                "required": rng.sample(["a", "b"], rng.randint(0, 2)), "additionalProperties": False}
    if k == 8:
        return {"type": "array", "prefixItems": [sub()], "items": False}
    if k == 9:
        if depth:  # a draft is the document's: "$schema" in a subschema switches nothing
            return _scalar_leaf(rng)
        return {"$schema": "http://json-schema.org/draft-04/schema#",
                **{k_: v for k_, v in _scalar_leaf(rng).items() if k_ not in ("exclusiveMinimum", "exclusiveMaximum",
                                                                                "const")}}
    if k == 10:
        return {"type": "object", "properties": {"n": sub()}, "required": ["n"], "additionalProperties": False}
    return {"type": "object", "properties": {"a": sub(), "a\n": sub()}, "maxProperties": 3,
            "patternProperties": {rng.choice(["^a$", "b", "^[ab]$", "^\\w$", "[^]]"]): sub()},
            "additionalProperties": rng.choice([False, True, sub()])}


# ------------------------------------------------------------------------------------------------
# Random regexes: classes with ], ^ and - anywhere, Unicode class escapes, groups, repeats.

R_PIECES = ["a", "b", "c", "x", "0", "1", " ", "-", "\\]", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S", ".", "é", "٣",
            "\\.", "\\{", "{", "}", ",", "\\0", "\\x41", "\\n"]
R_CLASS = ["a-c", "0-9", "]", "^", "-", "a", "x", "\\d", "\\W", "\\s", "é", "["]


def random_regex(rng, depth: int = 0) -> str:
    parts = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.4:
            body = "".join(rng.choice(R_CLASS) for _ in range(rng.randint(1, 3)))
            atom = "[" + ("^" if rng.random() < 0.35 else "") + body + "]"
        elif r < 0.55 and depth < 2:
            atom = "(" + random_regex(rng, depth + 1) + ")"
        elif r < 0.65 and depth < 2:
            atom = "(?:" + random_regex(rng, depth + 1) + "|" + random_regex(rng, depth + 1) + ")"
        else:
            atom = rng.choice(R_PIECES)
        parts.append(atom + rng.choice(["", "", "*", "+", "?", "{1,3}", "{,2}", "{2}"]))
    out = "".join(parts)
    return ("(?i)" + out) if depth == 0 and rng.random() < 0.1 else out


# ------------------------------------------------------------------------------------------------
# Random Lark grammars with non-productive rules, optional ignored whitespace, and now and then
# a zero-width terminal.

G_LITERALS = ['"("', '")"', '","', '"+"', '"="', '"if"', '"do"', '":"', '"=="', '";"']
G_REGEXES = ["/[a-e]+/", "/[0-9]+/", "/[pq]/", "/[uvw]{1,3}/"]


def random_grammar(rng) -> str:
    n = rng.randint(2, 5)
    rules = [f"r{i}" for i in range(n)]
    regexes = rng.sample(G_REGEXES, rng.randint(1, 3))
    terms = {f"T{i}": r for i, r in enumerate(regexes)}
    symbols = list(terms) + rng.sample(G_LITERALS, 4)
    lines = [f"start: r0{' | ' + rng.choice(symbols) if rng.random() < 0.3 else ''}"]
    dead = f"r{n}"
    for i, name in enumerate(rules):
        alts = []
        for _ in range(rng.randint(1, 3)):
            seq = [rng.choice(symbols + rules[i + 1:] + ([name] if rng.random() < 0.2 else []))
                   for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.15:
                seq.append(dead)  # a rule that never finishes
            alts.append(" ".join(seq))
        if i == n - 1 or rng.random() < 0.3:
            alts.append(rng.choice(symbols))  # a way out
        lines.append(f"{name}: " + " | ".join(alts))
    lines.append(f'{dead}: "!" {dead}' + (f' | {dead} "?"' if rng.random() < 0.5 else ""))
    for t, r in terms.items():
        lines.append(f"{t}: {r}")
    if rng.random() < 0.05:
        lines.append('EMPTYISH: /a?/')
        lines[1] = lines[1] + " | EMPTYISH"
    if rng.random() < 0.5:
        lines.append('%ignore " "')
    return "\n".join(lines) + "\n"
