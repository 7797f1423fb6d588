"""The CFG engine against Lark as the oracle, on every grammar shipped in grammars/."""

from __future__ import annotations

import json
import random
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

import guided
from guided import ConstraintViolation, Grammar, GrammarError
from guided.engine import tuning
from guided.ir.reference import accepts
from tests.grammar_sampler import SentenceSampler

SHIPPED = ["json", "xml", "sql", "arithmetic", "python_call", "tool_call"]
SAMPLES = 25


@pytest.fixture(scope="module")
def samplers():
    return {name: SentenceSampler(Grammar(name)) for name in SHIPPED}


def tokenize(tokenizer, vocab, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    if b"".join(vocab.token_bytes[i] for i in ids) != text.encode():
        return None  # text with bytes the tokenizer cannot produce
    return ids


def walk(grammar, ids) -> tuple[bool, int]:
    """Feed ``ids``; (accepted at the end, number of tokens consumed)."""
    m = grammar.matcher()
    for k, t in enumerate(ids):
        allowed = bool(m.mask()[t])
        try:
            m.advance(t)
        except ConstraintViolation:
            assert not allowed, "mask allowed a token that advance() refused"
            return False, k
        assert allowed, "advance() took a token the mask forbade"
    return m.accepts_eos(), len(ids)


def random_segmentation(data: bytes, vocab, rng) -> list[int]:
    index = {b: i for i, b in enumerate(vocab.token_bytes) if b}
    out, i = [], 0
    while i < len(data):
        options = [index[data[i:j]] for j in range(i + 1, min(len(data), i + 12) + 1) if data[i:j] in index]
        t = rng.choice(options)
        out.append(t)
        i += len(vocab.token_bytes[t])
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_sentences_walk_through_under_many_tokenizations(name, samplers, smollm2_tokenizer, smollm2_vocab):
    grammar = guided.compile(Grammar(name), smollm2_vocab)
    rng = random.Random(name)
    walked = 0
    for _ in range(SAMPLES):
        text = samplers[name].sample(rng)
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, text)
        if ids is None:
            continue
        for segmentation in (ids, random_segmentation(text.encode(), smollm2_vocab, rng)):
            accepted, consumed = walk(grammar, segmentation)
            assert accepted, (text, consumed)
        walked += 1
    assert walked >= SAMPLES // 2


@pytest.mark.parametrize("name", SHIPPED)
def test_mutated_sentences_agree_with_lark(name, samplers, smollm2_tokenizer, smollm2_vocab):
    """Accepted exactly when Lark parses: no invalidation (accepting what Lark rejects), no false rejection."""
    grammar = guided.compile(Grammar(name), smollm2_vocab)
    rng = random.Random(f"mutate-{name}")
    alphabet = list(" ,:;{}[]()<>/=\"'\\-+*.0123456789aexyzSELECTfromtrue\n") + ["é", "中", "&amp;", "]]>", "--"]
    checked = rejected = 0
    for _ in range(SAMPLES * 3):
        text = samplers[name].sample(rng)
        pos = rng.randrange(len(text) + 1)
        op = rng.choice(["insert", "delete", "replace", "truncate"])
        piece = rng.choice(alphabet)
        mutated = {"insert": text[:pos] + piece + text[pos:], "delete": text[:pos] + text[pos + 1:],
                   "replace": text[:pos] + piece + text[pos + 1:], "truncate": text[:pos]}[op]
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, mutated)
        if ids is None:
            continue
        expected = samplers[name].parses(mutated)
        accepted, _ = walk(grammar, ids)
        assert accepted == expected, (mutated, "accepted by guided but not Lark" if accepted else "rejected")
        checked += 1
        rejected += not expected
    assert checked >= SAMPLES and rejected >= SAMPLES // 3


@pytest.mark.parametrize("name", SHIPPED)
def test_vectorised_mask_agrees_with_stepwise_advance(name, samplers, smollm2_tokenizer, smollm2_vocab):
    """At reachable configurations, every token's mask bit equals whether advance() accepts it."""
    grammar = guided.compile(Grammar(name), smollm2_vocab)
    rng = random.Random(f"exact-{name}")
    text = samplers[name].sample(rng)
    ids = tokenize(smollm2_tokenizer, smollm2_vocab, text) or []
    m = grammar.matcher()
    probe = rng.sample(range(smollm2_vocab.size), 1500)
    for t in ids[:8]:
        mask = m.mask()
        allowed = set(np.flatnonzero(mask).tolist())
        for candidate in set(probe) | set(list(allowed)[:300]):
            fork = m.copy()
            try:
                fork.advance(candidate)
                ok = True
            except ConstraintViolation:
                ok = False
            assert ok == (candidate in allowed), (text, candidate, smollm2_vocab.token_text(candidate))
        m.advance(t)


def test_states_derived_from_a_reference_equal_a_full_walk(smollm2_tokenizer, smollm2_vocab):
    """A wide lexer state's data taken from its usual successor's is what a whole-trie walk finds."""
    from guided.engine.bitmask import pack
    from guided.engine.token_table import walk_automaton

    schema = {"type": "object", "properties": {n: {"type": "integer"} for n in ("name", "nat", "id", "n\u00e9")},
              "additionalProperties": {"type": "string", "pattern": "^[a-z ]*$"}}
    grammar = guided.compile(guided.JsonSchema(schema), smollm2_vocab, cache=False, engine="python")
    text = json.dumps({"name": 1, "id": 2, "nam": "x", "nbx": "a b", "n\u00e9e": "c", "\"q": ""})
    m = grammar.matcher()
    for t in smollm2_tokenizer.encode(text, add_special_tokens=False):
        m.mask()
        m.advance(t)
    derived = 0
    lexers = grammar.lexers
    for lex in range(1, lexers.size):
        found = grammar.masks._from_reference(lex)
        if found is None:
            continue
        derived += 1
        ids, _, seeds = walk_automaton(grammar.table, lexers.ready(lex), lex, lexers.chosen, grammar.masks._prepare)
        inside = np.zeros(smollm2_vocab.size, dtype=bool)
        inside[ids] = True
        assert np.array_equal(found[0], pack(inside)), lex
        assert set(zip(*(a.tolist() for a in found[1]))) == set(zip(*(a.tolist() for a in seeds))), lex
    assert derived >= 3


def test_rows_filled_on_demand_give_the_masks_of_a_complete_lexer(smollm2_tokenizer, smollm2_vocab):
    """Lexer rows filled as walks reach them give the masks a fully built lexer gives."""
    names = [f"property_number_{i}_of_the_object" for i in range(30)] + ["\u00e9t\u00e9", "a\"b"]
    schema = {"type": "object", "properties": {n: {"type": "string", "maxLength": 12} for n in names},
              "additionalProperties": {"type": "integer"}}
    lazy = guided.compile(guided.JsonSchema(schema), smollm2_vocab, cache=False, engine="python")
    eager = guided.compile(guided.JsonSchema(schema), smollm2_vocab, cache=False, engine="python")
    eager.lexers.build_all()
    doc = {names[3]: "abc", names[30]: "x\u00e9", names[31]: "", "property_number_3_": 5, "zz": -1}
    for text in (json.dumps(doc), json.dumps(doc, indent=2, ensure_ascii=False)):
        a, b = lazy.matcher(), eager.matcher()
        for t in smollm2_tokenizer.encode(text, add_special_tokens=False) + [None]:
            assert np.array_equal(a.mask(), b.mask()), text
            if t is None:
                assert a.accepts_eos()
                break
            a.advance(t)
            b.advance(t)
    lexers = lazy.lexers
    assert not lexers.filled[:lexers.size].all()  # some rows were never needed
    blocks = 0
    for row in range(1, lexers.size):  # rows named as a terminal's own are that terminal's alone
        block = lexers.block_at(row)
        if block is not None:
            blocks += 1
            assert np.flatnonzero(lexers.alive[row]).tolist() == [block[0]] and row not in lexers.start_states
    assert blocks > 0
    # Filling every row at once gives each block row its DFA's (blocks sit back to back, so a
    # block's first row index is the previous block's last row).
    # Two large blocks laid out back to back: the first one's last row is the second one's base.
    fresh = guided.compile(guided.JsonSchema(schema), smollm2_vocab, cache=False, engine="python").lexers
    big = [t for t, term in enumerate(fresh.terminals) if term.dfa.num_states > tuning.WHOLE_BLOCK][:2]
    if len(big) < 2:
        big = [t for t, term in enumerate(fresh.terminals) if term.dfa.num_states > tuning.EAGER_BLOCK][:2]
    first, second = (fresh._single(t, 0) for t in big)
    last = first + fresh.terminals[big[0]].dfa.num_states - 1
    assert last == second
    transitions = fresh.terminals[big[0]].dfa.transitions[-1]
    assert np.array_equal(fresh.ready(last)[last], np.where(transitions != 0, transitions + first, 0))
    assert fresh.filled[last] and not fresh.filled[second + 1]
    for _ in range(1000):  # filling unions creates more
        if lexers.filled[:lexers.size].all():
            break
        lexers.ready(np.arange(1, lexers.size))
    assert lexers.filled[:lexers.size].all()
    for row in range(1, lexers.size):
        block = lexers.block_at(row)
        if block is not None:
            dfa = lexers.terminals[block[0]].dfa.transitions[row - block[1]]
            assert np.array_equal(lexers.table[row], np.where(dfa != 0, dfa + block[1], 0)), row


def test_tokens_spanning_several_terminals(smollm2_tokenizer, smollm2_vocab):
    grammar = guided.compile(Grammar("json"), smollm2_vocab)
    m = grammar.matcher()
    for t in smollm2_tokenizer.encode('[{"a": 1', add_special_tokens=False):
        m.advance(t)
    allowed = {smollm2_vocab.token_bytes[i] for i in np.flatnonzero(m.mask())}
    assert {b"},", b"}]", b"0", b",", b"}", b" }"} <= allowed
    assert b"]" not in allowed and b"}}" not in allowed and b"," in allowed
    assert not m.accepts_eos()
    m.advance(smollm2_tokenizer.encode("}]", add_special_tokens=False)[0])


def test_terminal_end_decided_by_next_byte_and_eos(smollm2_tokenizer, smollm2_vocab):
    grammar = guided.compile(Grammar("json"), smollm2_vocab)
    m = grammar.matcher()
    m.advance(smollm2_tokenizer.encode("12", add_special_tokens=False)[0])
    assert m.accepts_eos()  # "12" is a complete document...
    mask = m.mask()
    assert mask[smollm2_tokenizer.encode("3", add_special_tokens=False)[0]]  # ...that may still grow
    assert mask[min(smollm2_vocab.eos_token_ids)]
    assert not mask[smollm2_tokenizer.encode(",", add_special_tokens=False)[0]]


def test_keywords_and_names_in_sql(samplers, smollm2_tokenizer, smollm2_vocab):
    """Keywords are case-insensitive and win over names where both fit; elsewhere a keyword is a name (as in Lark)."""
    grammar = guided.compile(Grammar("sql"), smollm2_vocab)
    cases = [("SELECT a FROM t WHERE a = 1", True), ("select a from t where b in (1, 2)", True),
             ("SELECT FROM t", False), ("SELECT a FROM t WHERE", False), ("SELECT a, FROM t", False),
             ("SELECT a FROM select", True), ("SeLeCt a AS b FROM t ORDER BY a DESC LIMIT 5;", True)]
    for text, ok in cases:
        assert samplers["sql"].parses(text) == ok, text
        assert walk(grammar, smollm2_tokenizer.encode(text, add_special_tokens=False))[0] == ok, text


def test_pretty_printed_documents_walk_through(samplers, smollm2_tokenizer, smollm2_vocab):
    documents = {
        "xml": '<?xml version="1.0"?>\n<root a="1">\n  <item id=\'x\'>text &amp; more</item>\n  <empty/>\n'
               '  <![CDATA[ raw <stuff> ]]>\n  <!-- note -->\n</root>\n',
        "json": json.dumps({"a": [1, 2.5, {"b": None}], "c": "é\n"}, indent=4),
        "sql": "SELECT a.name, COUNT(*) AS n\nFROM users AS a\n  JOIN orders AS o ON o.user_id = a.id\n"
               "WHERE a.age >= 18 AND NOT a.banned = 1\nGROUP BY a.name\nORDER BY n DESC\nLIMIT 10;",
    }
    for name, text in documents.items():
        assert samplers[name].parses(text), name
        grammar = guided.compile(Grammar(name), smollm2_vocab)
        assert walk(grammar, smollm2_tokenizer.encode(text, add_special_tokens=False))[0], name


def test_rollback_and_copy_are_exact(smollm2_tokenizer, smollm2_vocab):
    grammar = guided.compile(Grammar("json"), smollm2_vocab)
    ids = smollm2_tokenizer.encode('{"k": [1, 2.5, "x", {"y": null}], "z": true}', add_special_tokens=False)
    m = grammar.matcher()
    snapshots = []
    for t in ids:
        snapshots.append((m.mask().copy(), m.accepts_eos()))
        m.advance(t)
    assert m.accepts_eos()
    fork = m.copy()
    m.rollback(len(ids))
    for t, (mask, eos) in zip(ids, snapshots):
        assert np.array_equal(m.mask(), mask) and m.accepts_eos() == eos
        m.advance(t)
    assert fork.accepts_eos() and fork.num_tokens == len(ids)


def test_forced_bytes(smollm2_tokenizer, smollm2_vocab):
    grammar = guided.compile(Grammar('start: "<call>" NAME "(" ")" "</call>"\nNAME: /[a-z]+/'), smollm2_vocab)
    m = grammar.matcher()
    assert m.forced_bytes() == b"<call>"
    for t in smollm2_tokenizer.encode("<call>ab", add_special_tokens=False):
        m.advance(t)
    assert m.forced_bytes() == b""  # the name may go on, or "(" may come
    m.advance(smollm2_tokenizer.encode("(", add_special_tokens=False)[0])
    assert m.forced_bytes() == b")</call>"
    # With %ignore'd whitespace, nothing is forced between tokens: the language allows spaces there.
    json_m = guided.compile(Grammar("json"), smollm2_vocab).matcher()
    assert json_m.forced_bytes() == b""


@pytest.mark.parametrize("name", SHIPPED)
def test_closing_tokens_finish_real_prefixes_in_the_known_distance(name, samplers, smollm2_tokenizer, smollm2_vocab):
    """From prefixes of real sentences: following `closing_tokens` ends a document that Lark
    parses within `closing_distance` tokens (sooner where a step finds a shorter way), never
    fewer than `closing_lower_bound`, and the budget mask with the tokens left keeps every token
    of the way."""
    grammar = guided.compile(Grammar(name), smollm2_vocab)
    rng = random.Random(f"budget-{name}")
    checked = 0
    for _ in range(8):
        text = samplers[name].sample(rng)
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, text)
        if not ids:
            continue
        m = grammar.matcher()
        taken = ids[: rng.randrange(len(ids) + 1)]
        for t in taken:
            m.advance(t)
        need = m.closing_distance()
        if need >= 10_000:
            # The completion search is bounded (CLOSING_MAX_POPS): it may give up, never lie.
            continue
        checked += 1
        lower, left = m.closing_lower_bound(), need
        assert lower <= need, text
        while not m.accepts_eos():
            assert left > 0, text
            t = int(m.closing_tokens()[0])
            assert m.budget_mask(left)[t]
            m.advance(t)
            taken.append(t)
            left -= 1
        assert need - left >= lower, text
        document = b"".join(smollm2_vocab.token_bytes[t] for t in taken).decode()
        assert samplers[name].parses(document), (text, document)
    assert checked >= 5


@pytest.mark.parametrize("name", SHIPPED)
def test_random_model_outputs_parse(name, samplers, tiny_model):
    grammar = guided.compile(Grammar(name), tiny_model.vocab)
    eos = sorted(tiny_model.vocab.eos_token_ids)
    finished = 0
    for seed in range(6):
        torch.manual_seed(seed)
        prompt = torch.tensor([[1, 504, 3432, 28, 2]])
        out = tiny_model.hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                     max_new_tokens=40, logits_processor=[guided.LogitsProcessor(grammar)],
                                     eos_token_id=eos, pad_token_id=eos[0], top_k=None, top_p=None)
        tokens = out[0, prompt.shape[1]:].tolist()
        m = grammar.matcher()
        text = b""
        for t in tokens:
            m.advance(t)  # never raises: every sampled token was allowed
            if t in eos:
                break
            text += tiny_model.vocab.token_bytes[t]
        if m.is_finished() or m.accepts_eos():
            finished += 1
            decoded = text.decode()
            assert samplers[name].parses(decoded), decoded
            if name == "json":
                json.loads(decoded)
            if name == "xml":
                try:
                    ET.fromstring(decoded)
                except ET.ParseError as exc:  # only a mismatched close tag may fail here
                    assert "mismatched tag" in str(exc), decoded


class _Planted:
    """Unpickling this runs code: it creates ``marker`` (what a planted cache file could do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_lark_cache_files_are_never_loaded(tmp_path, monkeypatch):
    """Lark's on-disk cache unpickles its file before checking the grammar's hash (issue 21): guided
    no longer uses it, so a pickle planted where it was kept never runs, and builds still agree."""
    import hashlib
    import pickle

    import lark

    from guided.frontends.lark import lark_to_ir

    proof = tmp_path / "payload-works"
    pickle.loads(pickle.dumps(_Planted(proof)))
    assert proof.exists()  # the payload would run if anything unpickled it
    monkeypatch.setenv("GUIDED_CACHE", str(tmp_path))
    marker = tmp_path / "planted-pickle-ran"
    folder = tmp_path / "lark"
    folder.mkdir()
    text = Grammar("sql").text_and_path()[0]
    old_key = hashlib.sha256(f"{lark.__version__}\0start\0{text}".encode()).hexdigest()[:24]
    planted = [f"{old_key}.lalr", "planted.lalr"]
    for name in planted:
        (folder / name).write_bytes(pickle.dumps(_Planted(marker)))
    cold = lark_to_ir(Grammar("sql"))
    again = lark_to_ir(Grammar("sql"))
    assert not marker.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(planted)  # nothing read, nothing written
    # Lark numbers LALR states differently from one build to the next; the languages agree.
    assert cold.num_states == again.num_states and sorted(cold.rule_names) == sorted(again.rule_names)
    assert [t.name for t in cold.terminals] == [t.name for t in again.terminals] and cold.ignore == again.ignore
    for text, ok in ((b"SELECT a, b AS c FROM t WHERE a > 1 AND b LIKE 'x%' ORDER BY a DESC LIMIT 3;", True),
                     (b"select * from t join u on t.a = u.b", True), (b"SELECT FROM t", False)):
        assert accepts(cold, text) == accepts(again, text) == ok, text


def test_malformed_and_non_lalr_grammars_are_refused():
    vocab = guided.Vocabulary.from_token_bytes([b"a", b"<eos>"], eos_token_ids=[1])
    with pytest.raises(GrammarError, match="malformed"):
        guided.compile(Grammar("start: (\n"), vocab)
    with pytest.raises(GrammarError, match="LALR"):
        guided.compile(Grammar('start: a | b\na: "x" "y"\nb: "x" "y"', parser="lalr"), vocab)
    assert guided.compile(Grammar('start: a | b\na: "x" "y"\nb: "x" "y"'), vocab).ir.earley  # the default
    with pytest.raises(GrammarError, match=r"terminal WORD \(line 2\).*lookahead"):
        guided.compile(Grammar('start: WORD\nWORD: /a(?=b)/'), vocab)
    with pytest.raises(GrammarError, match="not found"):
        guided.compile(Grammar("missing.lark"), vocab)
