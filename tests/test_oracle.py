"""Every engine (Python and, where built, native) against the reference recogniser
(`guided.ir.reference`), mask for mask.

Random walks under the mask over the shipped grammars, XML, tool calls, practical regexes and a
MaskBench sample: at every step the engine's mask must be exactly the set of tokens after which
the reference says the text is still a viable prefix, and end-of-sequence must be allowed
exactly where the reference accepts the text as complete.  The reference's answer for the
whole vocabulary comes from one walk of a token trie (a subtree is skipped once its prefix is
not viable: that is absorbing), with steps memoised.

The vocabulary is a seeded sample of SmolLM2's (every single-byte token plus 3,000 others): the
engines' per-vocabulary tricks still see real multi-byte tokens, and the reference stays fast
enough to check every token at every step.
"""

from __future__ import annotations

import json
import pathlib
import random

import numpy as np
import pytest

import guided
from guided.engine import native
from guided.ir.reference import Reference
from tests.grammar_sampler import SentenceSampler
from tests.regexes import PRACTICAL

ROOT = pathlib.Path(__file__).resolve().parent.parent
MASKBENCH = ROOT.parent / "shared" / "data" / "maskbench"
SHIPPED = ["json", "xml", "sql", "arithmetic", "python_call", "tool_call"]
WALKS, STEPS = 3, 24
ENGINES = ["python"] + (["native"] if native.available() else [])
FOLLOW = 60  # masks checked along a valid document (the short ones are followed to their end)


@pytest.fixture(scope="module")
def vocab(smollm2_vocab):
    rng = random.Random(13)
    tb = smollm2_vocab.token_bytes
    singles = [i for i, b in enumerate(tb) if len(b) == 1]
    others = rng.sample([i for i, b in enumerate(tb) if len(b) > 1], 3000)
    tokens = [tb[i] for i in sorted(singles + others)] + [b"<eos>"]
    return guided.Vocabulary.from_token_bytes(tokens, eos_token_ids=[len(tokens) - 1])


class _Trie:
    __slots__ = ("children", "ids")

    def __init__(self):
        self.children: dict[int, _Trie] = {}
        self.ids: list[int] = []


def _trie(vocab) -> _Trie:
    root = _Trie()
    for i, data in enumerate(vocab.token_bytes):
        if not data:
            continue
        node = root
        for b in data:
            node = node.children.setdefault(b, _Trie())
        node.ids.append(i)
    return root


class Oracle:
    """The reference's mask for a position: every token whose bytes keep it viable.

    Positions are interned to ints, so the memo of steps hashes pairs of ints rather than
    parser stacks.
    """

    def __init__(self, ir, vocab):
        self.ref = Reference(ir)
        self.vocab = vocab
        self.trie = _trie(vocab)
        self.positions: list = []
        self.ids: dict = {}
        self.viable: list[bool] = []
        self.steps: dict[tuple[int, int], int] = {}  # (position id, byte) -> position id, -1: refused

    def intern(self, pos) -> int:
        pid = self.ids.get(pos)
        if pid is None:
            pid = self.ids[pos] = len(self.positions)
            self.positions.append(pos)
            self.viable.append(self.ref.is_viable(pos))
        return pid

    def mask(self, pos) -> np.ndarray:
        allowed = np.zeros(self.vocab.size, bool)
        steps, viable, ref, positions = self.steps, self.viable, self.ref, self.positions
        todo = [(self.trie, self.intern(pos))]
        while todo:
            node, p = todo.pop()
            for b, child in node.children.items():
                q = steps.get((p, b))
                if q is None:
                    nxt = ref.step(positions[p], b)
                    q = steps[(p, b)] = -1 if nxt is None else self.intern(nxt)
                if q < 0 or not viable[q]:
                    continue
                if child.ids:
                    allowed[child.ids] = True
                if child.children:
                    todo.append((child, q))
        if ref.accepts_end(pos):
            allowed[sorted(self.vocab.eos_token_ids)] = True
        return allowed


def _walks(spec, vocab, seed, documents=(), walks=WALKS, steps=STEPS) -> int:
    """Walks under the mask, every engine's mask checked against the oracle's; the number of steps.

    One walk follows each of ``documents`` (valid texts, cut into random vocabulary tokens, for
    up to `FOLLOW` tokens: the walk goes through the structure), then ``walks`` walks pick random
    allowed tokens for ``steps`` steps.
    """
    ir = guided.compiler.lower(spec)
    grammars = {engine: guided.compile(spec, vocab, engine=engine) for engine in ENGINES}
    oracle = Oracle(ir, vocab)
    rng = random.Random(seed)
    eos = min(vocab.eos_token_ids)
    checked = 0
    singles = {data[0] for data in vocab.token_bytes if len(data) == 1}
    texts = [doc.encode() if isinstance(doc, str) else doc for doc in documents]
    # (SmolLM2 has no token for some control bytes: a document holding one cannot be written.)
    plans: list[bytes | None] = [doc for doc in texts if set(doc) <= singles] + [None] * walks
    for plan in plans:
        matchers = {engine: g.matcher() for engine, g in grammars.items()}
        pos = oracle.ref.start()
        text = b""
        for _ in range(steps if plan is None else min(len(plan) + 1, FOLLOW)):
            want = oracle.mask(pos)
            for engine, m in matchers.items():
                got = m.mask()
                if not np.array_equal(got, want):
                    extra = [vocab.token_text(i) for i in np.flatnonzero(got & ~want)[:8]]
                    missing = [vocab.token_text(i) for i in np.flatnonzero(want & ~got)[:8]]
                    pytest.fail(f"{spec!r} after {text!r}: the {engine} engine allows {extra} the reference "
                                f"refuses, refuses {missing} the reference allows")
            checked += 1
            if plan is not None:
                rest = plan[len(text):]
                if not rest:
                    break
                choices = [i for i in _prefix_tokens(oracle.trie, rest) if want[i]]
                assert choices, f"{spec!r}: the valid document {plan!r} is refused after {text!r}"
                token = rng.choice(choices)
            else:
                choices = [int(i) for i in np.flatnonzero(want) if i != eos]
                if not choices:
                    break
                # Uniform choices wander in whitespace and long names; punctuation moves through
                # the structure (brackets, quotes, tags), so it gets half the picks.
                solid = [i for i in choices if vocab.token_bytes[i].strip()]
                marks = [i for i in solid if not vocab.token_bytes[i].strip().isalnum()]
                roll = rng.random()
                token = rng.choice(marks if marks and roll < 0.5 else solid if solid and roll < 0.9 else choices)
            for m in matchers.values():
                m.advance(token)
            pos = oracle.ref.walk(pos, vocab.token_bytes[token])
            text += vocab.token_bytes[token]
    return checked


def _prefix_tokens(trie: _Trie, data: bytes) -> list[int]:
    """The tokens whose bytes start ``data``."""
    out: list[int] = []
    node = trie
    for b in data:
        node = node.children.get(b)
        if node is None:
            break
        out += node.ids
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_grammar_masks_are_the_references(name, vocab):
    rng = random.Random(name)
    sampler = SentenceSampler(guided.Grammar(name))
    documents = [sampler.sample(rng) for _ in range(2)]
    assert _walks(guided.Grammar(name), vocab, seed=name, documents=documents) >= WALKS


XML_DOCUMENTS = [
    '<order id="7" status=\'open\'><item sku="a-1">2 &amp; more</item><note/><!-- c --></order>',
    "<a><b><c>x</c></b><b2 k='v'>text</b2></a>",
]


def test_xml_masks_are_the_references(vocab):
    assert _walks(guided.Xml(), vocab, seed="xml", documents=XML_DOCUMENTS) >= WALKS


def test_tool_call_masks_are_the_references(vocab):
    tools = guided.Tools([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"]}}}], tool_choice="auto")
    documents = ['<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}</tool_call>',
                 "It is sunny."]
    assert _walks(tools, vocab, seed="tools", documents=documents) >= WALKS


@pytest.mark.parametrize("name", sorted(PRACTICAL)[::3])
def test_regex_masks_are_the_references(name, vocab):
    assert _walks(guided.Regex(PRACTICAL[name]), vocab, seed=name, walks=2, steps=16) >= 2


def _maskbench_sample(count: int = 12) -> list[pathlib.Path]:
    paths = sorted(MASKBENCH.glob("*.json"))
    return paths[:: max(1, len(paths) // count)][:count]


@pytest.mark.skipif(not MASKBENCH.exists(), reason="../shared/data/maskbench is not beside the repo")
@pytest.mark.parametrize("path", _maskbench_sample(), ids=lambda p: p.stem)
@pytest.mark.filterwarnings("ignore::guided.RelaxedSchemaWarning")  # lenient: what it relaxes is not the point here
def test_maskbench_masks_are_the_references(path, vocab):
    case = json.loads(path.read_text())
    try:
        spec = guided.JsonSchema(case["schema"], lenient=True)
        guided.compiler.lower(spec)
    except guided.GuidedError:
        pytest.skip("guided refuses this schema")
    valid = [t["data"] for t in case["tests"] if t["valid"]][:2]
    documents = [json.dumps(v, ensure_ascii=False) for v in valid] + [json.dumps(v, indent=2) for v in valid[:1]]
    assert _walks(spec, vocab, seed=path.stem, documents=documents, walks=2) >= 2


UNIQUE_SCHEMAS = [
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, ["[1, 2, 10, -3]", "[7,70,700]"]),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 4},
     ['["a", "\\u0062", "ab"]', '["x","y"]']),
    ({"type": "array", "uniqueItems": True}, ['[1, "1", [1], {"a": 1}, true, null]', '[[1,2],[2,1],{"a":[1]}]']),
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True, "items": {
        "type": "object", "properties": {"k": {"type": "number"}, "v": {"type": "array", "items": {"type": "integer"},
                                                                        "uniqueItems": True}}}}}},
     ['{"tags": [{"k": 1, "v": [1, 2]}, {"k": 1.5, "v": [2, 1]}, {"v": []}]}']),
    ({"type": "array", "items": {"enum": [f"v{i}" for i in range(12)]}, "uniqueItems": True},
     ['["v1", "v10", "v11", "v0"]']),
]


@pytest.mark.parametrize("index", range(len(UNIQUE_SCHEMAS)))
def test_unique_items_masks_are_the_references(index, vocab):
    schema, documents = UNIQUE_SCHEMAS[index]
    spec = guided.JsonSchema(schema)
    assert guided.compiler.lower(spec).unique_items is not None
    assert _walks(spec, vocab, seed=f"unique{index}", documents=documents, walks=4, steps=30) >= 4
