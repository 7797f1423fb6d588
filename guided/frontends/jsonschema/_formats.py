"""String ``format``s as regexes over the decoded string (full match).

Each is exact or stricter than the format's RFC (stricter only where the RFC admits rare
spellings; see ``docs/json-schema-coverage.md``): a document these regexes accept is valid.

`UNENFORCED` are the formats the specification defines that guided cannot enforce exactly: they
are refused (validators that assert formats check them).  Any other format name is unknown to
the specification, and validators ignore it: `unknown_formats` finds them in a schema document.
"""

from __future__ import annotations

_YEAR = r"[0-9]{4}"
_LEAP = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_DATE = (rf"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
         rf"|02-(?:0[1-9]|1[0-9]|2[0-8]))|{_LEAP}-02-29)")
_LOCAL_TIME = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
_OFFSET = r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_TIME = rf"{_LOCAL_TIME}{_OFFSET}"
# RFC 3339 appendix A: a unit may only follow the next larger one (no "P1Y2D", no "PT1H2S")
_DUR_TIME = r"T(?:[0-9]+H(?:[0-9]+M(?:[0-9]+S)?)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
_DUR = (rf"P(?:(?:[0-9]+Y(?:[0-9]+M(?:[0-9]+D)?)?|[0-9]+M(?:[0-9]+D)?|[0-9]+D)(?:{_DUR_TIME})?"
        rf"|{_DUR_TIME}|[0-9]+W)")
# An LDH label without "--" in its 3rd and 4th places: those are reserved for IDNA A-labels
# ("xn--"), whose punycode a regex cannot check, so they are refused.  RFC 1123 allows labels of
# 63 characters and names of 253; counting both over every JSON spelling takes too many states,
# so guided bounds the shape instead (stricter): at most 7 labels of at most 35 characters,
# which is never longer than 251.
_A = "[A-Za-z0-9]"


def _label(longest: int) -> str:
    """An LDH label of 1 to ``longest`` characters with no "--" in its 3rd and 4th places."""
    return (rf"(?:{_A}|{_A}{_A}|{_A}[A-Za-z0-9-]{_A}|{_A}[A-Za-z0-9-]{{2}}{_A}"
            rf"|{_A}[A-Za-z0-9-](?:{_A}[A-Za-z0-9-]|-{_A})[A-Za-z0-9-]{{0,{longest - 5}}}{_A})")


_HOSTNAME = rf"{_label(35)}(?:\.{_label(35)}){{0,6}}"
# An email's domain: labels of up to 63 characters, any number of them (RFC 5321 bounds the whole
# address, which the suite does not test and guided does not count).
_DOMAIN = rf"{_label(63)}(?:\.{_label(63)})*"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
_IPV6 = ("(?:" + "|".join([
    rf"(?:{_H16}:){{6}}{_LS32}",
    rf"::(?:{_H16}:){{5}}{_LS32}",
    rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
    rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
    rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
    rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
]) + ")")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_EMAIL = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@(?:{_DOMAIN}|\[{_IPV4}\])"
_PCT = r"%[0-9A-Fa-f]{2}"
# RFC 3986, collected grammar (IP-literals limited to IPv6: IPvFuture is refused, which is stricter)
_UNRESERVED_SUB = r"A-Za-z0-9\-._~!$&'()*+,;="
_PCHAR = rf"(?:[{_UNRESERVED_SUB}:@]|{_PCT})"
_SEGMENT_NZ_NC = rf"(?:[{_UNRESERVED_SUB}@]|{_PCT})+"
_QUERY = rf"(?:{_PCHAR}|[/?])*"  # query and fragment share the grammar
_AUTHORITY = (rf"(?:(?:[{_UNRESERVED_SUB}:]|{_PCT})*@)?(?:\[{_IPV6}\]|(?:[{_UNRESERVED_SUB}]|{_PCT})*)"
              r"(?::[0-9]*)?")
_PATH_ABEMPTY = rf"(?:/{_PCHAR}*)*"
_PATH_ABSOLUTE = rf"/(?:{_PCHAR}+{_PATH_ABEMPTY})?"
_TAIL = rf"(?:\?{_QUERY})?(?:#{_QUERY})?"
_URI = (rf"[A-Za-z][A-Za-z0-9+.\-]*:(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PCHAR}+{_PATH_ABEMPTY}|)"
        rf"{_TAIL}")
_RELATIVE_REF = rf"(?://{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_SEGMENT_NZ_NC}{_PATH_ABEMPTY}|){_TAIL}"
_URI_REF = rf"(?:{_URI}|{_RELATIVE_REF})"
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_JSON_POINTER = r"(?:/(?:[^~/]|~[01])*)*"

FORMATS: dict[str, str] = {
    "date-time": rf"{_DATE}[Tt]{_TIME}",
    "date": _DATE,
    "time": _TIME,
    # guided's own, for Pydantic's datetime/time types (see guided.frontends.pydantic): RFC 3339
    # without the offset, and with it optional
    "naive-date-time": rf"{_DATE}[Tt]{_LOCAL_TIME}",
    "naive-time": _LOCAL_TIME,
    "date-time-or-naive": rf"{_DATE}[Tt]{_LOCAL_TIME}{_OFFSET}?",
    "time-or-naive": rf"{_LOCAL_TIME}{_OFFSET}?",
    "duration": _DUR,
    "email": _EMAIL,
    "hostname": _HOSTNAME,
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "uri": _URI,
    "uri-reference": _URI_REF,
    "uuid": _UUID,
    "json-pointer": _JSON_POINTER,
    "relative-json-pointer": rf"(?:0|[1-9][0-9]*)(?:#|{_JSON_POINTER})",
}

# Extra length bounds some formats carry (characters).
FORMAT_MAX_LENGTH: dict[str, int] = {}

# Formats JSON Schema defines (draft 2020-12 and earlier; draft 3's own names) that guided has no
# exact automaton for: refused, never ignored (a validator asserting formats checks them).
UNENFORCED: frozenset[str] = frozenset({
    "idn-email", "idn-hostname", "iri", "iri-reference", "uri-template", "regex",
})
DRAFT3_UNENFORCED: frozenset[str] = frozenset({"host-name", "ip-address", "color"})


def is_unknown(name: str, draft3: bool = False) -> bool:
    """A format name neither guided nor the specification knows (validators ignore it)."""
    return name not in FORMATS and name not in UNENFORCED and not (draft3 and name in DRAFT3_UNENFORCED)


def has_unknown_formats(document: object) -> bool:
    """Whether a schema document may hold an unknown string ``format`` (an over-approximation:
    any ``"format"`` member whose value is such a name, wherever it is)."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            value = node.get("format")
            if isinstance(value, str) and is_unknown(value):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
