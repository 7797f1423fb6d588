"""The Pydantic types users write, one test each: Pydantic's own ``model_dump_json()`` of
hypothesis-built instances walks through the compiled grammar, and random walks through the
grammar's masks give documents ``model_validate_json`` accepts."""

from __future__ import annotations

import datetime
import decimal
import ipaddress
import pathlib
import random
import string
from typing import Annotated, Any, Generic, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import (AnyUrl, BaseModel, Field, HttpUrl, IPvAnyAddress, IPvAnyNetwork, SecretStr, condecimal, conlist, conset,
                      create_model)

import guided
from guided.frontends.jsonschema import schema_to_ir
from guided.frontends.pydantic import pydantic_spec
from guided.ir.reference import accepts
from guided.validate import byte_vocabulary

T = TypeVar("T")


class Box(BaseModel, Generic[T]):
    item: T
    items: list[T] = []


def _model(name: str, annotation: Any) -> type[BaseModel]:
    return create_model(f"M_{name}", x=(annotation, ...))


# --- strategies for the values (Pydantic v2 registers none with hypothesis) -------------------------
_label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
_host = st.builds(lambda ls, top: ".".join([*ls, top]), st.lists(_label, max_size=3),
                  st.text(string.ascii_lowercase, min_size=2, max_size=6))
_path = st.lists(st.text(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%|^[]", max_size=8), max_size=3)
_query = st.text(string.ascii_letters + string.digits + "=&/?{}|-._~", max_size=12)
_ip4 = st.ip_addresses(v=4).map(str)
_ip6 = st.ip_addresses(v=6).map(str)


def _url(schemes):
    return st.builds(lambda s, h, port, p, q, f: f"{s}://{h}{port}/{'/'.join(p)}{q}{f}",
                     st.sampled_from(schemes), st.one_of(_host, _ip4, _ip6.map(lambda a: f"[{a}]")),
                     st.sampled_from(["", ":8080", ":1"]), _path,
                     st.one_of(st.just(""), _query.map(lambda q: "?" + q)),
                     st.one_of(st.just(""), _query.map(lambda q: "#" + q)))


_email = st.builds(lambda local, dom: f"{local}@{dom}",
                   st.text(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=12),
                   _host.filter(lambda h: "." in h and h.rsplit(".", 1)[1] not in ("test", "local", "onion", "arpa")))

CASES: dict[str, tuple[Any, Any]] = {
    "HttpUrl": (HttpUrl, _url(["http", "https"])),
    "AnyUrl": (AnyUrl, st.one_of(_url(["http", "https", "ftp", "ws", "redis", "s3"]),
                                 st.builds(lambda s, p: f"{s}:{p}", st.sampled_from(["mailto", "urn", "x-y"]),
                                           st.text(string.ascii_letters + "@.:", min_size=1, max_size=10)))),
    "Path": (pathlib.Path, st.text(max_size=20).map(pathlib.Path)),
    "SecretStr": (SecretStr, st.text(max_size=10)),
    "bytes": (bytes, st.text(max_size=10).map(str.encode)),
    "EmailStr": ("EmailStr", _email),
    "IPvAnyAddress": (IPvAnyAddress, st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))),
    "IPvAnyNetwork": (IPvAnyNetwork, st.builds(lambda a, p: ipaddress.ip_network((a, p), strict=False),
                                               st.ip_addresses(v=4), st.integers(0, 32))),
    "datetime": (datetime.datetime, st.datetimes(timezones=st.one_of(st.none(), st.timezones()))),
    "Decimal": (decimal.Decimal, st.decimals(allow_nan=False, allow_infinity=False)),
    "condecimal": (condecimal(max_digits=5, decimal_places=2),
                   st.decimals(min_value=-999, max_value=999, places=2, allow_nan=False)),
    "condecimal_digits": (condecimal(max_digits=4), st.decimals(min_value=-99, max_value=99, places=2)),
    "conlist": (conlist(int, min_length=1, max_length=3), st.lists(st.integers(), min_size=1, max_size=3)),
    "conset": (conset(int, min_length=2, max_length=4), st.sets(st.integers(-5, 5), min_size=2, max_size=4)),
    "Annotated": (Annotated[int, Field(ge=0, le=10)], st.integers(0, 10)),
    "Generic": (Box[datetime.date], st.builds(Box[datetime.date], item=st.dates(), items=st.lists(st.dates()))),
}


def _annotation(name: str):
    ann = CASES[name][0]
    if ann == "EmailStr":
        pytest.importorskip("email_validator")
        from pydantic import EmailStr

        return EmailStr
    return ann


@pytest.fixture(scope="module")
def compiled():
    memo: dict[str, tuple] = {}

    def get(name: str):
        if name not in memo:
            model = _model(name, _annotation(name))
            memo[name] = (model, schema_to_ir(pydantic_spec(model)))
        return memo[name]
    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_dumps_of_built_instances_are_accepted(name, compiled):
    model, ir = compiled(name)
    built = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(CASES[name][1])
    def check(value):
        try:
            inst = model(x=value)
        except Exception:  # noqa: BLE001 - a value Pydantic itself refuses is no instance
            return
        text = inst.model_dump_json()
        assert accepts(ir, text.encode()), text
        built.append(text)

    check()
    assert len(built) >= 10, built  # the strategy builds instances Pydantic accepts


def _random_documents(grammar, rng: random.Random, n: int, steps: int = 400) -> list[bytes]:
    """Random walks through the masks of a byte-level grammar, closing strings and objects with
    rising probability; the finished documents."""
    vocab = byte_vocabulary()
    closing = [ord(c) for c in '"}]']
    out = []
    for _ in range(n):
        m = grammar.matcher()
        text = b""
        for step in range(steps):
            allowed = np.flatnonzero(m.mask()).tolist()
            if 256 in allowed and (len(allowed) == 1 or rng.random() < 0.5):
                out.append(text)
                break
            allowed = [t for t in allowed if t != 256]
            ends = [t for t in allowed if t in closing]
            t = rng.choice(ends if ends and rng.random() < step / 60 else allowed)
            m.advance(t)
            text += vocab.token_bytes[t]
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_random_generations_validate(name):
    model = _model(name, _annotation(name))
    grammar = guided.compile(pydantic_spec(model, max_whitespace=1), byte_vocabulary(), cache=False)
    docs = _random_documents(grammar, random.Random(name), 12)
    assert len(docs) >= 6, docs
    for doc in docs:
        model.model_validate_json(doc)  # raises on an invalid document


class Query(BaseModel):
    text: str
    url: HttpUrl


def search(q: Query, limit: int = 3) -> str:
    """Search."""
    return q.text


def test_tool_parameters_typed_as_models():
    tools = guided.Tools([search], max_whitespace=1)
    ir = tools.to_ir()
    ok = b'<tool_call>{"name": "search", "arguments": {"q": {"text": "a", "url": "http://a.com/"}}}</tool_call>'
    bad = b'<tool_call>{"name": "search", "arguments": {"q": {"text": "a", "url": "http:"}}}</tool_call>'
    assert accepts(ir, ok) and not accepts(ir, bad)


def test_special_use_and_dotless_email_domains_are_refused():
    pytest.importorskip("email_validator")
    from pydantic import EmailStr

    ir = schema_to_ir(pydantic_spec(_model("e", EmailStr)))
    assert accepts(ir, b'{"x": "a@b.co"}')
    for bad in ("a@b", "a@b.test", "a@x.localhost", "a@b.c1", ".a@b.co"):
        assert not accepts(ir, f'{{"x": "{bad}"}}'.encode()), bad


def test_decimal_digits_are_counted_as_pydantic_counts():
    model = _model("d", condecimal(max_digits=5, decimal_places=2))
    ir = schema_to_ir(pydantic_spec(model))
    for text in ('"123.45"', "123.45", '"1.500"', "-0.01", '"999"'):
        assert accepts(ir, f'{{"x": {text}}}'.encode()), text
        model.model_validate_json(f'{{"x": {text}}}')
    for text in ('"1234.5"', "1234.5", '"0.001"', "0.001", '"abc"'):
        assert not accepts(ir, f'{{"x": {text}}}'.encode()), text


def test_ip_addresses_and_urls_refuse_what_pydantic_refuses():
    ir = schema_to_ir(pydantic_spec(_model("ip", IPvAnyAddress)))
    assert accepts(ir, b'{"x": "::ffff:1.2.3.4"}') and not accepts(ir, b'{"x": "1.2.3.256"}')
    assert ipaddress.ip_address("::ffff:1.2.3.4")
    ir = schema_to_ir(pydantic_spec(_model("u", HttpUrl)))
    for bad in ("http:", "http://", "ftp://a.com", "http://a.1", "http://a:99999"):
        assert not accepts(ir, f'{{"x": "{bad}"}}'.encode()), bad
    assert not accepts(ir, ('{"x": "http://a.com/' + "a" * 2071 + '"}').encode())  # maxLength 2083
    assert accepts(ir, ('{"x": "http://a.com/' + "a" * 2070 + '"}').encode())


def test_decimal_patterns_agree_with_pydantic_both_ways():
    """On a grid of plain spellings, a decimal's pattern matches exactly what Pydantic accepts
    (max_digits/decimal_places as Pydantic counts them: zero is one digit, trailing zeros of the
    fraction are none)."""
    import re

    from guided.frontends.pydantic_patterns import decimal_pattern

    spellings = [sign + whole + frac for sign in ("", "-")
                 for whole in ("0", "5", "10", "100", "1000", "12345")
                 for frac in ("", ".0", ".5", ".05", ".50", ".123", ".1230", ".001", ".00")]
    for md, dp in [(1, 0), (2, 1), (3, 3), (4, None), (None, 2), (3, 1), (5, 2), (2, 4)]:
        model = _model("grid", condecimal(max_digits=md, decimal_places=dp))
        pattern = decimal_pattern(md, dp)
        ir = schema_to_ir(pydantic_spec(model))
        for text in spellings:
            valid = {}
            for form, doc in (("string", f'{{"x": "{text}"}}'), ("number", f'{{"x": {text}}}')):
                try:
                    model.model_validate_json(doc)
                    valid[form] = True
                except Exception:  # noqa: BLE001 - Pydantic's ValidationError
                    valid[form] = False
                got = accepts(ir, doc.encode())
                if form == "number" and float(text) == 0 and md is not None and (dp or 0) >= md:
                    assert not got  # "0.0" is valid, "0" is not: no zero number (by value) at all
                else:
                    assert got == valid[form], (md, dp, doc, valid[form])
            assert bool(re.fullmatch(pattern, text)) == valid["string"], (md, dp, text)


@pytest.mark.parametrize("name", ["HttpUrl", "AnyUrl", "PostgresDsn", "EmailStr", "IPvAnyAddress",
                                  "IPvAnyInterface", "IPvAnyNetwork"])
def test_every_string_of_a_type_pattern_validates(name):
    """Random strings of the pattern guided compiles for the type (random walks of its automaton,
    short and long) are all accepted by Pydantic."""
    import json

    import pydantic
    from pydantic import TypeAdapter

    from guided.frontends.jsonschema import _strings
    from guided.frontends.pydantic import pydantic_schema
    from tests.grammar_sampler import _distances, _random_walk

    if name == "EmailStr":
        pytest.importorskip("email_validator")
    annotation = getattr(pydantic, name)
    pattern = pydantic_schema(_model(name, annotation))["properties"]["x"]["pattern"]
    dfa = _strings.pattern_content(pattern, 1_000_000, _strings.add_canonical_json_chars)
    dist = _distances(dfa)
    adapter = TypeAdapter(annotation)
    rng = random.Random(name)
    for _ in range(400):
        text = json.loads(b'"' + _random_walk(dfa, dist, rng, soft_limit=rng.choice([5, 15, 40])) + b'"')
        adapter.validate_python(text)  # raises where Pydantic refuses


def test_decimals_guided_cannot_say_are_refused_naming_the_field():
    from guided.errors import SpecError
    from guided.frontends.pydantic import pydantic_schema

    class Price(BaseModel):
        amount: condecimal(multiple_of=decimal.Decimal("0.05"))

    class Bound(BaseModel):
        amount: condecimal(gt=decimal.Decimal("1.00000000000000000001"))

    for model in (Price, Bound):
        with pytest.raises(SpecError, match="/properties/amount"):
            pydantic_schema(model)
    assert pydantic_schema(_model("ok", condecimal(gt=decimal.Decimal("0.1"))))  # exact as a float's repr


def test_ipv4_network_pattern_agrees_with_ipaddress_both_ways():
    """An IPv4 network's pattern matches exactly what ``ipaddress.ip_network`` (strict, as Pydantic
    calls it) accepts, over random addresses with random prefix lengths, half with host bits."""
    import re

    from guided.frontends.pydantic_patterns import IPV4_NETWORK

    rng = random.Random(4)
    for _ in range(2000):
        prefix = rng.randrange(33)
        address = rng.getrandbits(32)
        if rng.random() < 0.5:
            address &= ~((1 << (32 - prefix)) - 1) & 0xFFFFFFFF
        text = f"{ipaddress.IPv4Address(address)}/{prefix}"
        try:
            ipaddress.ip_network(text)
            valid = True
        except ValueError:
            valid = False
        assert bool(re.fullmatch(IPV4_NETWORK, text)) == valid, text
