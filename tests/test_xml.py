"""The XML matcher (exact well-formedness incl. close-tag names) and schema-shaped XML."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from typing import Literal, Optional

import numpy as np
import pytest
from pydantic import BaseModel, Field

import guided
from guided.engine.xml import XmlGrammar
from guided.frontends.xml import Xml, parse_xml, to_xml
from guided.validate import byte_vocabulary, validate

DOCS = [
    '<?xml version="1.0" encoding="UTF-8"?>\n<root a="1" b=\'x &amp; y\'>\n  <item id="x">t &amp; m &#65; &#x263A;</item>\n'
    '  <empty/><!-- c --><![CDATA[ <x> ]]>\n</root>',
    '<a><b><c x="1" y="2">hi</c></b><bb/><b></b></a>',
    '<list><li>1</li><li>a]]b &gt; c</li><li2>x</li2></list>',
]


@pytest.fixture(scope="module")
def small_vocab(smollm2_vocab):
    """SmolLM2 tokens that are short or carry XML syntax: brute force over them stays fast."""
    keep = [b for b in smollm2_vocab.token_bytes if b and (len(b) <= 2 or any(c in b for c in b'<>/="\'&;!-'))]
    return guided.Vocabulary.from_token_bytes(keep[:6000] + [b"<eos>"], eos_token_ids=[len(keep[:6000])])


def _brute(g: XmlGrammar, config) -> np.ndarray:
    out = np.zeros(g.vocab.size, dtype=bool)
    for i, data in enumerate(g.vocab.token_bytes):
        if data and g.walk(config, data) is not None:
            out[i] = True
    if g.accepts_end(config):
        out[sorted(g.vocab.eos_token_ids)] = True
    return out


def test_masks_equal_brute_force_along_random_walks(small_vocab):
    """Both engines' masks equal a brute force over every token (the Python engine's byte steps)."""
    from guided.engine import native

    g = guided.compile(Xml(), small_vocab, engine="python")
    assert isinstance(g, XmlGrammar)
    nat = guided.compile(Xml(), small_vocab, engine="native") if native.available() else None
    rng = random.Random(0)
    syntax = np.array([any(c in b for c in b'<>/="') for b in small_vocab.token_bytes])
    checked = 0
    for walk in range(6):
        m = g.matcher()
        nm = nat.matcher() if nat is not None else None
        for step in range(40):
            mask = m.mask()
            brute = _brute(g, m._history[0])
            assert (mask == brute).all(), [small_vocab.token_text(i) for i in np.flatnonzero(mask != brute)[:8]]
            if nm is not None:
                assert (nm.mask() == brute).all(), [small_vocab.token_text(i) for i in np.flatnonzero(nm.mask() != brute)[:8]]
            checked += 1
            allowed = np.flatnonzero(mask & ~np.isin(np.arange(mask.size), list(small_vocab.eos_token_ids)))
            if not allowed.size:
                break
            pref = allowed[syntax[allowed]]
            token = int(rng.choice(pref if pref.size and rng.random() < 0.7 else allowed))
            m.advance(token)
            if nm is not None:
                nm.advance(token)
    assert checked > 100


@pytest.mark.parametrize("doc", DOCS)
def test_documents_walk_through_and_parse(doc, smollm2_tokenizer, smollm2_vocab):
    ET.fromstring(doc)
    g = guided.compile(Xml(), smollm2_vocab)
    m = g.matcher()
    for t in smollm2_tokenizer(doc, add_special_tokens=False)["input_ids"]:
        assert m.mask()[t], (doc, smollm2_vocab.token_text(t))
        m.advance(t)
    assert m.accepts_eos()


def test_whitespace_is_bounded_and_nothing_follows_the_root(smollm2_vocab):
    """Generation cannot spend its budget on whitespace: none after the root closes, runs of at
    most `MAX_WHITESPACE` bytes elsewhere; `validate` still accepts text that ends with a newline."""
    from guided.frontends.xml import MAX_WHITESPACE

    g = guided.compile(Xml(), byte_vocabulary())
    for text, ok in [("<a/>", True), ("<a/>\n", False), ("<a/><!-- c -->", False),
                     (" " * MAX_WHITESPACE + "<a/>", True), (" " * (MAX_WHITESPACE + 1) + "<a/>", False),
                     ("<a" + " " * MAX_WHITESPACE + "/>", True), ("<a" + " " * (MAX_WHITESPACE + 1) + "/>", False)]:
        m = g.matcher()
        walked = True
        for b in text.encode():
            if not m.mask()[b]:
                walked = False
                break
            m.advance(b)
        assert (walked and m.accepts_eos()) == ok, text
    assert validate("<a>\n  <b/>\n</a>\n", format="xml").ok
    person = guided.compile(Xml(Person), byte_vocabulary()).matcher()
    for b in to_xml(Person(id=1, name="x", ok=True), Person).encode():
        person.advance(b)
    assert person.accepts_eos() and not person.mask()[ord("\n")]


def _random_tree(rng: random.Random, depth: int = 0) -> ET.Element:
    names = ["a", "ab", "item", "x_1", "get", "get_weather"]
    el = ET.Element(rng.choice(names), {n: rng.choice(["1", "a<b", "q\"'&", ""]) for n in rng.sample(["id", "k", "v"], rng.randint(0, 2))})
    el.text = rng.choice([None, "", "text", " a & b < c > d ]]> ", "\n  "])
    if depth < 3:
        for _ in range(rng.randint(0, 3)):
            child = _random_tree(rng, depth + 1)
            child.tail = rng.choice([None, "\n", "t"])
            el.append(child)
    return el


def test_serialised_trees_are_accepted(smollm2_tokenizer, smollm2_vocab):
    g = guided.compile(Xml(), smollm2_vocab)
    rng = random.Random(1)
    for _ in range(15):
        doc = ET.tostring(_random_tree(rng), encoding="unicode")
        m = g.matcher()
        for t in smollm2_tokenizer(doc, add_special_tokens=False)["input_ids"]:
            m.advance(t)
        assert m.accepts_eos(), doc


@pytest.mark.parametrize("doc,offset", [
    ("<a><b></a>", 8),           # close tag names the wrong element: fails at its first wrong byte
    ("<a></ab>", 6),             # longer name than the open one
    ("<a></a>", None),
    ('<a x="1" x="2"/>', 10),    # duplicate attribute: fails where the name ends
    ("<a>&foo;</a>", 4),         # undefined entity
    ("<a>&#0;</a>", 6),          # reference to an invalid character ("&#065;" would be fine)
    ("<a>x]]>y</a>", 6),         # "]]>" in text
    ("<a><!-- x -- y --></a>", 12),  # "--" inside a comment must end it
    ("<a:b/>", 2),               # namespace prefixes are not in the language
    ("<a/><b/>", 4),             # one root, and nothing after it
    ("<a>", 3),                  # incomplete
])
def test_validate_reports_exact_offsets(doc, offset):
    r = validate(doc, format="xml")
    assert r.offset == offset, r.message
    if offset is None:
        ET.fromstring(doc)
    else:
        with pytest.raises(ET.ParseError):
            ET.fromstring(doc)


def test_rollback_copy_forced_and_budget(smollm2_tokenizer, smollm2_vocab):
    g = guided.compile(Xml(), smollm2_vocab)
    m = g.matcher()
    for t in smollm2_tokenizer("<root><item>", add_special_tokens=False)["input_ids"]:
        m.advance(t)
    c = m.copy()
    for t in smollm2_tokenizer("x</", add_special_tokens=False)["input_ids"]:
        c.advance(t)
    assert c.forced_bytes() == b"item"
    before = m.mask().copy()
    c.rollback(c.num_tokens - m.num_tokens)
    assert np.array_equal(c.mask(), before)
    # budget: with exactly the tokens the close tags need, only closing them fits
    need = m.closing_distance()
    assert need == m.closing_lower_bound()  # </item></root>: exact
    for left in range(need, 0, -1):
        budget = m.budget_mask(left)
        assert budget.any()
        m.advance(int(np.flatnonzero(budget)[0]))
    assert m.accepts_eos()


def test_generate_free_xml_parses(tiny_model):
    for seed in range(4):
        text = guided.generate(tiny_model, "XML please", format="xml", temperature=1.0, seed=seed, max_new_tokens=48)
        ET.fromstring(text)


class Address(BaseModel):
    street: str
    zip: int


class Person(BaseModel):
    id: int = Field(json_schema_extra={"xml": {"attribute": True}})
    name: str
    age: Optional[int] = None
    kind: Literal["a", "b&c"] = "a"
    tags: list[str] = []
    addresses: list[Address] = Field(default_factory=list, max_length=2)
    ok: bool


def test_schema_xml_round_trips(smollm2_tokenizer, smollm2_vocab):
    g = guided.compile(Xml(Person), smollm2_vocab)
    rng = random.Random(2)
    for _ in range(10):
        p = Person(id=rng.randint(-5, 99), name=rng.choice(["", "A <b> & ]]> c", "x'y\"z"]),
                   age=rng.choice([None, 3]), kind=rng.choice(["a", "b&c"]), tags=rng.sample(["x", "", "&"], 2),
                   addresses=[Address(street="s", zip=1)] * rng.randint(0, 2), ok=rng.random() < 0.5)
        doc = to_xml(p, Person)
        assert parse_xml(doc, Person) == p
        m = g.matcher()
        for t in smollm2_tokenizer(doc, add_special_tokens=False)["input_ids"]:
            m.advance(t)
        assert m.accepts_eos(), doc


def test_generate_schema_shaped_xml(tiny_model):
    for seed in range(3):
        p = guided.generate(tiny_model, "Person", schema=Person, format="xml", temperature=1.0, seed=seed,
                            max_new_tokens=160)
        assert isinstance(p, Person)
        assert parse_xml(to_xml(p, Person), Person) == p


def test_json_schema_dict_xml(tiny_model):
    schema = {"title": "point", "type": "object", "properties": {"x": {"type": "number"}, "label": {"type": "string"}},
              "required": ["x"]}
    out = guided.generate(tiny_model, "Point", json_schema=schema, format="xml", seed=0, max_new_tokens=60)
    assert isinstance(out["x"], float)


def test_the_xml_engine_takes_its_names_from_the_ir(small_vocab):
    """Matched names are an IR feature: the engine refuses an IR without them, or whose tag
    terminals are not spelt as XML's, with a clear error."""
    import dataclasses

    from guided.errors import SpecError

    ir = Xml().to_ir()
    names = ir.matched_names
    assert [ir.terminals[i].name for i in (names.open_start, names.close_start, names.name)] == ["LT", "LTSLASH", "NAME"]
    with pytest.raises(SpecError, match="matched_names"):
        XmlGrammar(guided.Grammar("json").to_ir(), small_vocab)
    swapped = dataclasses.replace(ir, matched_names=dataclasses.replace(names, open_start=names.close_start))
    with pytest.raises(SpecError, match="open_start"):
        XmlGrammar(swapped, small_vocab)
    from guided.engine import native

    if native.available():  # the native engine refuses the same IR with the same errors
        with pytest.raises(SpecError, match="open_start"):
            native.NativeXmlGrammar(swapped, small_vocab)
        with pytest.raises(SpecError, match="matched_names"):
            native.NativeXmlGrammar(guided.Grammar("json").to_ir(), small_vocab)
