"""JSON numbers under bounds, ``multipleOf``, integer typing and ``const``, as exact automata.

The exact spelling space is every number written without an exponent: any number of digits,
leading fraction zeros and trailing zeros, and ``-0``.  Over that space every value constraint
here is exact (a spelling is accepted if and only if its value satisfies the constraint), so
the front-end can subtract one constraint's automaton from another's (``not``, ``oneOf``,
``if``/``else``, ``contains``) and the difference is exact too.  Exponent spellings (``1e3``)
are not in the space: the set of spellings of values ``< 10`` is not regular once exponents
and leading fraction zeros are both unbounded (``0.00…01e(n+1)`` needs counting), so they are
only produced where no value is compared (`NUMBER`) and as the spelling ``json.dumps`` gives
an enum value (``1e-05``).
"""

from __future__ import annotations


from decimal import Decimal
from functools import lru_cache

import numpy as np

from guided.ir.dfa import ByteDFA, trim

INT = r"-?(?:0|[1-9][0-9]*)"
NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?"
PLAIN_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"  # NUMBER over the exact space (no exponent)
NAT = r"(?:0|[1-9][0-9]*)"
ZEROS = r"(?:\.0+)?"  # the fraction an integer value may be written with (draft 6 and later)
NEG_ZERO = r"-0(?:\.0+)?"  # zero written with a sign


def integers(lo: int | None, hi: int | None, fraction: bool) -> str | None:
    """Spellings of the integers in lo..hi (None: open), exactly; None if the range is empty.

    ``fraction``: an integer value may be written with a zero fraction (``1.0``, ``-0.00``), as
    drafts 6 and later say; drafts 3 and 4 count only spellings without a fraction.
    """
    r = int_range(lo, hi)
    if r is None:
        return None
    suffix = ZEROS if fraction else ""
    if (lo is None or lo <= 0) and (hi is None or hi >= 0):
        return f"(?:{r}|-0){suffix}"
    return f"{r}{suffix}"


def literal(value: Decimal, integer_only: bool = False, fraction_only: bool = False) -> str | None:
    """Every exponent-free spelling of ``value`` (trailing zeros, ``-0``); None if there is none.

    ``integer_only``: only spellings without a fraction (an enum under a draft-4 ``integer``);
    ``fraction_only``: only spellings with one (a float enum value under draft 4: ``1.0``).

    >>> print(literal(Decimal("1.5")), literal(Decimal(0)), literal(Decimal(100), integer_only=True))
    1\\.50* -?0(?:\\.0+)? 100
    """
    zeros = "" if integer_only else r"\.0+" if fraction_only else ZEROS
    if value == 0:
        return "-?0" + zeros
    sign = "-" if value < 0 else ""
    whole, frac = _split(abs(value))
    if frac:
        return None if integer_only else f"{sign}{whole}\\.{frac}0*"
    return f"{sign}{whole}" + zeros


def _fixed(x: str, y: str) -> str:
    """Digit strings of equal length between x and y."""
    if not x:
        return ""
    if x == y:
        return x
    if x[0] == y[0]:
        return x[0] + _fixed(x[1:], y[1:])
    rest = len(x) - 1
    if set(x[1:]) <= {"0"} and set(y[1:]) <= {"9"}:
        return f"[{x[0]}-{y[0]}]" + (f"[0-9]{{{rest}}}" if rest else "")
    parts = [x[0] + _group(_fixed(x[1:], "9" * rest))]
    lo, hi = int(x[0]) + 1, int(y[0]) - 1
    if lo <= hi:
        parts.append(f"[{lo}-{hi}]" + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(y[0] + _group(_fixed("0" * rest, y[1:])))
    return "(?:" + "|".join(parts) + ")"


def _group(s: str) -> str:
    return s


def nat_range(a: int, b: int | None) -> str | None:
    """Regex for natural numbers a..b (b None: unbounded), without leading zeros; None if empty."""
    if a < 0:
        a = 0
    if b is not None and b < a:
        return None
    parts = []
    la = len(str(a))
    lb = len(str(b)) if b is not None else la
    for length in range(la, lb + 1):
        lo = max(a, 10 ** (length - 1) if length > 1 else 0)
        hi = min(b, 10 ** length - 1) if b is not None else 10 ** length - 1
        if lo > hi:
            continue
        parts.append(_fixed(str(lo), str(hi)))
    if b is None:
        parts.append(f"[1-9][0-9]{{{la},}}")
    return "(?:" + "|".join(parts) + ")" if parts else None


def int_range(lo: int | None, hi: int | None) -> str | None:
    """Regex for JSON integers in lo..hi (None: unbounded on that side); None if the range is empty."""
    if lo is not None and hi is not None and lo > hi:
        return None
    parts = []
    # non-negative part
    if hi is None or hi >= 0:
        r = nat_range(max(lo, 0) if lo is not None else 0, hi)
        if r:
            parts.append(r)
    # negative part: -m with m in max(1,-hi)..-lo
    if lo is None or lo < 0:
        m_lo = max(1, -hi) if hi is not None else 1
        m_hi = -lo if lo is not None else None
        r = nat_range(m_lo, m_hi)
        if r:
            parts.append("-" + r)
    return "(?:" + "|".join(parts) + ")" if parts else None


def _split(d: Decimal) -> tuple[int, str]:
    """A non-negative decimal as (integer part, fraction digits without trailing zeros)."""
    sign, digits, exp = d.normalize().as_tuple() if d else (0, (0,), 0)
    s = format(d.normalize() if d else Decimal(0), "f")
    if "." in s:
        i, f = s.split(".")
        f = f.rstrip("0")
    else:
        i, f = s, ""
    return int(i), f


def _frac_ge(bf: str, strict: bool) -> str | None:
    """Optional fraction part (including the dot) whose value is >= (or >) 0.bf; None if impossible."""
    if not bf:
        return r"\.[0-9]*[1-9][0-9]*" if strict else r"(?:\.[0-9]+)?"
    alts = [re_escape(bf) + (r"[0-9]*[1-9][0-9]*" if strict else r"[0-9]*")]
    for k in range(len(bf)):
        d = int(bf[k])
        if d < 9:
            alts.append(re_escape(bf[:k]) + f"[{d + 1}-9][0-9]*")
    return r"\.(?:" + "|".join(alts) + ")"


def _frac_le(bf: str, strict: bool) -> str | None:
    """Optional fraction part whose value is <= (or <) 0.bf."""
    if not bf:
        return None if strict else r"(?:\.0+)?"
    alts = []
    for k in range(len(bf)):
        d = int(bf[k])
        if d > 0:
            alts.append(re_escape(bf[:k]) + f"[0-{d - 1}][0-9]*")
        if k > 0:
            alts.append(re_escape(bf[:k]))  # a proper prefix (bf has no trailing zeros)
    if not strict:
        alts.append(re_escape(bf) + "0*")
    return r"(?:\.(?:" + "|".join(alts) + "))?"


def re_escape(s: str) -> str:
    return s  # digit strings only


def _pos_ge(b: Decimal, strict: bool) -> str | None:
    """Non-negative decimals x (no exponent) with x >= b (x > b when strict), b >= 0."""
    bi, bf = _split(b)
    alts = []
    gt = nat_range(bi + 1, None)
    alts.append(gt + r"(?:\.[0-9]+)?")
    f = _frac_ge(bf, strict)
    if f is not None:
        alts.append(str(bi) + f)
    return "(?:" + "|".join(alts) + ")"


def _pos_le(b: Decimal, strict: bool) -> str | None:
    bi, bf = _split(b)
    alts = []
    if bi >= 1:
        alts.append(nat_range(0, bi - 1) + r"(?:\.[0-9]+)?")
    f = _frac_le(bf, strict)
    if f is not None:
        alts.append(str(bi) + f)
    return "(?:" + "|".join(alts) + ")" if alts else None


POS = r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?"
NEG = r"-(?:0\.[0-9]*[1-9][0-9]*|[1-9][0-9]*(?:\.[0-9]+)?)"  # strictly negative, no -0


def number_ge(b: Decimal, strict: bool) -> str | None:
    """Decimal JSON numbers (no exponent) >= b (> b when strict)."""
    if b > 0 or (b == 0 and strict):
        return _pos_ge(b, strict)
    if b == 0:
        return f"(?:{POS}|{NEG_ZERO})"
    m = _pos_le(-b, strict)  # -m >= b  <=>  m <= -b (m = 0 included: -0 is 0)
    return f"(?:{POS}|-{m})" if m else POS


def number_le(b: Decimal, strict: bool) -> str | None:
    """Decimal JSON numbers (no exponent) <= b (< b when strict)."""
    if b > 0:
        p = _pos_le(b, strict)
        return f"(?:{NEG}|{NEG_ZERO}|{p})" if p else f"(?:{NEG}|{NEG_ZERO})"
    if b == 0:
        return NEG if strict else f"(?:{NEG}|-?0(?:\\.0+)?)"
    m = _pos_ge(-b, strict)
    return "-" + m if m else None


# --- multipleOf as an automaton ----------------------------------------------------------------

@lru_cache(maxsize=256)
def multiple_of_dfa(p: int, q: int, allow_fraction: bool) -> ByteDFA:
    """Decimal numbers (no exponent) x with x * 10**q a multiple of p (x a multiple of p / 10**q).

    States: start, after '-', integer part (residue; leading zero), after '.', fraction digits
    (residue, count), trailing zeros past q digits.
    """
    ids: dict[tuple, int] = {}
    rows: list[list[int]] = []
    acc: list[bool] = []

    def sid(key) -> int:
        if key not in ids:
            ids[key] = len(rows) + 1
            rows.append(None)  # type: ignore[arg-type]
            acc.append(False)
        return ids[key]

    start = sid(("start",))
    queue = [("start",)]
    seen = {("start",)}
    table: dict[int, dict[int, int]] = {}

    def final_ok(r: int, j: int) -> bool:
        return (r * pow(10, q - j, p)) % p == 0

    while queue:
        key = queue.pop()
        s = ids[key]
        moves: dict[int, tuple] = {}
        kind = key[0]
        if kind in ("start", "minus"):
            if kind == "start":
                moves[ord("-")] = ("minus",)
            moves[ord("0")] = ("zero", 0)
            for d in range(1, 10):
                moves[ord("0") + d] = ("int", d % p)
        elif kind in ("zero", "int"):
            r = key[1]
            acc[s - 1] = final_ok(r, 0)
            if kind == "int":
                for d in range(10):
                    moves[ord("0") + d] = ("int", (r * 10 + d) % p)
            if allow_fraction:
                moves[ord(".")] = ("dot", r)
        elif kind == "dot":
            r = key[1]
            for d in range(10):
                if q >= 1:
                    moves[ord("0") + d] = ("frac", (r * 10 + d) % p, 1)
                elif d == 0:
                    moves[ord("0")] = ("zeros", r)
        elif kind == "frac":
            r, j = key[1], key[2]
            acc[s - 1] = final_ok(r, j)
            for d in range(10):
                if j < q:
                    moves[ord("0") + d] = ("frac", (r * 10 + d) % p, j + 1)
                elif d == 0:
                    moves[ord("0")] = ("zeros", r)
        elif kind == "zeros":
            r = key[1]
            acc[s - 1] = final_ok(r, q)
            moves[ord("0")] = ("zeros", r)
        out = {}
        for b, k in moves.items():
            out[b] = sid(k)
            if k not in seen:
                seen.add(k)
                queue.append(k)
        table[s] = out
    n = len(rows) + 1
    t = np.zeros((n, 256), np.int32)
    for s, out in table.items():
        for b, target in out.items():
            t[s, b] = target
    a = np.zeros(n, bool)
    a[1:] = acc
    return trim(t, a, initial=start)


def decimal_ratio(d: Decimal) -> tuple[int, int]:
    """``d`` > 0 as (p, q) with d == p / 10**q."""
    sign, digits, exp = d.normalize().as_tuple()
    p = int("".join(map(str, digits)))
    if exp >= 0:
        return p * 10 ** exp, 0
    return p, -exp
