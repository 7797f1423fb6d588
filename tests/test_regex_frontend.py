"""The regex front-end and byte DFAs against Python's `re` and the `regex` module as oracles."""

from __future__ import annotations

import functools
import re
import warnings

import pytest
import regex as regex_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guided import LimitExceeded, Regex, RegexError
from guided.errors import GuidedError
from guided.frontends.regex import regex_to_dfa
from guided.ir.dfa import utf8_ranges
from tests.regexes import PRACTICAL

compiled = functools.lru_cache(maxsize=None)(regex_to_dfa)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(PRACTICAL))
@SETTINGS
@given(data=st.data())
def test_samples_fullmatch_and_mutations_agree_with_re(name, data):
    pattern = PRACTICAL[name]
    dfa = compiled(pattern)
    oracle = re.compile(pattern, re.ASCII)
    s = data.draw(st.from_regex(oracle, fullmatch=True))
    assert dfa.fullmatch(s.encode()), s
    for k in range(len(s.encode()) + 1):
        assert dfa.is_prefix(s.encode()[:k])
    # Mutate: insert, delete or replace one character; the oracle decides.
    pos = data.draw(st.integers(0, len(s)))
    char = data.draw(st.sampled_from(list("a0-.\"\\ Zé中😀\n")) | st.characters())
    op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    if op == "insert":
        m = s[:pos] + char + s[pos:]
    elif op == "delete":
        m = s[:pos] + s[pos + 1 :]
    else:
        m = s[:pos] + char + s[pos + 1 :]
    try:
        encoded = m.encode()
    except UnicodeEncodeError:  # a lone surrogate is never text
        return
    assert dfa.fullmatch(encoded) == bool(oracle.fullmatch(m)), m
    assert dfa.is_prefix(encoded) == bool(regex_module.fullmatch(pattern, m, partial=True, flags=regex_module.ASCII)), m


def test_multibyte_characters_split_at_any_byte():
    dfa = regex_to_dfa(r"[é中😀]+")
    data = "é中😀".encode()
    for k in range(len(data) + 1):
        assert dfa.is_prefix(data[:k])
    assert dfa.fullmatch(data)
    assert not dfa.fullmatch(data[:-1])
    assert not dfa.is_prefix("ê".encode()[:2])
    assert not dfa.is_prefix(b"\xff")


def test_negated_class_and_dot_cover_all_of_unicode_but_the_excluded():
    dot = regex_to_dfa(".")
    negated = regex_to_dfa('[^"]')
    for cp in list(range(0, 0x3000, 7)) + [0xFFFF, 0x10000, 0x10FFFF, 0xE000]:
        if 0xD800 <= cp <= 0xDFFF:
            continue
        enc = chr(cp).encode()
        assert dot.fullmatch(enc) == (cp != 10)
        assert negated.fullmatch(enc) == (cp != ord('"'))
    # Encodings of surrogates and overlong forms are not UTF-8.
    assert not dot.is_prefix(b"\xed\xa0")
    assert not dot.is_prefix(b"\xc0")
    assert not dot.is_prefix(b"\xe0\x80")


@given(st.integers(0, 0x10FFFF), st.integers(0, 0x10FFFF))
@settings(max_examples=200, deadline=None)
def test_utf8_ranges_cover_exactly_the_range(a, b):
    lo, hi = min(a, b), max(a, b)
    seqs = utf8_ranges(lo, hi)

    def covered(cp):
        enc = chr(cp).encode("utf-8", "surrogatepass")
        return any(len(s) == len(enc) and all(x <= c <= y for (x, y), c in zip(s, enc)) for s in seqs)

    probes = {lo, hi, max(0, lo - 1), min(0x10FFFF, hi + 1), (lo + hi) // 2, 0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000}
    for cp in probes:
        expected = lo <= cp <= hi and not 0xD800 <= cp <= 0xDFFF
        assert covered(cp) == expected, hex(cp)


@pytest.mark.parametrize(
    "pattern, position, message",
    [
        (r"(a)\1", 3, "backreference"),
        (r"(?<!a(?!b))c", 5, "lookahead inside a lookbehind"),
        (r"(?<!a\b)c", 5, "word boundary \\b inside a lookbehind"),
        (r"(?<=a$)b", 5, "'$' inside a lookbehind"),
        (r"(?m:a^)b", 5, "scoped MULTILINE"),
        (r"x[ab", 1, "unterminated"),
        (r"\p{L}+", 0, "Unicode property"),
        (r"(?P<n>a)(?P=n)", 8, "backreference"),
        (r"ab\u12", 2, "four hex digits"),
        (r"(?>a|ab)c", 0, "atomic group"),
        (r"x(?:a|ab)++", 10, "possessive"),
    ],
)
def test_unsupported_constructs_name_their_position(pattern, position, message):
    with pytest.raises(RegexError) as info:
        regex_to_dfa(pattern)
    assert info.value.position == position
    assert message in str(info.value)
    assert pattern in str(info.value)


def test_anchors_and_unicode_escapes():
    assert regex_to_dfa(r"^ab$").fullmatch(b"ab")
    assert regex_to_dfa(r"(?i)^ab\Z").fullmatch(b"AB")
    assert regex_to_dfa(r"\u00e9\x{4e2d}\U0001F600").fullmatch("é中😀".encode())
    assert regex_to_dfa(r"[\u0041-\u0043]+").fullmatch(b"ABCA")


def test_empty_language_is_refused():
    with pytest.raises(RegexError, match="matches no string"):
        regex_to_dfa(r"[^\x00-\U0010FFFF]")


def test_state_limit_guards_blow_up():
    with pytest.raises(LimitExceeded, match="more than 2000"):
        regex_to_dfa(Regex(r"(a|b)*a(a|b){15}", max_states=2000))
    assert regex_to_dfa(Regex(r"(a|b)*a(a|b){5}", max_states=2000)).num_states > 32


def test_time_limit_guards_blow_up():
    with pytest.raises(LimitExceeded, match="longer than"):
        regex_to_dfa(Regex(r"(a|b|c|d)*a(a|b|c|d){16}", max_states=10**7, max_seconds=0.2))


_atoms = st.sampled_from(["a", "b", "[a-c]", "[^a]", ".", r"\d", r"\w", r"\s", "é", "中", "(", ")", "|", "*", "+", "?",
                          "{2}", "{1,3}", "{,2}", "[", "]", "^", "$", "\\", r"\1", "(?:", "(?=", "(?i)", "-", r"\u00e9"])


@given(st.lists(_atoms, max_size=12).map("".join))
@settings(max_examples=300, deadline=None)
def test_fuzzed_regexes_compile_or_raise_a_guided_error(pattern):
    try:
        dfa = regex_to_dfa(Regex(pattern, max_states=5000, max_seconds=2.0))
    except GuidedError:
        return
    # Python understands every pattern guided compiles, and the two agree (re's own \\d \\w \\s).
    with warnings.catch_warnings():  # Python warns about "[[" (a possible future nested set)
        warnings.simplefilter("ignore", FutureWarning)
        oracle = re.compile(pattern)
    for s in ["", "a", "ab", "aa", "b1", " ", "é", "中", "a\n", "٣", "\x1c", "]"]:
        assert dfa.fullmatch(s.encode()) == bool(oracle.fullmatch(s)), (pattern, s)


@pytest.mark.parametrize("pattern", [r"(?i)select", r"(?i)[a-z]+", r"(?i)straße", r"(?i)ΣΊΣΥΦΟΣ", r"(?i:k)it"])
def test_case_insensitive_matching_follows_python_re(pattern):
    dfa = regex_to_dfa(pattern)
    oracle = re.compile(pattern)
    for text in ["SELECT", "ſelect", "seleKt", "SeLeCt", "kit", "\u212ait", "KIT", "straße", "STRASSE", "STRAẞE",
                 "σίσυφος", "ΣΊΣΥΦΟΣ", "σίσυφοσ", "İ", "ı", "i"]:
        assert dfa.fullmatch(text.encode()) == bool(oracle.fullmatch(text)), (pattern, text)


def test_literal_dfas_match_the_regex_route():
    from guided.frontends.regex import literal_to_dfa

    for text, ignore_case in [("select", True), ("WHERE", True), ("<tool_call>", False), ("é中😀", False),
                              ("kiss", True), ("a.b*c", False)]:
        fast = literal_to_dfa(text, ignore_case)
        slow = regex_to_dfa(("(?i)" if ignore_case else "") + re.escape(text))
        for probe in [text, text.upper(), text.lower(), text.swapcase(), text[:-1], text + "x",
                      text.replace("s", "\u017f"), text.replace("k", "\u212a"), text.replace("i", "\u0130")]:
            assert fast.fullmatch(probe.encode()) == slow.fullmatch(probe.encode()), (text, probe)
