"""Regexes (JSON Schema ``pattern``s, full match) for the strings Pydantic's own types accept.

Pydantic's JSON Schema names a format for these types (``uri``, ``email``, ``ipvanyaddress``,
...) whose meaning differs from what Pydantic validates: RFC 3986 allows ``http:`` (Pydantic:
"empty host"), JSON Schema's ``email`` allows ``a@b`` (email-validator: "should have a
period").  `guided.frontends.pydantic` replaces them by these patterns, each with two
properties the tests check: every string it matches is accepted by Pydantic (so generations
validate), and it matches what Pydantic writes for the common values (so ``model_dump_json()``
output is accepted).  Where Pydantic accepts more (hosts with ``!`` or ``{``, IDNA ``xn--``
labels, uppercase schemes), the pattern is stricter: see ``docs/json-schema-coverage.md``.

All patterns are ASCII and use only the regex syntax ECMA-262 and Python share.
"""

from __future__ import annotations

import string

from guided.frontends.jsonschema._formats import _IPV4, _IPV6, _OCTET

def _label(longest: int, first: str = "[A-Za-z0-9]", lower: bool = False) -> str:
    """A DNS label of 1 to ``longest`` letters, digits and inner hyphens, its first character in
    ``first``, with no "--" in its 3rd and 4th places (IDNA's ``xn--``, whose punycode a regex
    cannot check; as `guided.frontends.jsonschema._formats` does)."""
    a, mid = ("[a-z0-9]", "[a-z0-9-]") if lower else ("[A-Za-z0-9]", "[A-Za-z0-9-]")
    return (rf"(?:{first}|{first}{a}|{first}{mid}{a}|{first}{mid}{{2}}{a}"
            rf"|{first}{mid}(?:{a}{mid}|-{a}){mid}{{0,{longest - 5}}}{a})")


_LOWER = string.ascii_lowercase
_LOWER_DIGITS = _LOWER + string.digits


def _cls(chars: str) -> str:
    """A character class of exactly ``chars`` (escaped for both dialects)."""
    return "[" + "".join("\\" + c if c in "\\]^-[" else c for c in sorted(set(chars))) + "]"


def avoid_words(words: set[str], first: str, rest: str, lo: int, hi: int | None) -> str:
    """A regex for the strings whose first character is in ``first`` and others in ``rest``,
    of length ``lo`` to ``hi`` (None: any), that are none of ``words`` (a trie: a string leaves
    the words where its prefix stops being a prefix of one)."""

    def tail(depth: int) -> str:  # any continuation from ``depth`` characters on
        a = max(lo - depth, 0)
        b = "" if hi is None else str(hi - depth)
        return f"{_cls(rest)}{{{a},{b}}}" if (hi is None or hi > depth) else ""

    def node(prefix: str) -> str:
        depth = len(prefix)
        allowed = first if depth == 0 else rest
        nxt = {w[depth] for w in words if w.startswith(prefix) and len(w) > depth}
        alts = []
        if lo <= depth and prefix not in words:
            alts.append("")
        off = "".join(c for c in allowed if c not in nxt)
        if off and (hi is None or depth < hi):
            alts.append(_cls(off) + tail(depth + 1))
        for c in sorted(nxt):
            if hi is None or depth < hi:
                alts.append(_cls(c) + node(prefix + c))
        return "(?:" + "|".join(alts) + ")" if alts else "(?!)"

    return node("")


# --- URLs (WHATWG, as the Rust url crate behind Pydantic parses and writes them) ------------------
# What each part keeps unescaped when Pydantic writes a URL (the WHATWG percent-encode sets), less
# the characters a special scheme reads otherwise ("\\" is "/" in an http path).  "%" is kept as
# written, even when no hex digits follow.
_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))
_USER = _cls(string.ascii_letters + string.digits + "!$%&'()*+,-._~")
_PATH = _cls("".join(c for c in _PRINTABLE if c not in '"#<>?`{}\\/'))
_QUERY_SPECIAL = _cls("".join(c for c in _PRINTABLE if c not in "\"#<>'"))
_QUERY = _cls("".join(c for c in _PRINTABLE if c not in '"#<>'))
_FRAGMENT = _cls("".join(c for c in _PRINTABLE if c not in '"<>`'))
_PORT = r"(?:[0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_USERINFO = rf"(?:(?:{_USER}+(?::{_USER}*)?|:{_USER}+)@)?"
# A domain whose last label starts with a letter: one that ends in a number is read as an IPv4
# address ("a.1" fails, "1.2.3" becomes 1.2.0.3).
_TOP = _label(63, first="[A-Za-z]")
_DOMAIN = rf"(?:{_label(63)}\.)*{_TOP}"
_HOST = rf"(?:{_DOMAIN}|{_IPV4}|\[{_IPV6}\])"
_AFTER_PATH = rf"(?:\?{_QUERY_SPECIAL}*)?(?:#{_FRAGMENT}*)?"
_AFTER_PATH_NS = rf"(?:\?{_QUERY}*)?(?:#{_FRAGMENT}*)?"
SPECIAL_SCHEMES = ("http", "https", "ws", "wss", "ftp", "file")


def url_pattern(schemes: tuple[str, ...] | None, host_required: bool, multi_host: bool = False) -> str:
    """A URL with one of ``schemes`` (None: any scheme, as ``AnyUrl``), as Pydantic accepts and
    writes it: an authority with a host for the special schemes, and for the others an authority
    (host optional unless ``host_required``) or a path.  ``multi_host`` (``PostgresDsn``...):
    one host, and no "," in the user info (Pydantic splits hosts there)."""
    alts = []
    userinfo = _USERINFO.replace(",", "") if multi_host else _USERINFO
    special = [s for s in (schemes or SPECIAL_SCHEMES) if s in SPECIAL_SCHEMES and s != "file"]
    if special:
        alts.append(rf"(?:{'|'.join(special)})://{userinfo}{_HOST}(?::{_PORT})?(?:/{_PATH}*)*{_AFTER_PATH}")
    if (schemes is None or "file" in schemes) and not host_required:
        alts.append(rf"file://(?:{_DOMAIN}|{_IPV4})?(?:/{_PATH}*)*{_AFTER_PATH}")
    others = [s for s in schemes if s not in SPECIAL_SCHEMES] if schemes is not None else None
    if others is None or others:
        name = (avoid_words(set(SPECIAL_SCHEMES), _LOWER, _LOWER_DIGITS + "+-.", 1, None) if others is None
                else "(?:" + "|".join(others) + ")")
        host = _HOST if host_required else f"{_HOST}?"
        alts.append(rf"{name}://{userinfo}{host}(?::{_PORT})?(?:/{_PATH}*)*{_AFTER_PATH_NS}")
        if not host_required:  # no authority: a path that does not start with "//"
            alts.append(rf"{name}:(?:/?{_PATH}+(?:/{_PATH}*)*|/)?{_AFTER_PATH_NS}")
    return "^(?:" + "|".join(alts) + ")$"


# --- email addresses (email-validator, which Pydantic's EmailStr calls) ---------------------------
_ATEXT = _cls(string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-")
# email-validator bounds the local part at 64 characters, labels at 63 and the address at 254;
# guided bounds the shape instead (stricter, no count): at most 3 dot-separated atoms of 16
# characters (50), at most 4 labels of 20 before a top-level label of 2 to 20 letters (104).
_LOCAL = rf"{_ATEXT}{{1,16}}(?:\.{_ATEXT}{{1,16}}){{0,2}}"
_ELABEL = _label(20, first="[a-z0-9]", lower=True)
# The top-level label: letters (every TLD ends with one), none of the special-use names
# email-validator refuses (``x.test``, ``x.localhost``); the domain is written lowercase.
_ETLD = avoid_words({"arpa", "invalid", "local", "localhost", "onion", "test"}, _LOWER, _LOWER, 2, 20)
EMAIL = rf"^{_LOCAL}@(?:{_ELABEL}\.){{1,4}}{_ETLD}$"


# --- IP addresses (Python's ipaddress, which Pydantic's IPvAny* types call) ------------------------
_PREFIX4 = r"(?:[0-9]|[12][0-9]|3[0-2])"
_PREFIX6 = r"(?:[0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])"
IP_ANY_ADDRESS = rf"^(?:{_IPV4}|{_IPV6})$"
IP_ANY_INTERFACE = rf"^(?:{_IPV4}(?:/{_PREFIX4})?|{_IPV6}(?:/{_PREFIX6})?)$"
IPV4_INTERFACE = rf"^{_IPV4}(?:/{_PREFIX4})?$"
IPV6_INTERFACE = rf"^{_IPV6}(?:/{_PREFIX6})?$"




def _ipv4_network() -> str:
    """An IPv4 network as Python's ``ip_network`` (strict) reads it: an address alone (/32), or
    one whose bits past the prefix length are zero, then the length."""
    alts = [rf"{_IPV4}(?:/32)?"]
    for prefix in range(32):
        octets = []
        for i in range(4):
            if 8 * i + 8 <= prefix:
                octets.append(_OCTET)
            elif 8 * i >= prefix:
                octets.append("0")
            else:  # the octet the prefix ends in: a multiple of 2 ** (bits past the prefix)
                octets.append("(?:" + "|".join(map(str, range(0, 256, 2 ** (8 * i + 8 - prefix)))) + ")")
        alts.append(r"\.".join(octets) + f"/{prefix}")
    return "(?:" + "|".join(alts) + ")"


# IPv6 networks (zero host bits in any of the compressed spellings) are not said: IPvAnyNetwork
# is IPv4 networks only (stricter), IPv6Network stays an unknown format.
IPV4_NETWORK = f"^{_ipv4_network()}$"


# --- decimals (Pydantic's Decimal, with max_digits/decimal_places) ---------------------------------

def decimal_pattern(max_digits: int | None, decimal_places: int | None) -> str:
    """The plain (exponent-free) spellings of the decimals with at most ``max_digits`` digits and
    ``decimal_places`` decimals, as Pydantic counts them: on the normalised value (trailing
    zeros of the fraction and leading zeros do not count, an integer's do; "0" is one digit, as
    Pydantic counts it, "0.0" none)."""

    def integer(n: int | None) -> str:  # an integer part of at most n digits (0 is none)
        if n is None:
            return "(?:0|[1-9][0-9]*)"
        return "0" if n == 0 else f"(?:0|[1-9][0-9]{{0,{n - 1}}})"

    def fraction(d: int | None) -> str:  # at most d significant decimals, any trailing zeros
        if d is None:
            return r"(?:\.[0-9]+)?"
        return r"(?:\.0+)?" if d == 0 else rf"(?:\.[0-9]{{1,{d}}}0*)?"

    if max_digits is None and decimal_places is None:  # any decimal, as str(Decimal) too writes it
        body = r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
    elif max_digits is None:
        body = integer(None) + fraction(decimal_places)
    elif decimal_places is not None and decimal_places < max_digits:
        body = integer(max_digits - decimal_places) + fraction(decimal_places)
    elif decimal_places is not None:
        # no integer digit (Pydantic counts the zero of "0" as one, though not that of "0.0"), at
        # most max_digits significant decimals
        body = (rf"0\.(?:[0-9]{{0,{max_digits - 1}}}[1-9]0*|0+)" if max_digits else "(?!)")
    else:  # max_digits alone
        body = "(?:" + "|".join(
            ("0" if w == 0 else f"[1-9][0-9]{{{w - 1}}}") + fraction(max_digits - w)
            for w in range(max_digits + 1)) + ")"
    return f"^-?{body}$"
