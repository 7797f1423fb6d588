#!/usr/bin/env python
"""Lark grammar constraints on the real SmolLM2 tokenizer: compile time and per-token mask latency.

For every shipped grammar (``grammars/*.lark``: json, xml, sql, arithmetic, python_call,
tool_call), this script:

1. builds ``--docs`` realistic documents with a small seeded generator per grammar (API payloads
   and invoices for JSON, order exports and feeds for XML, SELECT statements, arithmetic
   expressions, Python-style calls and ``<tool_call>`` blocks), checks that each one parses
   with Lark (LALR, contextual lexer) and walks through guided's matcher with the tokenizer's
   own tokenization; documents failing either check are skipped and reported;
2. times ``guided.compile(guided.Grammar(name), vocab, cache=False)`` (LALR tables, cached on disk,
   terminal DFAs, packed contextual lexers; the vocabulary's token table is built once beforehand
   and its one-off cost reported separately);
3. walks every document token by token, timing ``m.fill_bitmask(bitmask, 0)`` (the mask) and
   ``m.advance(token)`` at each step, EOS step included:

   * **cold**: a freshly compiled grammar per document, so each configuration's mask is
     computed the first time the document reaches it (the cost of a first request);
   * **warm**: one compiled grammar on its second pass over all documents (every mask cached);

4. does the same with llguidance when it is installed (``LLMatcher`` construction as its compile
   time; ``unsafe_compute_mask_ptr`` into the same packed int32 bitmask and ``consume_token``, a
   fresh matcher per document), and compares the two engines' allowed-token sets at every step
   of the first ``--compare`` documents, once with llguidance's defaults and once with its
   forcing off (``%llguidance {"no_forcing": true}``).

Timings use ``time.perf_counter_ns`` on one thread (``torch.set_num_threads(1)``), with the
garbage collector paused during timed sections.

``--first-compile`` measures instead what a new process pays for its first compile of each
grammar: every timing runs in a fresh Python process (tokenizer, vocabulary and token table
loaded first and a regex compiled and walked, untimed), once with the on-disk IR cache off (``GUIDED_IR_CACHE=0``: Lark's
analysis and the terminal automata) and once with it filled by an earlier process (the IR read
back and validated); the median of ``--repeat`` processes.

    .venv/bin/python benchmarks/cfg_masks.py                     # all grammars, 16 documents each
    .venv/bin/python benchmarks/cfg_masks.py --grammar json --grammar sql --docs 8
    .venv/bin/python benchmarks/cfg_masks.py --grammar xml --profile --no-llguidance
    .venv/bin/python benchmarks/cfg_masks.py --first-compile --repeat 5
"""

from __future__ import annotations

import argparse
import cProfile
import os
import subprocess
import tempfile
import gc
import io
import json
import platform
import pstats
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lark  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import guided  # noqa: E402
from timing import fmt, gc_paused, median, pct, perf_ns  # noqa: E402 (benchmarks/ is on sys.path)
from guided.decoding.torch_masks import allocate_bitmask  # noqa: E402
from guided.engine.token_table import TokenTable  # noqa: E402
from guided.models import load_tokenizer  # noqa: E402


GRAMMARS_DIR = ROOT / "grammars"
GRAMMARS = ["json", "xml", "sql", "arithmetic", "python_call", "tool_call"]

# Rewrites applied (in memory) to a grammar's text before llguidance reads it: (old, new, why).
# Empty so far: llguidance 1.x reads every shipped grammar as is (``%import common``, ``-> alias``,
# ``?rule``, ``"..."i`` and ``%ignore`` included). Listed in the report's notes when used.
LLGUIDANCE_ADAPTATIONS: dict[str, list[tuple[str, str, str]]] = {}

# Prepended to a grammar for the second comparison: llguidance's masks offer only the tokenizer's own
# tokenization of bytes the grammar forces (after "<" in tool_call.lark only "tool", not "t"/"to"/"too");
# this option turns that off.
NO_FORCING = '%llguidance {"no_forcing": true}\n'

# ---------------------------------------------------------------------------------------------
# Deterministic, realistic documents


FIRST = ["Alice", "Bob", "Zoë", "José", "Mei", "Olu", "Søren", "Priya", "Łukasz", "Hana", "Marta", "Chen"]
LAST = ["Martin", "Nguyen", "Müller", "García", "O'Brien", "Kowalski", "Tanaka", "Okafor", "Dubois", "Rossi"]
CITIES = ["Paris", "Berlin", "München", "Tokyo", "東京", "São Paulo", "New York", "Zürich", "Kraków", "Lagos",
          "Montréal", "Reykjavík", "San Francisco", "Seoul"]  # fmt: skip
WORDS = ["alpha", "beta", "gamma", "urgent", "backend", "billing", "beta-tester", "vip", "new", "legacy"]
PRODUCTS = [
    ("A-1001", "Wireless mouse", 24.99), ("B-2040", "USB-C cable (2 m)", 9.5), ("C-3300", "Café crème beans 1kg", 18.0),
    ("D-0007", "Noise-cancelling headphones", 249.0), ("E-5120", "Desk lamp \"Luma\"", 39.95),
    ("F-6001", "Notebook A5, dotted", 4.2), ("G-7777", "東京タワー model", 31.0), ("H-8123", "Thermos 0.5 l ☕", 22.75),
]  # fmt: skip


def _person(r: random.Random) -> tuple[str, str]:
    return r.choice(FIRST), r.choice(LAST)


def _email(first: str, last: str, r: random.Random) -> str:
    ascii_ = lambda s: "".join(c for c in s.lower() if c.isascii() and c.isalpha())  # noqa: E731
    return f"{ascii_(first) or 'user'}.{ascii_(last) or 'x'}{r.randint(1, 99)}@example.{r.choice(['com', 'org', 'io'])}"


def _date(r: random.Random) -> str:
    return f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"


def _timestamp(r: random.Random) -> str:
    return f"{_date(r)}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z"


def _money(r: random.Random, lo: float = 1, hi: float = 500) -> float:
    return round(r.uniform(lo, hi), 2)


def _json_user(r: random.Random) -> Any:
    first, last = _person(r)
    return {
        "id": r.randint(1, 99999),
        "username": f"{first.lower()}_{r.randint(10, 999)}",
        "email": _email(first, last, r),
        "name": {"first": first, "last": last},
        "age": r.randint(18, 90),
        "verified": r.random() < 0.5,
        "roles": r.sample(["admin", "editor", "viewer", "billing"], r.randint(0, 3)),
        "address": {"street": f"{r.randint(1, 200)} Rue de l'Église", "city": r.choice(CITIES),
                    "zip": f"{r.randint(10000, 99999)}", "country": r.choice(["FR", "DE", "JP", "BR", "US"])},
        "last_login": _timestamp(r) if r.random() < 0.7 else None,
        "balance": _money(r, -50, 5000),
        "preferences": {"newsletter": r.random() < 0.5, "theme": r.choice(["dark", "light"]), "language": "fr-FR"},
    }  # fmt: skip


def _json_invoice(r: random.Random) -> Any:
    lines = []
    for sku, desc, price in r.sample(PRODUCTS, r.randint(1, 4)):
        lines.append({"sku": sku, "description": desc, "qty": r.randint(1, 5), "unit_price": price, "tax_rate": 0.2})
    subtotal = round(sum(x["qty"] * x["unit_price"] for x in lines), 2)
    first, last = _person(r)
    return {
        "invoice_id": f"INV-2024-{r.randint(1, 9999):04d}",
        "issued": _date(r),
        "currency": r.choice(["EUR", "USD", "JPY"]),
        "customer": {"name": f"{first} {last}", "email": _email(first, last, r), "vat_id": None},
        "lines": lines,
        "subtotal": subtotal,
        "tax": round(subtotal * 0.2, 2),
        "total": round(subtotal * 1.2, 2),
        "paid": r.random() < 0.5,
        "notes": "Payment due in 30 days.\nLate fee: 1.5% per month — thank you!",
    }


def _json_page(r: random.Random) -> Any:
    items = [{"id": r.randint(100, 999), "title": f"{r.choice(WORDS).title()} report #{i}", "score": round(r.random(), 4),
              "tags": r.sample(WORDS, 2), "archived": False} for i in range(r.randint(2, 4))]  # fmt: skip
    return {
        "data": items,
        "meta": {"page": r.randint(1, 9), "per_page": 20, "total": r.randint(50, 500), "elapsed_ms": 12.75},
        "links": {"self": "https://api.example.com/v2/reports?page=2", "next": "https://api.example.com/v2/reports?page=3",
                  "prev": None},
    }  # fmt: skip


def _json_weather(r: random.Random) -> Any:
    days = []
    for _ in range(r.randint(2, 4)):
        lo = round(r.uniform(-15, 15), 1)
        days.append({"date": _date(r), "t_min": lo, "t_max": round(lo + r.uniform(2, 12), 1),
                     "precip_mm": round(r.uniform(0, 20), 1), "summary": r.choice(["Sunny ☀", "Light snow ❄", "Showers",
                     "Overcast, wind 40 km/h"])})  # fmt: skip
    return {"city": r.choice(CITIES), "coords": {"lat": round(r.uniform(-60, 60), 4), "lon": round(r.uniform(-170, 170), 4)},
            "elevation_m": r.randint(0, 2500), "daily": days, "alerts": []}  # fmt: skip


def _json_error(r: random.Random) -> Any:
    item = r.randint(1, 500)
    return {
        "error": {
            "code": r.choice([400, 404, 409, 422, 500]),
            "message": f"Item \"/api/v2/items/{item}\" not found",
            "details": [{"field": "quantity", "issue": "must be ≥ 1", "value": 0},
                        {"field": "path", "issue": "backslashes \\ are not allowed", "value": "C:\\tmp\\x"}],
            "retryable": False,
            "trace_id": f"{r.getrandbits(64):016x}",
        }
    }  # fmt: skip


def _json_config(r: random.Random) -> Any:
    return {
        "version": 3,
        "debug": False,
        "learning_rate": r.choice([1e-05, 3e-4, 0.001, 2.5e-3]),
        "batch_size": r.choice([16, 32, 64]),
        "layers": [{"type": "dense", "units": r.choice([128, 256]), "activation": "relu", "dropout": 0.1},
                   {"type": "dense", "units": 10, "activation": "softmax", "dropout": 0}],
        "schedule": {"warmup_steps": 500, "decay": "cosine", "min_lr": 1e-7},
        "seed": r.randint(0, 2**31),
        "paths": {"data": "/mnt/data/train.jsonl", "checkpoints": None},
        "tags": [],
        "extra": {},
    }  # fmt: skip


def _json_products(r: random.Random) -> Any:
    return [{"sku": sku, "name": name, "price": price, "in_stock": r.random() < 0.7, "rating": round(r.uniform(1, 5), 1),
             "reviews": r.randint(0, 2000)} for sku, name, price in r.sample(PRODUCTS, r.randint(2, 4))]  # fmt: skip


def make_json(r: random.Random, i: int) -> str:
    builders = [_json_user, _json_invoice, _json_page, _json_weather, _json_error, _json_config, _json_products]
    obj = builders[i % len(builders)](r)
    style = (i // len(builders) + i) % 3
    ensure_ascii = i % 4 == 3  # some documents spell non-ASCII as \uXXXX escapes
    if style == 0:
        return json.dumps(obj, ensure_ascii=ensure_ascii)
    if style == 1:
        return json.dumps(obj, ensure_ascii=ensure_ascii, separators=(",", ":"))
    return json.dumps(obj, ensure_ascii=ensure_ascii, indent=2)


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _xml_order(r: random.Random) -> list:
    picked = r.sample(PRODUCTS, r.randint(1, 3))
    items = [("item", [("sku", sku), ("qty", str(r.randint(1, 5)))], None) for sku, _, _ in picked]
    first, last = _person(r)
    return [
        ("order", [("id", str(r.randint(1000, 9999))), ("status", r.choice(["shipped", "pending"])), ("date", _date(r))], [
            ("customer", [("vip", r.choice(["true", "false"]))], [_xml_escape(f"{first} {last} & Co.")]),
            ("items", [], items),
            ("note", [], ["<![CDATA[Leave at the door if <no answer> & ring twice]]>"]),
            ("total", [("currency", "EUR")], [f"{_money(r):.2f}"]),
        ])
    ]  # fmt: skip


def _xml_feed(r: random.Random) -> list:
    entries = []
    for k in range(r.randint(2, 3)):
        entries.append(("entry", [], [
            ("title", [], [_xml_escape(f"{r.choice(WORDS).title()} release notes, part {k + 1}")]),
            ("link", [("href", f"https://example.org/posts/{r.randint(1, 999)}?ref=feed&amp;lang=en")], None),
            ("updated", [], [_timestamp(r)]),
            ("summary", [("type", "html")], ["Fixes &lt;br&gt; handling &#8212; see &quot;changelog&quot;"]),
        ]))  # fmt: skip
    return [("feed", [("xmlns", "http://www.w3.org/2005/Atom"), ("xml:lang", "en")],
             [("title", [], ["Example blog"]), ("!--", "generated hourly", None), *entries])]  # fmt: skip


def _xml_config(r: random.Random) -> list:
    return [("configuration", [], [
        ("!--", " database settings ", None),
        ("database", [("driver", "postgresql"), ("pool", str(r.choice([5, 10, 20])))], [
            ("host", [], [f"db{r.randint(1, 9)}.internal"]), ("port", [], [str(r.choice([5432, 6432]))]),
            ("user", [], ["app"]), ("password", [], ["<![CDATA[p@ss<w>rd&1]]>"]),
        ]),
        ("feature", [("name", "dark_mode"), ("enabled", "true")], None),
        ("feature", [("name", "beta-search"), ("enabled", "false")], None),
        ("logging", [("level", r.choice(["INFO", "DEBUG", "WARN"]))], [("file", [], ["/var/log/app.log"])]),
    ])]  # fmt: skip


def _xml_catalog(r: random.Random) -> list:
    books = []
    for _ in range(r.randint(2, 3)):
        first, last = _person(r)
        books.append(("book", [("id", f"bk{r.randint(100, 999)}"), ("lang", r.choice(["en", "fr", "ja"]))], [
            ("author", [], [f"{last}, {first}"]),
            ("title", [], [r.choice(["XML Developer's Guide", "Midnight Rain", "Les Misérables", "吾輩は猫である"])]),
            ("price", [("currency", "EUR")], [f"{_money(r, 5, 60):.2f}"]),
            ("description", [], ["A former architect battles corporate zombies &amp; an evil sorceress &#169; 2000."]),
        ]))  # fmt: skip
    return [("catalog", [], books)]


def _xml_svg(r: random.Random) -> list:
    shapes = [("rect", [("x", str(r.randint(0, 50))), ("y", str(r.randint(0, 50))), ("width", "120"), ("height", "80"),
               ("fill", "#ff7f50")], None),
              ("circle", [("cx", "150"), ("cy", "100"), ("r", str(r.randint(10, 60))), ("stroke", "black"),
               ("stroke-width", "2")], None),
              ("text", [("x", "10"), ("y", "190"), ("font-family", "Verdana")], ["Total: 42 &#x20AC;"])]  # fmt: skip
    return [("svg", [("xmlns", "http://www.w3.org/2000/svg"), ("width", "200"), ("height", "200"), ("viewBox", "0 0 200 200")],
             shapes)]  # fmt: skip


def _xml_message(r: random.Random) -> list:
    first, _ = _person(r)
    order = r.randint(1000, 9999)
    return [("message", [("lang", "en"), ("priority", r.choice(["low", "normal", "high"]))], [
        ("subject", [], [f"Order #{order} shipped"]),
        ("body", [("format", "xhtml")], [
            ("p", [], [f"Hello {first}, your order ", ("b", [], [f"#{order}"]), ", placed on ",
                       ("i", [], [_date(r)]), ", has shipped &#x2014; track it ",
                       ("a", [("href", f"https://example.com/track?o={order}&amp;src=mail")], ["here"]), "."]),
            ("p", [], ["Questions? Reply to this e-mail &amp; we&apos;ll help."]),
        ]),
    ])]  # fmt: skip


def _render_xml(nodes: list, r: random.Random, pretty: bool, depth: int = 0) -> str:
    out = []
    pad = "\n" + "  " * depth if pretty else ""
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
            continue
        name, attrs, children = node
        if name == "!--":
            out.append(f"{pad}<!--{attrs}-->")
            continue
        quote = "'" if r.random() < 0.2 else '"'
        attr_text = "".join(f" {k}={quote}{v}{quote}" for k, v in attrs)
        if children is None:
            out.append(f"{pad}<{name}{attr_text}{' ' if r.random() < 0.3 else ''}/>")
        elif any(isinstance(c, str) for c in children):  # text or mixed content: printed as is
            out.append(f"{pad}<{name}{attr_text}>{_render_xml(children, r, False)}</{name}>")
        else:
            inner = _render_xml(children, r, pretty, depth + 1)
            out.append(f"{pad}<{name}{attr_text}>{inner}{pad}</{name}>")
    return "".join(out)


def make_xml(r: random.Random, i: int) -> str:
    """Mostly compact documents: whitespace after a close tag (pretty printing) is outside xml.lark's
    LALR language (Lark and guided both refuse it, see the README); every fourth document is
    pretty-printed anyway, so that the skip notes show when the grammar accepts them."""
    builders = [_xml_order, _xml_feed, _xml_config, _xml_catalog, _xml_svg, _xml_message]
    pretty = i % 4 == 3
    body = _render_xml(builders[i % len(builders)](r), r, pretty).lstrip("\n")
    head = '<?xml version="1.0" encoding="UTF-8"?>\n' if i % 2 == 0 else ""
    if i % 3 == 1:
        head += "<!-- exported by backoffice v2.3 -->\n"
    return head + body + ("\n" if i % 2 == 0 else "")


TABLES = {
    "users": ["id", "name", "email", "country", "created_at", "active", "age"],
    "orders": ["id", "user_id", "total", "status", "created_at", "discount"],
    "products": ["id", "name", "price", "category", "stock"],
    "order_items": ["order_id", "product_id", "quantity", "unit_price"],
}


def make_sql(r: random.Random, i: int) -> str:
    lower = i % 4 == 3
    k = (lambda s: s.lower()) if lower else (lambda s: s)  # noqa: E731
    nl = "\n" if i % 3 == 1 else " "
    country = r.choice(["FR", "DE", "JP", "BR"])
    n = r.randint(1, 100)
    limit = r.choice([5, 10, 20, 50, 100])
    templates = [
        f"{k('SELECT')} id, name, email {k('FROM')} users {k('WHERE')} active = 1 {k('AND')} country = '{country}'"
        f"{nl}{k('ORDER BY')} created_at {k('DESC')} {k('LIMIT')} {limit};",
        f"{k('SELECT')} u.id, u.name, {k('COUNT')}(o.id) {k('AS')} order_count, {k('SUM')}(o.total) {k('AS')} revenue"
        f"{nl}{k('FROM')} users {k('AS')} u{nl}{k('LEFT JOIN')} orders {k('AS')} o {k('ON')} o.user_id = u.id"
        f"{nl}{k('WHERE')} u.created_at >= '2024-01-01'{nl}{k('GROUP BY')} u.id, u.name"
        f"{nl}{k('HAVING')} {k('COUNT')}(o.id) > {n % 10 + 1}{nl}{k('ORDER BY')} revenue {k('DESC')}{nl}{k('LIMIT')} {limit};",
        f"{k('SELECT')} p.name, p.price * 1.2 {k('AS')} gross_price, p.stock {k('FROM')} products {k('AS')} p"
        f" {k('WHERE')} p.category {k('IN')} ('books', 'games', 'toys') {k('AND')} p.stock > 0 {k('ORDER BY')} p.price {k('ASC')};",
        f"{k('SELECT')} {k('DISTINCT')} country {k('FROM')} users {k('WHERE')} email {k('LIKE')} '%@example.com'"
        f" {k('AND')} name {k('IS NOT NULL')};",
        f"{k('SELECT')} o.id, o.total - o.discount {k('AS')} net, o.status{nl}{k('FROM')} orders {k('AS')} o"
        f"{nl}{k('INNER JOIN')} users {k('AS')} u {k('ON')} u.id = o.user_id{nl}{k('WHERE')} (o.status = 'shipped' {k('OR')}"
        f" o.status = 'delivered') {k('AND')} {k('NOT')} u.active = 0{nl}{k('LIMIT')} {limit}",
        f"{k('SELECT')} * {k('FROM')} orders {k('WHERE')} total <> 0 {k('AND')} user_id {k('NOT IN')} ({n}, {n + 7}, {n + 19});",
        f"{k('SELECT')} category, {k('AVG')}(price) {k('AS')} avg_price, {k('MAX')}(price) {k('AS')} max_price, {k('COUNT')}(*)"
        f"{nl}{k('FROM')} products{nl}{k('GROUP BY')} category{nl}{k('HAVING')} {k('AVG')}(price) < {n}.5{nl}"
        f"{k('ORDER BY')} avg_price {k('DESC')}, category;",
        f"{k('SELECT')} oi.order_id, {k('SUM')}(oi.quantity * oi.unit_price) {k('AS')} amount{nl}{k('FROM')} order_items {k('AS')} oi"
        f"{nl}{k('JOIN')} products {k('AS')} p {k('ON')} p.id = oi.product_id {k('AND')} p.stock >= {n}"
        f"{nl}{k('GROUP BY')} oi.order_id{nl}{k('ORDER BY')} amount {k('DESC')}{nl}{k('LIMIT')} {limit};",
        f"{k('SELECT')} name {k('FROM')} users {k('WHERE')} name {k('LIKE')} 'O''Br%' {k('OR')} (age >= {n % 50 + 18}"
        f" {k('AND')} age <= {n % 50 + 40} {k('AND')} country != '{country}');",
        f"{k('SELECT')} {k('LOWER')}(email) {k('AS')} email, {k('COALESCE')}(country, 'unknown') {k('AS')} country"
        f" {k('FROM')} users {k('WHERE')} created_at < '2023-06-30' {k('AND')} active = 1 {k('ORDER BY')} 1 {k('LIMIT')} {limit};",
        f"{k('SELECT')} u.country, {k('COUNT')}(*) {k('AS')} n{nl}{k('FROM')} users {k('AS')} u{nl}{k('RIGHT JOIN')} orders {k('AS')} o"
        f" {k('ON')} o.user_id = u.id{nl}{k('WHERE')} o.total / 100 > {n} {k('AND')} o.status {k('IS NULL')}{nl}{k('GROUP BY')} u.country;",
    ]  # fmt: skip
    return templates[i % len(templates)]


def _number(r: random.Random) -> str:
    kind = r.random()
    if kind < 0.5:
        return str(r.randint(0, 999))
    if kind < 0.8:
        return f"{r.uniform(0, 100):.{r.randint(1, 3)}f}"
    if kind < 0.9:
        return f"{r.randint(1, 9)}.{r.randint(0, 99)}e{r.choice(['', '-', '+'])}{r.randint(1, 12)}"
    return f".{r.randint(1, 99)}"


def _arith(r: random.Random, depth: int, space: str) -> str:
    if depth <= 0 or r.random() < 0.25:
        return _number(r)
    kind = r.random()
    if kind < 0.12:
        return "-" + _arith(r, depth - 1, space)
    if kind < 0.3:
        return "(" + _arith(r, depth - 1, space) + ")"
    op = r.choice("+-*/")
    return f"{_arith(r, depth - 1, space)}{space}{op}{space}{_arith(r, depth - 1, space)}"


def make_arithmetic(r: random.Random, i: int) -> str:
    space = " " if i % 3 else ""
    for _ in range(100):
        s = _arith(r, 4 + i % 3, space)
        if 15 <= len(s) <= 120:
            return s
    return s


def _tool_args(r: random.Random, i: int) -> tuple[str, dict]:
    first, last = _person(r)
    tools = [
        ("get_weather", {"city": r.choice(CITIES), "days": r.randint(1, 7), "units": [r.choice(["c", "f"])]}),
        ("search_flights", {"origin": r.choice(["CDG", "FRA", "NRT"]), "destination": r.choice(["JFK", "GRU", "LOS"]),
                            "date": _date(r), "passengers": r.randint(1, 4), "cabin": "economy", "flexible": r.random() < 0.5}),
        ("send_email", {"to": [_email(first, last, r)], "subject": "Re: \"Q3\" report",
                        "body": f"Hi {first},\nplease find the figures attached.\nBest, Łukasz", "cc": None}),
        ("create_calendar_event", {"title": "Sprint review", "start": "2024-09-03T14:00:00+02:00",
                                   "duration_minutes": r.choice([30, 45, 60]), "attendees": [first, r.choice(FIRST)],
                                   "reminders": {"email": 1440, "popup": 10}, "all_day": False}),
        ("convert_currency", {"amount": _money(r, 1, 5000), "from_currency": "USD",
                              "to_currency": r.choice(["EUR", "JPY", "BRL"])}),
        ("search_products", {"query": "wireless headphones", "max_price": r.randint(50, 300),
                             "filters": {"brand": ["Sony", "Bose"], "in_stock": True}, "sort": "rating", "page": 1}),
        ("run_sql", {"query": f"SELECT id FROM users WHERE country = '{r.choice(['FR', 'DE'])}'", "timeout_s": 30.0}),
        ("translate", {"text": "Où est la gare ? 駅はどこですか", "source": "fr", "target": r.choice(["ja", "en"])}),
        ("set_thermostat", {"room": "living_room", "temperature": round(r.uniform(17, 24), 1), "mode": "heat"}),
        ("get_stock_price", {"symbol": r.choice(["AAPL", "MSFT", "NVDA"]), "exchange": "NASDAQ", "include_history": False,
                             "range_days": -1}),
    ]  # fmt: skip
    return tools[i % len(tools)]


def _py_literal(v: Any, r: random.Random) -> str:
    if v is None or isinstance(v, bool):
        return repr(v)
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return repr(v) if r.random() < 0.3 else json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_py_literal(x, r) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_py_literal(k, r)}: {_py_literal(x, r)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def make_python_call(r: random.Random, i: int) -> str:
    name, args = _tool_args(r, i)
    parts = [f"{k}={_py_literal(v, r)}" for k, v in args.items()]
    trailing = "," if i % 5 == 4 else ""
    return f"{name}({', '.join(parts)}{trailing})"


def make_tool_call(r: random.Random, i: int) -> str:
    name, args = _tool_args(r, i + 3)
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=i % 4 == 3, indent=2 if i % 3 == 2 else None)
    sep = "\n" if i % 2 else ""
    return f"<tool_call>{sep}{body}{sep}</tool_call>"


MAKERS: dict[str, Callable[[random.Random, int], str]] = {
    "json": make_json,
    "xml": make_xml,
    "sql": make_sql,
    "arithmetic": make_arithmetic,
    "python_call": make_python_call,
    "tool_call": make_tool_call,
}


def make_documents(name: str, n: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{name}")
    return [MAKERS[name](rng, i) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# Statistics and formatting


def summary(values: list[int]) -> dict[str, float]:
    return {
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": (max(values) / 1000 if values else float("nan")),
    }


def fmt4(s: dict[str, float] | None) -> str:
    if not s:
        return "–"
    return " / ".join(fmt(s[q]) for q in ("p50", "p95", "p99", "max"))


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or a != a or b != b or b == 0:
        return None
    return a / b


def allowed(words: np.ndarray, token: int) -> bool:
    return bool((int(words[token >> 5]) >> (token & 31)) & 1)


def bits(words: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little"))


# ---------------------------------------------------------------------------------------------
# Documents: checked with Lark and with guided's matcher


def check_documents(
    name: str, text: str, texts: list[str], tokenizer, vocab
) -> tuple[list[str], list[list[int]], list[str]]:
    """Keep the documents that Lark parses and guided's matcher walks (tokenizer's own tokenization).

    Both checks run on every document, so a skip note says which of the two refused it.
    """
    parser = lark.Lark(text, parser="lalr", lexer="contextual")
    grammar = guided.compile(guided.Grammar(name), vocab, cache=False)
    kept, docs, skipped = [], [], []
    eos = min(vocab.eos_token_ids)
    for d, s in enumerate(texts):
        reasons = []
        try:
            parser.parse(s)
        except lark.exceptions.LarkError as e:
            reasons.append(f"Lark: {type(e).__name__}: {str(e).splitlines()[0][:110]}")
        ids = list(tokenizer.encode(s, add_special_tokens=False))
        if b"".join(vocab.token_bytes[i] for i in ids) != s.encode("utf-8"):
            reasons.append("its tokens do not spell it back")
        else:
            m = grammar.matcher()
            try:
                for t in ids:
                    m.advance(t)
                m.advance(eos)
            except guided.ConstraintViolation as e:
                reasons.append(f"guided: {e}")
        if reasons:
            skipped.append(f"doc {d} refused by " + "; ".join(reasons))
            continue
        kept.append(s)
        docs.append(ids)
    return kept, docs, skipped


# ---------------------------------------------------------------------------------------------
# guided


def masks_computed(g) -> int:
    """Masks the grammar has computed so far (the Python engine counts them; the native core does
    not: 0 there)."""
    stats = getattr(g, "stats", None)
    return stats.states_computed if stats is not None else 0


def walk_guided(grammar_for_doc: Callable[[], Any], docs: list[list[int]], bitmask, eos: int, profiler=None):
    """Time fill_bitmask + advance at every step (the EOS step's mask included).

    ``grammar_for_doc`` gives the grammar of each document: a fresh one (cold) or a shared one (warm).
    Also counts steps whose mask does not allow the document's own token (should be none).
    ``profiler`` (a cProfile.Profile) runs during the walks only, not the grammar compiles.
    """
    mask_ns: list[int] = []
    adv_ns: list[int] = []
    states_computed = 0
    refused = 0
    words = bitmask.numpy()[0]
    for ids in docs:
        g = grammar_for_doc()
        before = masks_computed(g)
        m = g.matcher()
        if profiler is not None:
            profiler.enable()
        with gc_paused():
            for t in (*ids, eos):
                t0 = perf_ns()
                m.fill_bitmask(bitmask, 0)
                t1 = perf_ns()
                m.advance(t)
                t2 = perf_ns()
                mask_ns.append(t1 - t0)
                if t != eos:  # advance times cover text tokens only
                    adv_ns.append(t2 - t1)
                refused += not allowed(words, t)
        if profiler is not None:
            profiler.disable()
        states_computed += masks_computed(g) - before
    return mask_ns, adv_ns, states_computed, refused


def bench_guided(name: str, vocab, docs: list[list[int]], eos: int, repeat: int, profilers=None) -> dict[str, Any]:
    """Compile (median of ``repeat``), cold walks, warm walks; ``profilers`` = (compile, cold walks) or None."""
    spec = guided.Grammar(name)
    gc.collect()
    compile_ns = []
    for _ in range(repeat):
        with gc_paused():
            t0 = perf_ns()
            g = guided.compile(spec, vocab, cache=False)
            compile_ns.append(perf_ns() - t0)
    if profilers is not None:
        profilers[0].enable()
        guided.compile(spec, vocab, cache=False)
        profilers[0].disable()
    bitmask = allocate_bitmask(1, vocab.size)

    fresh = lambda: guided.compile(spec, vocab, cache=False)  # noqa: E731
    cold_mask, cold_adv, cold_states, cold_refused = walk_guided(
        fresh, docs, bitmask, eos, profilers[1] if profilers is not None else None
    )

    shared = guided.compile(spec, vocab, cache=False)
    gc.collect()  # before the untimed pass: a collection right before timing slows the next steps
    walk_guided(lambda: shared, docs, bitmask, eos)  # first pass: computes every visited mask
    warm_mask, warm_adv, _, _ = walk_guided(lambda: shared, docs, bitmask, eos)
    return {
        "lr_states": g.ir.num_states,
        "lexer_states": int(g.lexers.size) if hasattr(g, "lexers") else int(g._native.lexer_states),
        "terminals": len(g.ir.terminals),
        "compile_ms": statistics.median(compile_ns) / 1e6,
        "compile_ns": compile_ns,
        "cold_masks_computed_per_doc": cold_states / max(1, len(docs)),
        "cold_steps_refusing_own_token": cold_refused,
        "cold_mask_us": summary(cold_mask),
        "cold_advance_us": summary(cold_adv),
        "warm_mask_us": summary(warm_mask),
        "warm_advance_us": summary(warm_adv),
        "cold_mask_ns": cold_mask,
        "cold_advance_ns": cold_adv,
        "warm_mask_ns": warm_mask,
        "warm_advance_ns": warm_adv,
        "masks_computed_total": masks_computed(shared),
        "grammar": shared,
    }


# ---------------------------------------------------------------------------------------------
# llguidance


class LLGuidance:
    """llguidance's tokenizer built from the same HF tokenizer, or the reason it is unavailable."""

    def __init__(self, tokenizer, vocab: guided.Vocabulary, enabled: bool = True):
        self.error: str | None = None
        self.version = ""
        self.build_ms = float("nan")
        self.mismatches = 0
        if not enabled:
            self.error = "disabled (--no-llguidance)"
            return
        try:
            import importlib.metadata

            import llguidance
            import llguidance.hf

            self.llg = llguidance
            self.version = importlib.metadata.version("llguidance")
        except Exception as e:  # noqa: BLE001 - any import failure just disables the column
            self.error = f"not installed ({type(e).__name__}: {e})"
            return
        try:
            t0 = perf_ns()
            # Both engines get the same end ids: guided allows every EOS id of the tokenizer
            # (<|endoftext|> 0 and <|im_end|> 2 for SmolLM2), llguidance only eos_token_id by default.
            self.tok = llguidance.hf.from_tokenizer(tokenizer, eos_token=sorted(vocab.eos_token_ids))
            self.build_ms = (perf_ns() - t0) / 1e6
        except Exception as e:  # noqa: BLE001
            self.error = f"error building its tokenizer: {type(e).__name__}: {e}"
            return
        # Same token bytes as guided for every text token?
        for i in range(vocab.size):
            if i in vocab.special_token_ids or self.tok.is_special_token(i):
                continue
            if self.tok.decode_bytes([i]) != vocab.token_bytes[i]:
                self.mismatches += 1

    def grammar_text(self, name: str) -> tuple[str, list[str]]:
        text = (GRAMMARS_DIR / f"{name}.lark").read_text()
        notes = []
        for old, new, why in LLGUIDANCE_ADAPTATIONS.get(name, []):
            if old in text:
                text = text.replace(old, new)
                notes.append(f"{old!r} → {new!r} ({why})")
        return text, notes

    def matcher(self, grammar: str):
        m = self.llg.LLMatcher(self.tok, grammar, log_level=0)
        if m.is_error():
            raise ValueError(m.get_error())
        return m

    def bench(self, name: str, docs: list[list[int]], words: int, repeat: int, eos: int) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        text, adaptations = self.grammar_text(name)
        try:
            compile_ns = []
            for _ in range(repeat):
                with gc_paused():
                    t0 = perf_ns()
                    grammar = self.llg.LLMatcher.grammar_from_lark(text)
                    m = self.matcher(grammar)
                    compile_ns.append(perf_ns() - t0)
            warnings = m.get_grammar_warnings()
        except Exception as e:  # noqa: BLE001
            return {"error": f"{type(e).__name__}: {str(e)[:200]}", "adaptations": adaptations}
        bitmask = torch.zeros((1, words), dtype=torch.int32)
        ptr, nbytes = bitmask.data_ptr(), bitmask.numel() * 4
        mask_ns: list[int] = []
        adv_ns: list[int] = []
        refused: list[str] = []  # documents llguidance refused: timed up to the refused token
        gc.collect()
        for _pass in range(2):  # first pass warms the process (allocator, code caches); the second is timed
            mask_ns.clear()
            adv_ns.clear()
            refused.clear()
            for d, ids in enumerate(docs):
                m = self.matcher(grammar)  # a fresh matcher per document, as per request
                with gc_paused():
                    for k, t in enumerate((*ids, eos)):
                        t0 = perf_ns()
                        m.unsafe_compute_mask_ptr(ptr, nbytes)
                        t1 = perf_ns()
                        ok = m.consume_token(t)
                        t2 = perf_ns()
                        mask_ns.append(t1 - t0)
                        if t != eos:
                            adv_ns.append(t2 - t1)
                        if not ok:
                            refused.append(f"doc {d} step {k}: {m.get_error()[:160]}")
                            break
        return {
            "compile_ms": statistics.median(compile_ns) / 1e6,
            "compile_ns": compile_ns,
            "warnings": warnings,
            "adaptations": adaptations,
            "refused_docs": list(refused),
            "mask_us": summary(mask_ns),
            "advance_us": summary(adv_ns),
            "mask_ns": mask_ns,
            "advance_ns": adv_ns,
            "grammar": grammar,
        }

    def compare(self, grammar: str, shared, docs: list[list[int]], vocab, eos: int, limit: int) -> dict[str, Any]:
        """Allowed sets of both engines at every step of the first ``limit`` documents (EOS step included).

        Differing steps are counted by where they happen: the first step (nothing generated yet),
        the EOS step (the whole document generated) or inside the document.
        """
        words = (vocab.size + 31) // 32
        theirs = torch.zeros((1, words), dtype=torch.int32)
        ours = allocate_bitmask(1, vocab.size)
        ptr = theirs.data_ptr()
        steps = differing = only_guided_total = only_llg_total = 0
        where = {"first": 0, "inside": 0, "eos": 0}
        examples: list[dict[str, Any]] = []
        rejected: list[int] = []
        for d, ids in enumerate(docs[:limit]):
            m = shared.matcher()
            lm = self.matcher(grammar)
            for k, t in enumerate((*ids, eos)):
                m.fill_bitmask(ours, 0)
                lm.unsafe_compute_mask_ptr(ptr, words * 4)
                a = ours.numpy()[0]
                b = theirs.numpy()[0]
                steps += 1
                if not np.array_equal(a, b):
                    differing += 1
                    kind = "first" if k == 0 else "eos" if k == len(ids) else "inside"
                    where[kind] += 1
                    only_g = bits(a & ~b)
                    only_l = bits(b & ~a)
                    only_guided_total += len(only_g)
                    only_llg_total += len(only_l)
                    if len(examples) < 60:
                        prefix = b"".join(vocab.token_bytes[i] for i in ids[:k]).decode("utf-8", "replace")
                        examples.append({
                            "doc": d, "step": k, "where": kind, "prefix_tail": prefix[-40:],
                            "next_token": vocab.token_text(t) if k < len(ids) else "<eos>",
                            "only_guided": len(only_g), "only_guided_ex": [vocab.token_text(int(i)) for i in only_g[:8]],
                            "only_llguidance": len(only_l), "only_llguidance_ex": [vocab.token_text(int(i)) for i in only_l[:8]],
                        })  # fmt: skip
                m.advance(t)
                if not allowed(b, t) or not lm.consume_token(t):
                    rejected.append(d)
                    break
        return {
            "docs": min(limit, len(docs)),
            "steps": steps,
            "differing_steps": differing,
            "differing_where": where,
            "tokens_only_guided_allows": only_guided_total,
            "tokens_only_llguidance_allows": only_llg_total,
            "examples": examples,
            "llguidance_rejected_docs": rejected,
        }


def _example(e: dict[str, Any], n: int = 4) -> str:
    def show(xs: list[str], total: int) -> str:
        return "[" + ", ".join(repr(x) for x in xs[:n]) + (", ..." if total > n else "") + "]"

    after = f"after …{e['prefix_tail'][-24:]!r}" if e["step"] else "at the start"
    return (f"doc {e['doc']} step {e['step']} {after} (next {e['next_token']!r}): "
            f"{e['only_guided']} only guided {show(e['only_guided_ex'], e['only_guided'])}, "
            f"{e['only_llguidance']} only llguidance {show(e['only_llguidance_ex'], e['only_llguidance'])}")  # fmt: skip


def _pick_examples(examples: list[dict[str, Any]], inside: int = 3) -> list[dict[str, Any]]:
    """The first example at the start, the first few inside documents, the first at EOS."""
    out = [e for e in examples if e["where"] == "first"][:1]
    out += [e for e in examples if e["where"] == "inside"][:inside]
    out += [e for e in examples if e["where"] == "eos"][:1]
    return out


# ---------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--grammar", action="append", default=[], metavar="NAME", choices=GRAMMARS,
                        help=f"only this grammar (repeatable): {', '.join(GRAMMARS)}")
    parser.add_argument("--docs", type=int, default=16, help="documents per grammar (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document generators")
    parser.add_argument("--repeat", type=int, default=3, help="compile timings per grammar; the median is shown")
    parser.add_argument("--compare", type=int, default=4, metavar="N",
                        help="documents per grammar whose masks are compared step by step (default 4)")
    parser.add_argument("--json", metavar="PATH", help="write the raw results (per-step timings, documents) here")
    parser.add_argument("--no-llguidance", action="store_true", help="skip llguidance even when installed")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile guided's cold walks and one compile per grammar; print the hot spots "
                             "(cold timings are then inflated)")
    parser.add_argument("--first-compile", action="store_true",
                        help="time each grammar's first compile in fresh processes, with and without the on-disk "
                             "IR cache, and nothing else")
    parser.add_argument("--first-compile-child", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)  # fmt: skip

    torch.set_num_threads(1)
    names = [g for g in GRAMMARS if not args.grammar or g in args.grammar]
    if args.first_compile_child:
        return first_compile_child(args.first_compile_child)
    if args.first_compile:
        return first_compile(names, args.repeat)

    t0 = perf_ns()
    tokenizer = load_tokenizer()
    tok_ms = (perf_ns() - t0) / 1e6
    t0 = perf_ns()
    vocab = guided.Vocabulary.from_tokenizer(tokenizer)
    vocab_ms = (perf_ns() - t0) / 1e6
    t0 = perf_ns()
    table = TokenTable.of(vocab)
    table_ms = (perf_ns() - t0) / 1e6
    # The first grammar of a vocabulary also builds per-vocabulary helpers (first-byte masks, the
    # trie as Python lists): one short walk triggers them, before anything is timed.
    t0 = perf_ns()
    warmup = guided.Grammar('start: "[" NUMBER ("," NUMBER)* "]"\n%import common.NUMBER')
    wm = guided.compile(warmup, vocab, cache=False).matcher()
    for t in tokenizer.encode("[1,22,333]", add_special_tokens=False):
        wm.mask()
        wm.advance(t)
    first_ms = (perf_ns() - t0) / 1e6
    eos = int(tokenizer.eos_token_id)
    words = (vocab.size + 31) // 32
    llg = LLGuidance(tokenizer, vocab, enabled=not args.no_llguidance)

    print("# Grammar (Lark) masks: guided vs llguidance, SmolLM2 tokenizer\n")
    print(f"- python {platform.python_version()}, torch {torch.__version__} (1 thread), numpy {np.__version__}, "
          f"lark {lark.__version__}, {platform.machine()} ({platform.processor() or 'cpu'})")  # fmt: skip
    print(f"- tokenizer {Path(vocab.name).name or vocab.name}: {vocab.size} ids, EOS {sorted(vocab.eos_token_ids)}; "
          f"load {tok_ms:.0f} ms, guided Vocabulary {vocab_ms:.0f} ms")  # fmt: skip
    print(f"- guided token table (once per vocabulary, shared by all grammars): {table_ms:.0f} ms, "
          f"{table.num_nodes} trie nodes; first grammar compile + a short walk after it: {first_ms:.0f} ms")  # fmt: skip
    if llg.error:
        print(f"- llguidance: {llg.error}")
    else:
        print(f"- llguidance {llg.version}: LLTokenizer built in {llg.build_ms:.0f} ms from the HF tokenizer "
              f"(EOS {llg.tok.eos_tokens}); {llg.mismatches} text tokens whose bytes differ from guided's")  # fmt: skip
    compared = "" if llg.error else f"; masks compared on the first {args.compare} documents of each grammar"
    print(f"- {args.docs} documents per grammar (seed {args.seed}), every step timed, EOS step included{compared}\n")
    sys.stdout.flush()

    profilers = (cProfile.Profile(), cProfile.Profile()) if args.profile else None
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        started = time.perf_counter()
        text = (GRAMMARS_DIR / f"{name}.lark").read_text()
        texts, docs, skipped = check_documents(name, text, make_documents(name, args.docs, args.seed), tokenizer, vocab)
        if not docs:
            print(f"  {name}: skipped (no valid documents)", file=sys.stderr)
            results[name] = {"documents": [], "skipped": skipped}
            continue
        g = bench_guided(name, vocab, docs, eos, args.repeat, profilers)
        o = llg.bench(name, docs, words, args.repeat, eos) if not llg.error else {"error": llg.error}
        agree = agree_nf = None
        if "grammar" in o:
            try:
                agree = llg.compare(o["grammar"], g["grammar"], docs, vocab, eos, args.compare)
                # The same with llguidance's forcing off (its masks otherwise offer only the
                # tokenizer's own tokenization of bytes the grammar forces).
                no_forcing = llg.llg.LLMatcher.grammar_from_lark(NO_FORCING + llg.grammar_text(name)[0])
                agree_nf = llg.compare(no_forcing, g["grammar"], docs, vocab, eos, args.compare)
            except Exception as e:  # noqa: BLE001
                agree = {"error": f"{type(e).__name__}: {e}"}
        o.pop("grammar", None)
        g.pop("grammar")
        results[name] = {
            "documents": texts,
            "tokens": docs,
            "skipped": skipped,
            "mean_tokens": statistics.mean(len(d) for d in docs),
            "guided": g,
            "llguidance": o,
            "agreement": agree,
            "agreement_no_forcing": agree_nf,
            "seconds": time.perf_counter() - started,
        }
        print(f"  {name}: {len(docs)} docs, {time.perf_counter() - started:.1f} s", file=sys.stderr)

    print_table(results)
    if profilers:
        for title, profiler, top in (
            ("cold walks: fill_bitmask + advance on a fresh grammar per document", profilers[1], 25),
            ("one compile per grammar", profilers[0], 15),
        ):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(top)
            print(f"\n## cProfile of guided: {title}\n\n```")
            print(out.getvalue().strip())
            print("```")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "tokenizer": vocab.name,
                    "vocab_size": vocab.size,
                    "token_table_ms": table_ms,
                    "first_compile_ms": first_ms,
                    "llguidance": llg.version or llg.error,
                    "docs": args.docs,
                    "seed": args.seed,
                    "grammars": results,
                },
                f,
                indent=1,
                ensure_ascii=False,
            )
        print(f"\nraw results written to {args.json}")
    return 0


def first_compile_child(name: str) -> int:
    """In a fresh process: the vocabulary, then a regex compiled and walked (untimed: what any
    first constraint pays once per process, such as numpy's lazily imported parts), then the
    grammar's compile, timed; prints ms."""
    vocab = guided.Vocabulary.from_tokenizer(load_tokenizer())
    TokenTable.of(vocab)
    warmup = guided.compile(guided.Regex("[0-9]+(,[0-9]+)*"), vocab).matcher()
    for token in load_tokenizer().encode("12,345", add_special_tokens=False):
        warmup.mask()
        warmup.advance(token)
    gc.collect()
    with gc_paused():
        t0 = perf_ns()
        guided.compile(guided.Grammar(name), vocab)
        elapsed = perf_ns() - t0
    print(json.dumps({"ms": elapsed / 1e6}))
    return 0


def first_compile(names: list[str], repeat: int) -> int:
    """The first-compile table: fresh processes with the on-disk IR cache off, and filled."""
    from guided import irstore

    def child(name: str, cache: str) -> float:
        env = dict(os.environ, GUIDED_IR_CACHE=cache)
        out = subprocess.run([sys.executable, __file__, "--first-compile-child", name], env=env, check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])["ms"]

    print("# First compile of each shipped grammar in a fresh process (SmolLM2 vocabulary)\n")
    print(f"- python {platform.python_version()}, lark {lark.__version__}, {platform.machine()}; median of "
          f"{repeat} processes each; before the timed compile each process loads the vocabulary and its token "
          f"table and compiles and walks a regex (one-off process costs)")
    print("- without: `GUIDED_IR_CACHE=0` (Lark's LALR analysis, terminal automata, IR); with: the IR read back "
          "from the on-disk cache an earlier process filled (read, checksum, parse, validate), then the engine\n")
    print("| grammar | without disk cache, ms | with disk cache, ms | speed-up | cache entry, bytes |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="guided-bench-ir-") as folder:
        for name in names:
            cold = [child(name, "0") for _ in range(repeat)]
            child(name, folder)  # fills the cache
            warm = [child(name, folder) for _ in range(repeat)]
            key = irstore.spec_key(guided.Grammar(name))
            entry = Path(folder) / "v1" / f"{key}{irstore.SUFFIX}"
            size = entry.stat().st_size if entry.exists() else 0
            c, w = statistics.median(cold), statistics.median(warm)
            print(f"| {name} | {fmt(c)} | {fmt(w)} | {c / w:.0f}× | {size} |")
            sys.stdout.flush()
    return 0


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = [
        "grammar", "LR / lexer states", "docs", "tok/doc", "compile ms guided / llg",
        "mask µs guided cold p50 / p95 / p99 / max", "mask µs guided warm p50 / p95 / p99 / max",
        "mask µs llguidance p50 / p95 / p99 / max", "guided / llg cold p50 · p99", "guided / llg warm p50 · p99",
        "advance µs p50 guided warm / llg", "steps where masks differ (llg default · no_forcing)",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    cols: dict[str, list[float | None]] = {}

    def col(key: str, value: float | None) -> float | None:
        cols.setdefault(key, []).append(value)
        return value

    def xr(key: str, value: float | None) -> str:
        return (fmt(col(key, value)) + "×") if value is not None else "–"

    notes: list[str] = []
    totals = {
        v: {"steps": 0, "differ": 0, "only_guided": 0, "only_llg": 0, "first": 0, "inside": 0, "eos": 0}
        for v in ("default", "no_forcing")
    }  # fmt: skip
    refused = docs_total = 0
    for name, r in results.items():
        if r["skipped"]:
            notes.append(f"- {name}: {len(r['skipped'])} of {len(r['skipped']) + len(r['documents'])} documents "
                         f"skipped; first: {r['skipped'][0][:240]}")  # fmt: skip
        if "guided" not in r:
            continue
        g, o = r["guided"], r["llguidance"]
        ok = "error" not in o
        lm = o["mask_us"] if ok else None
        agree_cells = []
        for variant, key in (("default", "agreement"), ("no_forcing", "agreement_no_forcing")):
            a = r.get(key)
            if a is None:
                agree_cells.append("–")
                continue
            if "error" in a:
                agree_cells.append("error")
                notes.append(f"- {name}: comparison ({variant}) failed: {a['error']}")
                continue
            cell = f"{a['differing_steps']}/{a['steps']}"
            if a["llguidance_rejected_docs"]:
                cell += f" ({len(a['llguidance_rejected_docs'])}/{a['docs']} docs refused)"
            agree_cells.append(cell)
            t = totals[variant]
            t["steps"] += a["steps"]
            t["differ"] += a["differing_steps"]
            t["only_guided"] += a["tokens_only_guided_allows"]
            t["only_llg"] += a["tokens_only_llguidance_allows"]
            for w, n in a["differing_where"].items():
                t[w] += n
            if a["differing_steps"]:
                w = a["differing_where"]
                notes.append(f"- {name} (llguidance {variant}): masks differ at {a['differing_steps']} step(s): "
                             f"{w['first']} at the first step, {w['inside']} inside, {w['eos']} at the EOS step")  # fmt: skip
                for ex in _pick_examples(a["examples"], inside=3 if variant == "default" else 2):
                    notes.append(f"  - {_example(ex)}")
        if g["cold_steps_refusing_own_token"]:
            notes.append(f"- {name}: guided's mask refused the document's own token at "
                         f"{g['cold_steps_refusing_own_token']} steps (a bug)")  # fmt: skip
        if not ok:
            notes.append(f"- {name}: llguidance: {o['error']}")
        else:
            for adaptation in o["adaptations"]:
                notes.append(f"- {name}: grammar adapted for llguidance: {adaptation}")
            for w in o["warnings"][:3]:
                notes.append(f"- {name}: llguidance warning: {w[:200]}")
            if o["refused_docs"]:
                refused += len(o["refused_docs"])
                notes.append(f"- {name}: llguidance refused a token in {len(o['refused_docs'])} of {len(r['tokens'])} "
                             f"documents (timed up to there), first: {o['refused_docs'][0]}")  # fmt: skip
            docs_total += len(r["tokens"])
        for k in ("cold_mask_us", "warm_mask_us"):
            for q in ("p50", "p95", "p99", "max"):
                col(f"{k}.{q}", g[k][q])
        for q in ("p50", "p95", "p99", "max"):
            col(f"llg.{q}", lm[q] if lm else None)
        if ok:
            llg_mask = fmt4(lm) + (" †" if o["refused_docs"] else "")
        else:
            llg_mask = next((w for w in ("not installed", "disabled") if w in o["error"]), f"error: {o['error'][:80]}")
        row = [
            name,
            f"{g['lr_states']} / {g['lexer_states']}",
            str(len(r["tokens"])),
            f"{r['mean_tokens']:.1f}",
            f"{fmt(col('gc', g['compile_ms']))} / {fmt(col('lc', o.get('compile_ms')))}",
            fmt4(g["cold_mask_us"]),
            fmt4(g["warm_mask_us"]),
            llg_mask,
            f"{xr('rc50', ratio(g['cold_mask_us']['p50'], lm and lm['p50']))} · "
            f"{xr('rc99', ratio(g['cold_mask_us']['p99'], lm and lm['p99']))}",
            f"{xr('rw50', ratio(g['warm_mask_us']['p50'], lm and lm['p50']))} · "
            f"{xr('rw99', ratio(g['warm_mask_us']['p99'], lm and lm['p99']))}",
            f"{fmt(col('ga', g['warm_advance_us']['p50']))} / {fmt(col('la', o['advance_us']['p50'] if ok else None))}",
            " · ".join(agree_cells),
        ]
        print("| " + " | ".join(row) + " |")
    if len(cols.get("gc", [])) > 1:

        def m4(prefix: str) -> str:
            return " / ".join(fmt(median(cols.get(f"{prefix}.{q}", []))) for q in ("p50", "p95", "p99", "max"))

        def mx(key: str) -> str:
            v = median(cols.get(key, []))
            return fmt(v) + "×" if v is not None else "–"

        t0, t1 = totals["default"], totals["no_forcing"]
        row = [
            "**median**", "", "",
            fmt(median([r["mean_tokens"] for r in results.values() if "mean_tokens" in r])),
            f"{fmt(median(cols['gc']))} / {fmt(median(cols.get('lc', [])))}",
            m4("cold_mask_us"), m4("warm_mask_us"), m4("llg"),
            f"{mx('rc50')} · {mx('rc99')}", f"{mx('rw50')} · {mx('rw99')}",
            f"{fmt(median(cols['ga']))} / {fmt(median(cols.get('la', [])))}",
            f"{t0['differ']}/{t0['steps']} · {t1['differ']}/{t1['steps']} (total)" if t0["steps"] else "",
        ]  # fmt: skip
        print("| " + " | ".join(row) + " |")

    parts = []
    gw50, gc50 = median(cols.get("warm_mask_us.p50", [])), median(cols.get("cold_mask_us.p50", []))
    if gw50 is not None:
        parts.append(f"guided's mask takes {fmt(gw50)} µs warm (masks cached) and {fmt(gc50)} µs cold (first "
                     f"request) at the median grammar's p50, {fmt(median(cols.get('cold_mask_us.p99', [])))} µs "
                     "cold at p99")  # fmt: skip
    rw50, rc50, rc99 = median(cols.get("rw50", [])), median(cols.get("rc50", [])), median(cols.get("rc99", []))
    if rw50 is not None:
        parts.append(f"guided / llguidance (median over grammars): {fmt(rw50)}× warm at p50, {fmt(rc50)}× cold at "
                     f"p50 and {fmt(rc99)}× cold at p99 (above 1: guided is slower); compile "
                     f"{fmt(median(cols['gc']))} ms vs {fmt(median(cols.get('lc', [])))} ms")  # fmt: skip
    if parts:
        print("\n**Summary**: " + "; ".join(parts) + ".")
    t0 = totals["default"]
    if t0["steps"]:
        t1 = totals["no_forcing"]
        print(
            f"\nAgreement: with llguidance's defaults the masks differ at {t0['differ']} of {t0['steps']} compared "
            f"steps ({t0['first']} first steps, {t0['inside']} inside documents, {t0['eos']} EOS steps); summed over "
            f"those steps, {t0['only_guided']} tokens are allowed only by guided and {t0['only_llg']} only by "
            f"llguidance. With llguidance's forcing off (`%llguidance {{\"no_forcing\": true}}`): {t1['differ']} "
            f"steps ({t1['first']} first, {t1['inside']} inside, {t1['eos']} EOS), {t1['only_guided']} / "
            f"{t1['only_llg']} tokens. llguidance refused {refused} of {docs_total} documents (every document "
            "parses with Lark and is the tokenizer's own tokenization). Ratios are guided's time over llguidance's; "
            "† = llguidance timings cover each refused document up to the refused token."
        )
    if notes:
        print("\nNotes:")
        print("\n".join(notes))


if __name__ == "__main__":
    sys.exit(main())
