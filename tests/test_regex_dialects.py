"""The two regex dialects against their reference engines: Python's ``re`` and ECMA-262.

``guided.Regex`` and Lark terminals follow ``re`` (``[^]]`` is any character but ``]``, ``\\d``
is any Unicode decimal digit); JSON Schema ``pattern`` follows ECMA-262 (``[^]`` is any
character, ``[]`` matches nothing, ``\\d`` is ``[0-9]``), checked against QuickJS's engine.
Character classes are enumerated with ``]``, ``^`` and ``-`` in every position; whole regexes
are drawn at random (derandomised, bounded).
"""

from __future__ import annotations

import itertools
import json
import re
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guided.errors import GuidedError, RegexError
from guided.ir.reference import accepts
from guided.frontends.jsonschema._strings import pattern_content, unicode_mode
from guided.frontends.lark import Grammar, lark_to_ir
from guided.frontends.regex import Regex, regex_to_dfa

quickjs = pytest.importorskip("quickjs")

# Characters that tell the dialects apart: class syntax, Unicode digits, letters and spaces
# (Python's \s has \x1c, ECMA's has \ufeff), line terminators, a surrogate pair.
PROBES = ["", "a", "z", "]", "^", "-", "[", "\\", "0", "9", "_", " ", "\n", "\r", "\x0b", "\x1c", "\x85",
          "\xa0", "\u2028", "\ufeff", "é", "٣", "中", "😀", "a]", "]]", "x]", "ab", "a-", "-]",
          "🥝]", "😀😀", "a😀", "😀]]", "\U0010fffd"]
ITEMS = ["]", "^", "-", "a", "z", "\\]", "\\-", "\\^", "\\d", "\\W", "\\s"]


def classes(depth: int):
    for n in range(depth + 1):
        for body in itertools.product(ITEMS, repeat=n):
            for neg in ("", "^"):
                yield "[" + neg + "".join(body) + "]"


def python_verdicts(pattern: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            compiled = re.compile(pattern)
        except re.error:
            return None
    return [compiled.fullmatch(s) is not None for s in PROBES]


def check_python(pattern: str) -> bool:
    """guided.Regex agrees with re on every probe, or both refuse; True when compared."""
    expected = python_verdicts(pattern)
    try:
        dfa = regex_to_dfa(Regex(pattern, max_states=20_000))
    except GuidedError as exc:
        assert expected is None or isinstance(exc, RegexError), (pattern, exc)
        return False
    assert expected is not None, f"re refuses {pattern!r}, guided compiled it"
    got = [dfa.fullmatch(s.encode()) for s in PROBES]
    assert got == expected, (pattern, [p for p, a, b in zip(PROBES, got, expected) if a != b])
    return True


_JS = None


def ecma_verdicts(pattern: str):
    """ECMA-262's RegExp.test (unicode mode where the pattern allows it) as ``(unicode mode,
    verdicts)``, or None if it is not a pattern."""
    global _JS
    if _JS is None:
        ctx = quickjs.Context()
        ctx.set_memory_limit(256 * 2**20)
        ctx.set_time_limit(2)
        _JS = (ctx, ctx.eval("""(function (p, probes) {
            var r, u = true;
            try { r = new RegExp(p, "u"); } catch (e) { u = false; try { r = new RegExp(p); } catch (e2) { return "null"; } }
            return JSON.stringify([u, JSON.parse(probes).map(function (s) { return r.test(s); })]); })"""))
    try:
        out = json.loads(_JS[1](pattern, json.dumps(PROBES)))
    except quickjs.JSException:  # catastrophic backtracking in the reference: no verdict
        return None
    return None if out is None else (out[0], out[1])


def check_ecma(pattern: str, probes_exact: bool = True) -> bool:
    """A JSON Schema pattern's string content agrees with ECMA-262 (search semantics); True when compared.

    Without the u flag (UTF-16 code units) guided keeps the pattern's classes in the BMP: on
    strings with astral characters it may then only reject more, never accept what ECMA rejects.
    """
    found = ecma_verdicts(pattern)
    if found is None:
        return False
    js_unicode, expected = found
    assert js_unicode or not unicode_mode(pattern), f"{pattern!r} is not a u-flag pattern, guided says it is"
    try:
        dfa = pattern_content(pattern, 20_000)
    except GuidedError:
        return False  # refused (anchors inside, lookaround...): never a wrong answer
    got = [dfa.fullmatch(json.dumps(s)[1:-1].encode()) for s in PROBES]
    unsound = [p for p, a, b in zip(PROBES, got, expected) if a and not b]
    assert not unsound, (pattern, unsound)
    exact = [js_unicode or all(ord(c) <= 0xFFFF for c in s) for s in PROBES]
    if probes_exact:
        assert all(a == b for a, b, e in zip(got, expected, exact) if e), (
            pattern, [p for p, a, b, e in zip(PROBES, got, expected, exact) if e and a != b])
    return True


def test_issue_cases():
    assert regex_to_dfa(r"[^]]").fullmatch(b"x") and not regex_to_dfa(r"[^]]").fullmatch(b"]")
    assert not regex_to_dfa(r"[^]]").fullmatch(b"x]")
    d = regex_to_dfa(r"\[[^]]*\]")
    assert d.fullmatch(b"[abc]") and not d.fullmatch(b"[a]]]]")
    ir = lark_to_ir(Grammar('start: T\nT: /[^]]+/'))
    assert accepts(ir, b"ab") and not accepts(ir, b"a]")
    # ECMA-262: [^] is any character and [] nothing.
    assert pattern_content("^[^]]$").fullmatch(b"x]")
    assert pattern_content("^a[]?$").fullmatch(b"a") and not pattern_content("^a[]$").fullmatch(b"a")


def test_python_classes_with_every_position_of_bracket_caret_and_dash():
    compared = sum(check_python(c + q) for c in classes(2) for q in ("", "+"))
    assert compared > 400


def test_ecma_classes_with_every_position_of_bracket_caret_and_dash():
    compared = sum(check_ecma("^" + c + "$") for c in classes(2))
    assert compared > 150


def test_unicode_class_escapes_are_re_s():
    for esc, yes, no in ((r"\d", "٣", "a"), (r"\w", "é", "-"), (r"\s", "\x1c", "a")):
        assert regex_to_dfa(esc).fullmatch(yes.encode()) and not regex_to_dfa(esc).fullmatch(no.encode())
        upper = esc.upper()
        assert not regex_to_dfa(upper).fullmatch(yes.encode()) and regex_to_dfa(upper).fullmatch(no.encode())
    assert not pattern_content(r"^\d$").fullmatch("٣".encode())
    assert pattern_content(r"^[\S]$").fullmatch("é".encode())


PIECES = ["a", "b", "]", "^", "-", "\\]", "\\-", "\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "\\\\", ".", "0", " ",
          "é", "٣", "{", "}", ",", "\\0", "\\x41", "\\n", "\\.", "\\{", "\\u0041", "K"]
CLASS_BODY = st.lists(st.sampled_from(PIECES + ["a-z", "0-9", "]-a", "-a", "["]), max_size=4).map("".join)
CLASS = st.builds(lambda neg, body: "[" + neg + body + "]", st.sampled_from(["", "^"]), CLASS_BODY)
ATOM = st.one_of(CLASS, st.sampled_from(PIECES))
QUANT = st.sampled_from(["", "", "*", "+", "?", "{2}", "{1,2}", "{,2}", "{", "{}", "*?"])
REGEX = st.recursive(
    st.builds(lambda a, q: a + q, ATOM, QUANT),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map("".join),
        st.builds(lambda a, q: "(" + a + ")" + q, inner, QUANT),
        st.builds(lambda a, b: "(?:" + a + "|" + b + ")", inner, inner),
    ),
    max_leaves=5,
)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
@given(REGEX, st.booleans())
def test_random_regexes_agree_with_re(pattern, ignore_case):
    check_python(("(?i)" if ignore_case else "") + pattern)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
@given(st.one_of(REGEX, st.builds(lambda a, b: a + b, REGEX, st.sampled_from(["[^]", "[]", "[^]]", "\\cJ"]))))
def test_random_patterns_agree_with_ecma262(pattern):
    check_ecma(pattern)


def test_schema_keywords_use_the_ecma_dialect_everywhere():
    """``pattern`` siblings filtering an enum, and ``patternProperties`` deciding a named property,
    read the pattern as ECMA-262 too (Python's ``$`` would match "a" before a final newline)."""
    from guided.frontends.jsonschema import JsonSchema, schema_to_ir

    ir = schema_to_ir(JsonSchema({"enum": ["a\n", "a", "é"], "pattern": "^\\w$"}))
    assert [accepts(ir, json.dumps(v).encode()) for v in ("a\n", "a", "é")] == [False, True, False]
    schema = {"type": "object", "properties": {"a\n": {"type": "array"}},
              "patternProperties": {"^a$": {"type": "integer"}}, "additionalProperties": False}
    ir = schema_to_ir(JsonSchema(schema))
    assert accepts(ir, b'{"a\\n": []}') and not accepts(ir, b'{"a\\n": 1}')
    assert accepts(ir, b'{"a": 1}') and not accepts(ir, b'{"a": []}')


def test_patterns_without_the_u_flag_on_astral_characters():
    """The soundness harness's findings: ``[^]]`` without the u flag is ``[^]`` (one UTF-16 code
    unit) then ``]``; an astral character is two code units, so ECMA rejects "🥝]" and "🥝". Guided
    keeps such a pattern's classes in the BMP (the \\u spelling of the pair is the same character)."""
    for pattern in ("^[^]]*$", "^.]$", "^[^a]]{2}$", "^🥝]$", "a]|^.{2}$", "^\\u{2}]$"):
        assert not unicode_mode(pattern)
        assert check_ecma(pattern)
    d = pattern_content("^[^]]*$")
    assert d.fullmatch(b"x]]") and not d.fullmatch("🥝]".encode()) and not d.fullmatch(b"\\ud83e\\udd5d]")
    assert pattern_content("^\\u{2}]$").fullmatch(b"uu]")  # without u, \\u{2} is "u" twice
    # Unanchored: the text around a match may hold astral characters (whole code units both ways).
    assert pattern_content("a]").fullmatch("🥝a]🥝".encode())
    assert unicode_mode("^.$") and pattern_content("^.$").fullmatch("🥝".encode())


ASTRAL_PIECES = ["🥝", "😀", ".", "[^]", "[^a]", "[🥝]", "[^🥝]", "\\S", "\\W", "\\D", "\\ud83e", "\\udd5d", "\\uD83D\\uDE00"]
NON_U = st.builds(lambda a, q, b, tail: a + q + b + tail, st.sampled_from(ASTRAL_PIECES + PIECES), QUANT,
                  st.sampled_from(ASTRAL_PIECES + ["", "a"]), st.sampled_from(["]", "\\-", "{", "}", "\\a", ""]))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=True)
@given(st.sampled_from(["", "^"]), NON_U, st.sampled_from(["", "$"]))
def test_random_patterns_with_astral_characters_are_sound_in_both_ecma_modes(start, body, end):
    """Patterns with astral characters, with and without the u flag (a lone ``]``, ``\\-``, ``{``...
    make a pattern non-u), against QuickJS on probes with astral characters: guided never accepts
    what ECMA rejects, and agrees exactly in u mode and on BMP strings."""
    check_ecma(start + body + end)


def test_unicode_mode_claims_only_u_flag_patterns():
    """`unicode_mode` is conservative: True only where ``new RegExp(p, "u")`` compiles."""
    ctx = quickjs.Context()
    compiles = ctx.eval('(function (p) { try { new RegExp(p, "u"); return true; } catch (e) { return false; } })')
    pieces = ["a", "]", "[", "[^", "{", "}", "{2}", "{1,}", "(", ")", "(?:", "(?=", "*", "\\-", "\\d", "-",
              "\\u{1F600}", "\\u{110000}", "\\x4", "\\x41", "\\c", "\\cA", "\\0", "\\01", "\\1", "\\b", "\\B",
              "\\k<n>", "(?<n>", "\\/", "\\q", "\\p{L}", "|"]
    claimed = 0
    for n in (1, 2, 3):
        for parts in itertools.product(pieces, repeat=n) if n < 3 else itertools.islice(
                itertools.product(pieces, repeat=3), 0, None, 7):
            p = "".join(parts)
            if unicode_mode(p):
                claimed += 1
                assert compiles(p), p
    assert claimed > 500


def test_escapes_without_the_u_flag_read_as_ecma262():
    """Without the u flag an escaped letter that is no escape is the letter (``re`` would read
    ``\\a`` as BEL), ``\\c`` without a letter is text, but ``[\\c1]`` is a control character."""
    ctx = quickjs.Context()
    search = ctx.eval('(function (p, s) { var r; try { r = new RegExp(p, "u"); } catch (e) { r = new RegExp(p); }'
                      ' return r.test(s); })')
    cases = {r"^\a]$": ["a]", "\x07]"], r"^\Z]$": ["Z]"], r"^\k]$": ["k]"], r"^\x4]$": ["x4]", "\x04]"],
             r"^\u00]$": ["u00]"], r"^\c1]$": ["\\c1]", "\x11]"], r"^[\c1]]$": ["\x11]", "\\]", "c]", "1]"],
             r"^[\c_]]$": ["\x1f]", "_]"], r"^\cA]$": ["\x01]", "cA]"], r"^[\cé]]$": ["\\]", "c]", "é]", "\x09]"],
             r"^\u{2}]$": ["uu]", "\x02]"], r"^]\p{L}$": ["]p{L}", "]a"]}
    for pattern, texts in cases.items():
        assert not unicode_mode(pattern)
        dfa = pattern_content(pattern)
        for text in texts:
            got = dfa.fullmatch(json.dumps(text, ensure_ascii=False)[1:-1].encode())
            assert got == search(pattern, text), (pattern, text)
