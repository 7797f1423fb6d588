"""Zero-width assertions and class escapes in regexes, against their reference engines.

``guided.Regex`` (Python ``re``, full match) is compared with ``re.fullmatch`` on every string
of a small alphabet up to length 4 plus samples of the compiled automaton; JSON Schema
``pattern`` (ECMA-262, search) with QuickJS.  Token masks of a few patterns are checked against
the ``regex`` module's partial matching along random walks.
"""

from __future__ import annotations

import itertools
import random
import re
import warnings

import numpy as np
import pytest
import regex as regex_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guided
from guided import Grammar, GrammarError, Regex, Vocabulary
from guided.errors import GuidedError, LimitExceeded, RegexError
from guided.frontends.jsonschema._strings import pattern_content
from guided.frontends.regex import regex_to_dfa

ALPHABET = ["a", "b", " ", "é", "\n", "1"]
TEXTS = ["".join(t) for n in range(5) for t in itertools.product(ALPHABET, repeat=n)]
ENCODED = [t.encode() for t in TEXTS]


def derandomised(examples: int):
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                    derandomize=True)


def sample(dfa, rng: random.Random, count: int = 20, max_len: int = 12) -> list[bytes]:
    """Random accepted byte strings of a trimmed DFA (a walk that stops at accepting states)."""
    out = []
    for _ in range(count):
        state, data = dfa.initial, bytearray()
        while len(data) < max_len or not dfa.accepting[state]:
            if dfa.accepting[state] and rng.random() < 0.3:
                break
            moves = np.flatnonzero(dfa.transitions[state])
            if not moves.size:
                break
            b = int(rng.choice(moves.tolist()))
            data.append(b)
            state = int(dfa.transitions[state, b])
            if len(data) > 4 * max_len:
                break
        if dfa.accepting[state]:
            out.append(bytes(data))
    return out


def check_python(pattern: str) -> bool:
    """guided.Regex agrees with re.fullmatch on every short text and on samples of its own
    automaton, or refuses with a documented reason; True when compared."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            oracle = re.compile(pattern)
        except re.error:
            oracle = None
    try:
        dfa = regex_to_dfa(Regex(pattern, max_states=20_000, max_seconds=20))
    except LimitExceeded:
        return False
    except RegexError as exc:
        if oracle is None:
            return False
        if "matches no string" in str(exc):
            assert not [t for t in TEXTS if oracle.fullmatch(t)], pattern
            return False
        assert "inside a lookbehind" in str(exc) or "atomic group or possessive" in str(exc), (pattern, exc)
        return False
    assert oracle is not None, f"re refuses {pattern!r}, guided compiled it"
    wrong = [t for t, e in zip(TEXTS, ENCODED) if dfa.fullmatch(e) != bool(oracle.fullmatch(t))]
    assert not wrong, (pattern, wrong[:5])
    for data in sample(dfa, random.Random(pattern)):
        assert oracle.fullmatch(data.decode()), (pattern, data)
    return True


def test_class_escapes_inside_classes_both_dialects():
    """``\\S \\D \\W`` (and ``\\s \\d \\w``) in classes and negated classes, as re and ECMA-262 read them."""
    probes = ["a", "Z", "_", "1", "٣", " ", "\t", "\x1c", "\xa0", "\ufeff", "\u2028", "é", "-", "中", "😀"]
    items = ["\\S", "\\D", "\\W", "\\s", "\\d", "\\w", "a", "-"]
    compared = 0
    for n in (1, 2):
        for body in itertools.product(items, repeat=n):
            for neg in ("", "^"):
                cls = "[" + neg + "".join(body) + "]"
                try:
                    dfa = regex_to_dfa(cls)
                except RegexError:  # an empty class, such as [^\S\D]: re matches nothing either
                    assert not any(re.fullmatch(cls, chr(cp)) for cp in range(0x3000)), cls
                    continue
                for p in probes:
                    assert dfa.fullmatch(p.encode()) == bool(re.fullmatch(cls, p)), (cls, p)
                compared += 1
    assert compared > 100


def test_class_escapes_inside_classes_ecma262():
    check_ecma = _ecma()
    items = ["\\S", "\\D", "\\W", "\\s", "\\d", "\\w", "a"]
    for n in (1, 2):
        for body in itertools.product(items, repeat=n):
            for neg in ("", "^"):
                assert check_ecma("^[" + neg + "".join(body) + "]$")


@pytest.mark.parametrize("pattern", [
    r"a\b", r"\ba", r"a\b ", r"\w+\b", r"\b\w+\b", r"(?:\b|a)+b?", r"a\B\w", r"\B", r"\B ", r"(?:a|\B)*",
    r"é\b", r"\b٣",  # Unicode word characters for re
])
def test_word_boundaries_python(pattern):
    assert check_python(pattern) or not [t for t in TEXTS if re.fullmatch(pattern, t)]


def test_word_boundary_semantics():
    d = regex_to_dfa(r".*\bcat\b.*")
    assert d.fullmatch(b"a cat sat") and not d.fullmatch(b"concat") and not d.fullmatch(b"cats")
    assert regex_to_dfa(r".*\bcat\b.*").fullmatch("écat é".encode()) is False  # é is a word character for re
    assert pattern_content(r"\bcat\b").fullmatch("écat é".encode())  # ... and not for ECMA-262
    # re's \B fails on the empty text (before Python 3.14), ECMA-262's holds.
    assert bool(regex_to_dfa(r"(?:\B)?").fullmatch(b"")) is True
    assert pattern_content(r"^\B$").fullmatch(b"")
    # A word boundary is exact over the JSON spellings of a character (\u0061 is "a").
    assert pattern_content(r"^x\b").fullmatch(b"x\\u0020") and not pattern_content(r"^x\b").fullmatch(b"x\\u0061")


@pytest.mark.parametrize("pattern", [
    r"(^a|b$)", r"(?:^x)?a", r"a$\n", r"(?:a$|b)\n?", r"(?:x$|a)*\n?", r"a\Z", r"(?:a\Z|b)c?", r"\Aa|b\A",
    r"(?m)a$\n^b", r"(?m)(?:^a\n?)+", r"a^", r"(a|^)b",
])
def test_anchors_inside_groups_python(pattern):
    assert check_python(pattern) or not [t for t in TEXTS if re.fullmatch(pattern, t)]


def test_anchor_semantics():
    assert regex_to_dfa(r"a$\n").fullmatch(b"a\n")  # Python's $ holds before a final newline
    assert not regex_to_dfa(r"a\Z\n?").fullmatch(b"a\n")
    assert not pattern_content(r"(?:a$)\n").fullmatch(b"a\\n")  # ECMA-262's $ only at the end
    d = pattern_content(r"(x|^a)b")  # search semantics: ^ only at the start, x anywhere
    assert d.fullmatch(b"abz") and d.fullmatch(b"zxbz") and not d.fullmatch(b"zab")


@pytest.mark.parametrize("pattern", [
    r"a(?=b)\w", r"(?!foo)\w+", r"\w+(?<!bar)", r"(?<=a)b|ab", r"(?=a)\w*(?<=b)", r"(?:(?=a)\w|b)+",
    r"(?!.*a.*a).*", r"(?=(?!b)\w)\w\w", r"(?=.*é).*", r"(?<=a|b)\w", r"(?<!\n).\n?", r"(?!$)a?\n?",
    r"(?=a$)a\n?", r"(?=\Z)",
    # lookaheads that look back too: one automaton per state of the text before them
    r"(?=.*\bb)\w.*", r"(?!(?<=a)b).*", r"(?:(?=^a)a|b)+", r"a(?=\b)\W?", r"(?=\w*\B )\w+ ", r".(?=(?<=a).\b)\w+",
])
def test_lookarounds_python(pattern):
    assert check_python(pattern) or not [t for t in TEXTS if re.fullmatch(pattern, t)]


ATOMS = ["a", "b", " ", "é", "\\w", "\\W", "\\d", ".", "[ab]", "[^a]", "\\n", "\\s"]
FIXED = st.lists(st.sampled_from(ATOMS), min_size=1, max_size=2).map("".join)  # Python lookbehinds: fixed width
QUANT = st.sampled_from(["", "", "", "*", "+", "?", "{2}", "{0,2}", "*?"])
POSSESSIVE = st.sampled_from(["*+", "++", "?+", "{1,2}+", "{2,}+"])
FORWARD = st.recursive(  # the body of a lookahead (which may look back too)
    st.one_of(st.builds(lambda a, q: a + q, st.sampled_from(ATOMS), QUANT),
               st.sampled_from(["$", "\\Z", "\\b", "\\B", "^", "(?<=a)", "(?<!\\w)"])),
    lambda inner: st.one_of(st.lists(inner, min_size=2, max_size=3).map("".join),
                            st.builds(lambda a, b: "(?:" + a + "|" + b + ")", inner, inner),
                            st.builds(lambda a: "(?=" + a + ")", inner), st.builds(lambda a: "(?!" + a + ")", inner)),
    max_leaves=3)
PIECE = st.one_of(
    st.builds(lambda a, q: a + q, st.sampled_from(ATOMS), QUANT),
    st.sampled_from(["\\b", "\\B", "^", "$", "\\A", "\\Z"]),
    st.builds(lambda k, a: k + a + ")", st.sampled_from(["(?=", "(?!"]), FORWARD),
    st.builds(lambda k, a: k + a + ")", st.sampled_from(["(?<=", "(?<!"]), FIXED),
)
REGEX = st.recursive(
    PIECE,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.builds(lambda a, q: "(?:" + a + ")" + q, inner, QUANT),
        st.builds(lambda a, b: "(?:" + a + "|" + b + ")", inner, inner),
    ),
    max_leaves=6,
)
ATOMIC = st.recursive(  # atomic groups and possessive repeats, around assertion-free pieces
    st.builds(lambda a, q: a + q, st.sampled_from(ATOMS), QUANT | POSSESSIVE),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map("".join),
        st.builds(lambda a: "(?>" + a + ")", inner),
        st.builds(lambda a, q: "(?:" + a + ")" + q, inner, QUANT | POSSESSIVE),
        st.builds(lambda a, b: "(?:" + a + "|" + b + ")", inner, inner),
    ),
    max_leaves=5,
)


@derandomised(250)
@given(REGEX, st.sampled_from(["", "", "(?m)", "(?i)", "(?s)"]))
def test_random_regexes_with_assertions_agree_with_re(pattern, flags):
    check_python(flags + pattern)


@pytest.mark.parametrize("pattern", [
    r"a*+", r"a*+a", r"\w++\b", r"(?>\d+)1?", r"(?:ab)*+a?b?", r"a{1,2}+a?", r"a?+a", r" ?+ ?", r"(?>ab|c)*",
    r"[^ ]*+ ?", r"(?>(?:ab)*)(?:a|b)*", r"é{2,}+é?", r"(?>a|b)+",
])
def test_atomic_groups_and_possessive_quantifiers(pattern):
    assert check_python(pattern) or not [t for t in TEXTS if re.fullmatch(pattern, t)]


def test_atomic_groups_whose_first_match_depends_on_order_are_refused():
    for pattern, position in ((r"(?>a|ab)c", 0), (r"x(?>a+?)", 1), (r"(?>a*b?)", 0), (r"ab(?:a|ab)*+", 11)):
        with pytest.raises(RegexError, match="atomic group or possessive") as info:
            regex_to_dfa(pattern)
        assert info.value.position == position, pattern
    with pytest.raises(RegexError, match="possessive quantifiers are not supported"):
        pattern_content("a*+")  # ECMA-262 has none


@derandomised(200)
@given(ATOMIC)
def test_random_atomic_regexes_agree_with_re(pattern):
    check_python(pattern)


def test_random_regexes_are_mostly_compared():
    rng = random.Random(7)
    compared = 0
    for _ in range(60):
        pattern = "".join(rng.choice(["a", "\\b", "(?=\\w)", "(?<!b)", "$", "^", "b", " ", "\\B", "\\w*", "(?!a)"])
                          for _ in range(rng.randint(1, 5)))
        compared += check_python(pattern)
    assert compared >= 20


def _ecma():
    """`tests.test_regex_dialects.check_ecma` (QuickJS as the ECMA-262 reference), or skip."""
    pytest.importorskip("quickjs")
    from tests.test_regex_dialects import check_ecma

    return check_ecma

ECMA_ATOMS = ["a", "b", " ", "é", "\\w", "\\W", "\\d", ".", "[ab]", "[^a]", "\\n", "\\s", "\\u00e9", "-"]
ECMA_PIECE = st.one_of(
    st.builds(lambda a, q: a + q, st.sampled_from(ECMA_ATOMS), QUANT),
    st.sampled_from(["\\b", "\\B", "^", "$"]),
    st.builds(lambda k, a: k + a + ")", st.sampled_from(["(?=", "(?!"]), FORWARD.map(lambda p: p.replace("\\Z", "$"))),
    st.builds(lambda k, a, q: k + a + q + ")", st.sampled_from(["(?<=", "(?<!"]), st.sampled_from(ECMA_ATOMS), QUANT),
)
ECMA_REGEX = st.recursive(
    ECMA_PIECE,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.builds(lambda a, q: "(?:" + a + ")" + q, inner, QUANT),
        st.builds(lambda a, b: "(?:" + a + "|" + b + ")", inner, inner),
        st.builds(lambda a, b: a + "|" + b, inner, inner),
    ),
    max_leaves=6,
)


@pytest.mark.parametrize("pattern", [
    r"\ba", r"a\b", r"\Ba", r"(^a|b$)", r"(?:^x)", r"a(?=b)", r"(?!a)", r"^(?!.*a).*$", r"(?<=a)b", r"(?<!a)b",
    r"\b\w+\b", r"x|(?:^a$)", r"(a$)", r"(?=\d)\w$", r"^(?=.*é)", r"\B", r"^\B$", r"(?<=^a)b", r"(?<=a|bb)c",
    r"(?<=a+)b", r"(?<![a-z]+)\d", r"é\b", r"^(?:\b|a)+$", r"^(?=.*\bcat\b)", r"(?!(?<=a)b)", r"a(?=^|\b)",
])
def test_assertions_in_json_schema_patterns(pattern):
    assert _ecma()(pattern)


@derandomised(150)
@given(ECMA_REGEX)
def test_random_patterns_with_assertions_agree_with_ecma262(pattern):
    _ecma()(pattern)


def test_negative_lookaround_without_the_u_flag_is_refused():
    """Without the u flag guided narrows classes to the BMP, which would widen a negative lookaround."""
    with pytest.raises(RegexError, match="negative lookaround") as info:
        pattern_content(r"a](?!.)")
    assert info.value.position == 2
    assert _ecma()(r"a](?=.)")  # a positive one only rejects more: sound, and exact on BMP text


def test_lark_terminals_refuse_assertions():
    """A terminal's lookaround, boundary or anchor would look at the text around the terminal; an
    edge anchor too (Lark checks `^`/`$` against the whole text: `start: A B` with `A: /a$/`
    rejects "ab", so compiling it as `a` would accept what Lark rejects)."""
    vocab = Vocabulary.from_token_bytes([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_ids=[256])
    for terminal, what in (("/a\\b/", "word boundary"), ("/(?!b)a/", "lookahead"), ("/a$b?/", "'\\$'"),
                           ("/a$/", "'\\$'"), ("/^a/", "'\\^'"), ("/a\\Z/", "Z"), ("/\\Aa/", "A")):
        with pytest.raises(GrammarError, match=what):
            guided.compile(Grammar(f"start: A \"b\"\nA: {terminal}"), vocab)
    assert guided.validate("ab", Grammar('start: A "b"\nA: /a/')).ok  # the unanchored terminal


# --- token masks -----------------------------------------------------------------------------

def _prefix_oracle(pattern: str, data: bytes) -> bool:
    """Is ``data`` a prefix of some UTF-8 encoded full match?  The regex module's partial matching
    (the toy vocabulary below is whole characters only)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return False
    return bool(regex_module.fullmatch(pattern, text, partial=True))


MASK_PATTERNS = [r"[a-z ]*\bcat\b[a-z ]*", r"(?!abc)[a-z]{3}", r"[a-z]+(?<!ing)", r"(?:x|^a)+b?", r"(?=[a-c]*d)[a-d]+", r"[a-zé]+\b[ .]+"]


@pytest.mark.parametrize("pattern", MASK_PATTERNS)
def test_masks_with_assertions_are_exact(pattern):
    tokens = sorted({bytes([b]) for b in range(0x20, 0x7F)} | {"é".encode(), b"cat", b" cat", b"ing", b"abc", b"ab",
                                                               b"ca", b"t ", b"xa", b"dd", b"in", b"ng"})
    tokens.append(b"<eos>")
    vocab = Vocabulary.from_token_bytes(tokens, eos_token_ids=[len(tokens) - 1], special_token_ids=[len(tokens) - 1])
    grammar = guided.compile(Regex(pattern), vocab)
    oracle = re.compile(pattern)
    eos = len(tokens) - 1
    rng = random.Random(pattern)
    for _ in range(3):
        m = grammar.matcher()
        text = b""
        for _ in range(8):
            mask = m.mask()
            for t, tb in enumerate(tokens):
                expected = (bool(oracle.fullmatch(text.decode())) if t == eos
                            else _prefix_oracle(pattern, text + tb))
                assert mask[t] == expected, (pattern, text, tb)
            choices = [t for t in np.flatnonzero(mask) if t != eos]
            if not choices:
                break
            t = rng.choice(choices)
            m.advance(int(t))
            text += tokens[t]


def test_lookaheads_inside_lookbehinds_are_refused_with_their_position():
    """A lookbehind's automaton is read where it ends: what it holds may not look further."""
    for pattern, position in ((r"(?<=a\b)", 5), (r"(?<=(?=a)a)", 4), (r"(?<=a$)", 5), (r"(?<!a\Z)b", 5)):
        with pytest.raises(RegexError, match="inside a look") as info:
            regex_to_dfa(pattern)
        assert info.value.position == position, pattern
    with pytest.raises(GuidedError):
        regex_to_dfa(r"(a)(?=\1)")


@pytest.mark.parametrize("pattern", [
    r"(?=.*[A-Z])(?=.*\d)(?!.*\s).{4,12}", r"a(?=b)\w(?!c).*", r"(?=a)(?=.*b$)\w*\n?", r"(?=é)(?!..)\w",
    r"(?i)(?=.*A)[a-c]{2,3}", r"x(?=y)",
])
def test_top_level_lookaheads_by_products_agree_with_the_general_construction(pattern):
    """``X(?=A)Y`` over the whole text is ``X·(Y ∩ AΣ*)``: the product shortcut and the
    obligation-carrying construction accept the same language (and re agrees)."""
    from guided.frontends.regex import _build
    from guided.frontends.regex_assertions import determinize_guarded
    from guided.ir.dfa import Limits
    from guided.ir.dfa_ops import difference, is_empty

    builder = _build(pattern, Limits(), 40)
    fast = builder.finish("products", builder.tree)
    slow = determinize_guarded(builder.nfa, builder.guards, builder.limits, "general")
    assert is_empty(difference(fast, slow)) and is_empty(difference(slow, fast)), pattern
    assert check_python(pattern) or not [t for t in TEXTS if re.fullmatch(pattern, t)]


def test_password_rules_compile():
    """The common password pattern: three lookaheads over a counted repeat (products, not the
    general construction), in both dialects."""
    rule = r"(?=.*[A-Z])(?=.*\d)(?=.*[^\w\s]).{8,64}"
    for dfa, spell in ((regex_to_dfa(rule), str.encode), (pattern_content(f"^{rule}$"), str.encode)):
        assert dfa.fullmatch(spell("Passw0rd!")) and not dfa.fullmatch(spell("password1!"))
        assert not dfa.fullmatch(spell("Pa0!")) and not dfa.fullmatch(spell("Password!!"))


@pytest.mark.parametrize("pattern", [r"^(?!.*--)[a-z-]+$", r"\bcat\b", r"^(?=.*\d)\w{2,4}$", r"(?<!a)b$", r"(^a|b$)"])
def test_schema_patterns_with_assertions_walk_exactly(pattern):
    """A JSON Schema string with such a ``pattern``, compiled and walked byte by byte: the
    compiled matcher accepts exactly the strings ECMA-262 matches (every JSON spelling)."""
    _ecma()
    import json

    import quickjs

    from guided import JsonSchema

    test = quickjs.Context().eval('(function (p, s) { return new RegExp(p, "u").test(s); })')
    vocab = Vocabulary.from_token_bytes([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_ids=[256])
    grammar = guided.compile(JsonSchema({"type": "string", "pattern": pattern}), vocab)
    texts = ["".join(t) for n in range(5) for t in itertools.product(["a", "b", "-", "c", "t", "1", " "], repeat=n)]
    rng = random.Random(pattern)
    for text in rng.sample(texts, 300) + ["cat", "a cat", "concat", "a--b", "ab1", "a-b"]:
        for doc in (json.dumps(text), json.dumps(text).replace("a", "\\u0061")):
            m = grammar.matcher()
            accepted = True
            for b in doc.encode():
                if not m.mask()[b]:
                    accepted = False
                    break
                m.advance(b)
            accepted = accepted and m.accepts_eos()
            assert accepted == test(pattern, text), (pattern, doc)


def test_top_level_alternatives_each_keep_their_classes():
    """A regression: a pattern's top-level alternatives share one builder, whose caches are keyed by
    node identity; an alternative's parse tree freed early let a later node reuse its id."""
    check_ecma = _ecma()
    for pattern in (r"^dev|alpha|beta|rc|RC|stable$", r"^a|[bc]|d$|[e-g]x|\d|\w\b", r"x|(?=y)|^z|[^a]q$"):
        assert check_ecma(pattern), pattern
    d = pattern_content(r"^dev|alpha|beta|rc|RC|stable$")
    assert d.fullmatch(b"src/") and not d.fullmatch(b"xdev") and d.fullmatch(b"dev1")


def test_many_unanchored_alternatives_share_their_loops():
    """Search semantics around n unanchored alternatives: one loop before and one after them all
    (a loop each let determinisation count 2^n subsets: 11 language codes passed 100,000 states)."""
    d = pattern_content("en|de|ru|pt|nl|fr|it|es|pl|uk|zh-cn", 20_000)
    assert d.num_states < 1000
    assert d.fullmatch(b"xx-zh-cn") and d.fullmatch(b"de") and not d.fullmatch(b"zh") and not d.fullmatch(b"")
    assert _ecma()("en|de|ru|pt|nl|fr|it|es|pl|uk|zh-cn")


@pytest.mark.parametrize("pattern,at", [("(?=){2}", 4), ("(?=a){2}a", 5), ("(?!b)*a", 5), ("(?<=a)?b", 6), ("x(?<!y){1,3}", 7)])
def test_a_quantified_lookaround_is_refused_where_it_is(pattern, at):
    """`re` repeats a lookaround; interegular would read the quantifier after one as literal text
    (`(?=a){2}a` became "a lookahead, then {2}a"), so it is refused, naming the quantifier."""
    with pytest.raises(RegexError, match="a quantifier on a lookaround") as info:
        guided.Regex(pattern).to_ir()
    assert info.value.position == at
