"""Ban lists and must-include phrases: automaton semantics, and thousands of samples in which
the model tries hard to spell a banned word with every token split it has."""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings, strategies as st

import guided
from guided.decoding import Constraints, NoAllowedToken, decode
from guided.decoding.fake import TableModel
from guided.sampling import SamplingParams
from guided.sampling.phrases import PhraseOptions, ban_dfa, find_match, must_include_dfa

WORD = rb"[A-Za-z0-9_\x80-\xfe]"


def ref_banned(text: bytes, phrase: bytes, options: PhraseOptions) -> bool:
    """Reference: does ``text`` hold a match of ``phrase`` (Python's re on bytes)?"""
    body = re.escape(phrase)
    flags = 0 if options.case_sensitive else re.IGNORECASE
    if options.whole_word:
        left = rb"(?<!" + WORD + rb")" if re.match(WORD, phrase[:1]) else b""
        right = rb"(?!" + WORD + rb")" if re.match(WORD, phrase[-1:]) and not options.word_prefixes else b""
        body = left + body + right
    return re.search(body, text, flags) is not None


ALPHABET = "caCAtT s._-x"


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=ALPHABET, max_size=14),
    phrase=st.sampled_from(["cat", "a c", "cat.", "Ta", "-x"]),
    whole=st.booleans(),
    case=st.booleans(),
    prefixes=st.booleans(),
)
def test_ban_automaton_matches_reference(text, phrase, whole, case, prefixes):
    options = PhraseOptions(whole_word=whole, case_sensitive=case, word_prefixes=prefixes)
    dfa = ban_dfa([phrase], options)
    data = text.encode()
    assert dfa.fullmatch(data) == (not ref_banned(data, phrase.encode(), options))
    # the prefix automaton dies exactly when a match is already certain without the text's end
    assert (dfa.walk(data) == 0) == ref_banned(data + b"x" * 0 + b"\x01", phrase.encode(), options) or \
        (dfa.walk(data) != 0)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="redblu ,RB", max_size=16), case=st.booleans())
def test_must_include_automaton_matches_reference(text, case):
    options = PhraseOptions(whole_word=False, case_sensitive=case)
    dfa = must_include_dfa(["red", "blue"], options)
    t = text if case else text.lower()
    assert dfa.fullmatch(text.encode()) == ("red" in t and "blue" in t)


def test_word_start_semantics():
    """A banned word may not start a word, alone or glued to the next one; inside a word it may."""
    assert find_match("a cat.", ("cat",)) == "cat"
    assert find_match("The oceanwaves roll", ("ocean",)) == "ocean"
    assert find_match("Parisis a city", ("Paris",)) == "Paris"
    assert find_match("cats", ("cat",)) == "cat"
    assert find_match("concatenate bobcat", ("cat",)) is None
    whole = PhraseOptions(word_prefixes=False)  # the whole word only (the behaviour before)
    assert find_match("concatenate cats", ("cat",), whole) is None
    assert find_match("The oceanwaves roll", ("ocean",), whole) is None
    assert find_match("a cat.", ("cat",), whole) == "cat"
    assert find_match("CAT", ("cat",)) is None
    assert find_match("CAT", ("cat",), PhraseOptions(case_sensitive=False)) == "cat"
    assert find_match("concatenate", ("cat",), PhraseOptions(whole_word=False)) == "cat"
    assert find_match("café au lait", ("caf",)) == "caf"  # a word prefix
    assert find_match("café au lait", ("caf",), whole) is None  # é is a word character


def split_tokens(vocab: guided.Vocabulary, pieces: list[bytes]) -> list[int]:
    index = {b: i for i, b in enumerate(vocab.token_bytes) if b}
    return [index[p] for p in pieces if p in index]


@pytest.fixture(scope="module")
def cat_vocab(smollm2_vocab):
    """Every SmolLM2 token made only of the letters of 'cat'/'CAT', 's', space and '.': all the
    ways SmolLM2 can split ' cat', 'Cat', 'cats.', ... (a small vocabulary keeps 3,000 samples fast)."""
    letters = set(b"catCATs .")
    pieces = [b for b in smollm2_vocab.token_bytes if b and set(b) <= letters]
    assert {b" cat", b"cat", b"c", b"at", b"ca", b"t", b" Cat"} <= set(pieces) and len(pieces) > 40
    return guided.Vocabulary.from_token_bytes(pieces + [b"<eos>"], eos_token_ids=[len(pieces)])


@pytest.fixture(scope="module")
def cat_model(cat_vocab):
    """A fake model that likes every piece equally and ends now and then."""
    logits = torch.zeros(cat_vocab.size)
    logits[min(cat_vocab.eos_token_ids)] = -2.0
    for piece in (b" cat", b" c", b"at", b"ca", b"t", b" Cat", b" ", b".", b" ca"):
        logits[cat_vocab.token_bytes.index(piece)] = 2.5
    return TableModel.fixed(logits)


@pytest.mark.parametrize(
    "options",
    [PhraseOptions(), PhraseOptions(word_prefixes=False), PhraseOptions(case_sensitive=False),
     PhraseOptions(whole_word=False)],
    ids=["word-start", "whole-word", "nocase", "substring"],
)
def test_no_banned_word_in_thousands_of_samples(cat_model, cat_vocab, options):
    smollm2_vocab = cat_vocab
    prompts = [[1]] * 250
    free = decode(cat_model, prompts, Constraints.build(smollm2_vocab), SamplingParams(), max_new_tokens=8, seed=0)
    hits = sum(find_match(c.text, ("cat",), options) is not None for c in free)
    assert hits > 30  # the model does write it when allowed to
    cons = Constraints.build(smollm2_vocab, ban=["cat"], ban_options=options)
    total = 0
    for seed in range(4):
        for c in decode(cat_model, prompts, cons, SamplingParams(), max_new_tokens=8, seed=seed):
            total += 1
            assert find_match(c.text, ("cat",), options) is None, c.text
    assert total == 1000  # 3,000 samples over the three modes


def test_ban_list_with_a_grammar(tiny_model):
    vocab = tiny_model.vocab
    pattern = r"(the|a) (cat|dog|bird)( and (the|a) (cat|dog|bird))*\."
    g = guided.compile(guided.Regex(pattern), vocab)
    cons = Constraints.build(vocab, grammar=g, ban=["cat", "the"])
    for c in decode(guided.decoding.ModelRunner(tiny_model), [[1, 2]] * 8, cons, SamplingParams(), max_new_tokens=30,
                    seed=1):
        assert re.fullmatch(pattern, c.text) and "cat" not in c.text and "the" not in c.text, c.text
    with pytest.raises(NoAllowedToken):
        only = guided.compile(guided.Regex("the cat"), vocab)
        decode(guided.decoding.ModelRunner(tiny_model), [[1]], Constraints.build(vocab, grammar=only, ban=["cat"]),
               SamplingParams(), max_new_tokens=10)


def test_must_include_in_free_text_and_under_a_grammar(tiny_model):
    vocab = tiny_model.vocab
    runner = guided.decoding.ModelRunner(tiny_model)
    free = Constraints.build(vocab, must_include=["blue sky", "42"])
    for c in decode(runner, [[1, 2, 3]] * 4, free, SamplingParams(), max_new_tokens=40, seed=0):
        assert "blue sky" in c.text and "42" in c.text and c.complete, c.text
    pattern = r"[a-z ]+\."
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(pattern), vocab), must_include=["tree", "ok"])
    for c in decode(runner, [[5, 6]] * 4, cons, SamplingParams(), max_new_tokens=40, seed=2):
        assert re.fullmatch(pattern, c.text) and "tree" in c.text and "ok" in c.text, c.text


def test_must_include_that_cannot_fit_is_a_clear_error(tiny_model):
    vocab = tiny_model.vocab
    runner = guided.decoding.ModelRunner(tiny_model)
    out = decode(runner, [[1]], Constraints.build(vocab, must_include=["antidisestablishmentarianism"]),
                 SamplingParams(), max_new_tokens=3, seed=0)[0]
    assert not out.complete and out.missing == ["antidisestablishmentarianism"]
    with pytest.raises(NoAllowedToken, match="must-include phrases"):
        guided.generate(tiny_model, "hi", must_include=["antidisestablishmentarianism"], max_new_tokens=3)
    digits = guided.compile(guided.Regex(r"[0-9]+"), vocab)
    with pytest.raises(NoAllowedToken, match="abc"):  # planned against the regex: refused before decoding
        Constraints.build(vocab, grammar=digits, must_include=["abc"])
    with pytest.raises(NoAllowedToken, match="abc"):
        guided.generate(tiny_model, "hi", regex="[0-9]+", must_include=["abc"], max_new_tokens=5)
    with pytest.raises(NoAllowedToken, match="whale"):  # ban and must-include that exclude each other
        Constraints.build(vocab, must_include=["a whale"], ban=["whale"])


@pytest.mark.parametrize("seed", range(6))
def test_must_include_is_planned_against_a_bounded_regex(tiny_model, seed):
    """The issue's case: a length-bounded regex and a phrase the model never writes by itself.  The
    product automaton places the phrase where it still fits, so every sample succeeds, with no
    backtracking (the planned grammar's masks are exact)."""
    vocab = tiny_model.vocab
    pattern = r"[A-Z][a-z ,']{10,30}\."
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(pattern), vocab), must_include=["whale"])
    assert cons.planned and cons.ban is None
    runner = guided.decoding.ModelRunner(tiny_model)
    out = decode(runner, [[1, 2]] * 3, cons, SamplingParams(temperature=1.0), max_new_tokens=60, seed=seed)
    for c in out:
        assert re.fullmatch(pattern, c.text) and "whale" in c.text and c.complete and not c.missing, c.text


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(text=st.text(alphabet="ab .", max_size=10), lo=st.integers(0, 6), span=st.integers(0, 6),
       must=st.sampled_from(["ab", "b a", "aa."]), ban=st.sampled_from([[], ["ba"], ["a"]]))
def test_plan_is_the_exact_product(text, lo, span, must, ban):
    """plan_dfa accepts exactly the regex's texts that hold the phrase and no banned word."""
    from guided.frontends.regex import Regex, regex_to_dfa
    from guided.sampling.phrases import PhrasesCannotFit, plan_dfa

    pattern = f"[ab .]{{{lo},{lo + span}}}"
    try:
        plan = plan_dfa(regex_to_dfa(Regex(pattern)), ban=ban, must=[must])
    except PhrasesCannotFit:
        plan = None
    data = text.encode()
    want = bool(re.fullmatch(pattern, text)) and must in text and find_match(text, tuple(ban), PhraseOptions()) is None \
        if ban else bool(re.fullmatch(pattern, text)) and must in text
    assert (plan is not None and plan.fullmatch(data)) == want
