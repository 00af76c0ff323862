"""Numbers as coingecko.com and coinmarketcap.com print them, back to floats.

One grammar for every cell of both sites, in English and French layout::

    "$1,234.56"  "$1.23T"  "$1.2 b"  "<$0.0001"  "$0.0₅123"  "−0.32%"  "+1.5%"  "12.3 %"
    "1 234,56 $"  "1,23 Md $"  "12,3 M €"  "4,5 k $"  "−1,2 %"  "67 187,34 $US"

Rules:

- ``None``, ``""``, ``"-"``, ``"—"``, ``"–"``, ``"--"``, ``"N/A"``, ``"?"`` (alone, or with only a currency
  sign or ``%`` around them) mean "no value" and give ``None``.
- No-break spaces (U+00A0), narrow no-break spaces (U+202F), thin and figure spaces are plain spaces.
  The unicode minus (U+2212) is a minus. A leading ``<``, ``>``, ``≈`` or ``~`` (an approximation
  such as ``<$0.0001``) is dropped: the bound is the value.
- A currency sign may come before or after the number (``$``, ``€``, ``£``, ``US$``, ``$US``, ``CA$``,
  ISO codes such as ``USD``); the sign may come before or after it (``-$1.2``, ``$-1.2``).
- Magnitude suffixes, any case: ``K`` 1e3, ``M`` 1e6, ``B``/``Bn`` 1e9, ``T``/``Tn`` 1e12; French
  ``Md``/``Mds``/``Mrd`` (milliard) 1e9. French ``Bn``/``billion`` (1e12 in French) is refused as
  ambiguous rather than guessed.
- Locale ``"en"``: ``,`` groups thousands, ``.`` is the decimal point. Locale ``"fr"``: spaces group
  thousands, ``,`` is the decimal point (a lone ``.`` with no comma is read as a decimal point too).
  Groups after the first must have exactly three digits, so ``"1,5"`` in English is an error, not 15.
- ``0.0₅123``: a ``0`` followed by a subscript count stands for that many zeros, so the subscript
  counts the zeros after the decimal point: ``0.0₅123 == 0.00000123``. ``<sub>5</sub>`` in markup is
  turned into ``₅`` by the page parsers before calling this module.
- Percentages keep their scale: ``"+1.5%"`` is ``1.5``.

Only :class:`cryptoviz.errors.ParseError` escapes, with a message quoting the text.

A page saved by a browser prints numbers the browser's way, whatever the page's language: an English page
saved in Germany shows ``$7.299.982.172`` and ``0,05%``. :func:`decimal_mark` tells which mark a printed
number uses for decimals when its shape says so (``1,234.5``, ``7.299.982``, ``0,05``, ``12.5``), and
:func:`settle_decimal_mark` the one a whole page uses; ``decimal=`` then overrides the locale's separators.
A lone separator followed by exactly three digits (``1.234``, ``1,234``) says nothing by itself: it is
:data:`AMBIGUOUS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final, Literal

from cryptoviz.errors import ParseError

Locale = Literal["en", "fr"]

SUBSCRIPT_DIGITS = "₀₁₂₃₄₅₆₇₈₉"
_TO_SUBSCRIPT = str.maketrans("0123456789", SUBSCRIPT_DIGITS)
_FROM_SUBSCRIPT = str.maketrans(SUBSCRIPT_DIGITS, "0123456789")

# A float underflows to 0 long before this; it only bounds the work done for hostile input.
_MAX_SUBSCRIPT_ZEROS = 400
_MAX_TEXT = 200

_SPACES = str.maketrans({
    "\u00a0": " ", "\u202f": " ", "\u2009": " ", "\u2007": " ", "\u2008": " ", "\u200a": " ",
    "\t": " ", "\n": " ", "\r": " ",
    "\u2212": "-", "\u2012": "-", "\ufe63": "-", "\uff0d": "-",
    "\u200b": None, "\u200e": None, "\u200f": None, "\ufeff": None,
})

_NONE_MARKERS = frozenset({"", "-", "--", "—", "–", "n/a", "na", "?", "null", "none"})

_CURRENCY_SIGNS = "$€£¥₩₹₽₺₴₦₱₫₪฿₿Ξ"
_ISO_CODES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "CNY", "KRW", "INR", "BRL", "RUB")
_CURRENCY = (
    rf"(?:[A-Z]{{1,3}}[{_CURRENCY_SIGNS}]|[{_CURRENCY_SIGNS}](?:[A-Z]{{1,3}}\b)?|(?:{'|'.join(_ISO_CODES)})\b)"
)

_MULTIPLIERS_COMMON = {"k": 3, "m": 6, "b": 9, "t": 12}
_MULTIPLIERS = {
    "en": {**_MULTIPLIERS_COMMON, "bn": 9, "tn": 12, "mn": 6},
    "fr": {**_MULTIPLIERS_COMMON, "md": 9, "mds": 9, "mrd": 9, "mrds": 9},
}
_SUFFIX = r"(?:mrds|mrd|mds|md|bn|tn|mn|k|m|b|t)"

_GRAMMAR = re.compile(
    rf"""
    ^(?P<approx>[<>≈~]\s*)?
    (?P<sign1>[+-]\s*)?
    (?:(?P<cur1>{_CURRENCY})\s*)?
    (?P<sign2>[+-]\s*)?
    (?P<num>[0-9.,₀-₉](?:[0-9., ₀-₉]*[0-9₀-₉])?)
    (?P<exp>[eE][+-]?[0-9]{{1,4}})?
    \s*(?P<suffix>{_SUFFIX}(?![a-z]))?
    \s*(?P<pct>%)?
    \s*(?:(?P<cur2>{_CURRENCY}))?
    \s*(?P<pct2>%)?$
    """,
    re.VERBOSE | re.IGNORECASE,
)

_CURRENCY_CODES = {
    "$": "usd", "us$": "usd", "$us": "usd", "usd": "usd",
    "€": "eur", "eur": "eur", "£": "gbp", "gbp": "gbp", "₩": "krw", "krw": "krw", "₹": "inr",
    "inr": "inr", "₽": "rub", "rub": "rub", "ca$": "cad", "cad": "cad", "a$": "aud", "au$": "aud",
    "aud": "aud", "r$": "brl", "brl": "brl", "chf": "chf", "jpy": "jpy", "cny": "cny", "₿": "btc",
    "Ξ": "eth", "ξ": "eth",
}


@dataclass(frozen=True, slots=True)
class ParsedNumber:
    """A printed number taken apart: value plus what was printed around it."""

    value: float | None
    currency: str | None = None  # the sign or code as printed ("$", "€", "US$")
    percent: bool = False
    suffix: str | None = None  # magnitude suffix as printed ("T", "Md")
    signed: bool = False  # an explicit + or - was printed
    approximate: bool = False  # printed as "<$0.0001" and the like
    unit: float = 0.0  # the value of one unit in the last digit printed ("$1.32T": 1e10; "0.10%": 0.01)


def currency_code(sign: str | None) -> str | None:
    """Lower-case ISO code of a printed currency sign (``"$"`` -> ``"usd"``), ``None`` when unknown."""
    if not sign:
        return None
    return _CURRENCY_CODES.get(sign.strip().lower())


def to_subscript(digits: str) -> str:
    """``"5"`` -> ``"₅"``: how markup ``<sub>5</sub>`` is written in the text this module reads."""
    return digits.translate(_TO_SUBSCRIPT)


def _fail(text: str, why: str) -> ParseError:
    shown = text if len(text) <= 80 else text[:77] + "..."
    return ParseError(f"cannot read number {shown!r}: {why}")


def _expand_subscripts(fraction: str, text: str) -> str:
    """``"0₅123"`` -> ``"00000123"``: a 0 followed by a subscript count stands for that many zeros."""
    out: list[str] = []
    i = 0
    while i < len(fraction):
        ch = fraction[i]
        if ch in SUBSCRIPT_DIGITS:
            raise _fail(text, "a subscript zero count must follow a 0")
        j = i + 1
        while j < len(fraction) and fraction[j] in SUBSCRIPT_DIGITS:
            j += 1
        if j > i + 1:
            if ch != "0":
                raise _fail(text, "a subscript zero count must follow a 0")
            count = int(fraction[i + 1:j].translate(_FROM_SUBSCRIPT))
            if count < 1 or count > _MAX_SUBSCRIPT_ZEROS:
                raise _fail(text, f"subscript zero count {count} out of range")
            out.append("0" * count)
        else:
            out.append(ch)
        i = j
    return "".join(out)


def _check_groups(integer: str, separators: str, text: str) -> str:
    """Drop thousands separators from the integer part, insisting on 3-digit groups."""
    groups = re.split(f"[{re.escape(separators)}]", integer) if separators else [integer]
    if len(groups) > 1:
        if not 1 <= len(groups[0]) <= 3 or any(len(g) != 3 for g in groups[1:]):
            raise _fail(text, "misplaced thousands separator")
    digits = "".join(groups)
    if not digits.isdigit():
        raise _fail(text, "unexpected character in the digits")
    return digits


def _split_number(num: str, locale: str, text: str, mark: str | None = None) -> tuple[str, str]:
    """Split the digit run into (integer digits, fraction digits incl. subscripts)."""
    num = num.strip()
    if mark is not None:
        decimal, groups = mark, (", " if mark == "." else " .")
    elif locale == "fr":
        decimal, groups = ",", " ."
        if "," not in num and num.count(".") == 1:
            decimal, groups = ".", " "
    else:
        decimal, groups = ".", ", "
    if num.count(decimal) > 1:
        raise _fail(text, f"more than one decimal separator {decimal!r}")
    integer, _, fraction = num.partition(decimal)
    if any(ch in fraction for ch in groups):
        raise _fail(text, "separator after the decimal point")
    if any(ch in integer for ch in SUBSCRIPT_DIGITS):
        raise _fail(text, "subscript digits before the decimal point")
    integer_digits = _check_groups(integer, groups, text) if integer else "0"
    if not fraction and not integer:
        raise _fail(text, "no digits")
    if fraction:
        fraction = _expand_subscripts(fraction, text)
        if not fraction.isdigit():
            raise _fail(text, "unexpected character after the decimal point")
    elif num.endswith(decimal):
        raise _fail(text, "nothing after the decimal separator")
    return integer_digits, fraction


def parse_detailed(text: str | None, *, locale: str = "en", decimal: str | None = None) -> ParsedNumber:
    """Parse one printed number and report what was printed around it (currency, %, suffix).

    ``decimal``: the decimal mark (``"."`` or ``","``) when it is known from elsewhere (the page's other
    numbers); the other mark and spaces then group thousands. ``None``: the locale's own separators.
    """
    if text is None:
        return ParsedNumber(None)
    if not isinstance(text, str):
        raise ParseError(f"cannot read number {text!r}: not text")
    if locale not in _MULTIPLIERS:
        raise ParseError(f"cannot read number {text!r}: unsupported locale {locale!r}")
    if decimal not in (None, ".", ","):
        raise ParseError(f"cannot read number {text!r}: unsupported decimal mark {decimal!r}")
    if len(text) > _MAX_TEXT:
        raise _fail(text, f"longer than {_MAX_TEXT} characters")
    clean = re.sub(r" +", " ", text.translate(_SPACES)).strip()
    bare = re.sub(rf"^{_CURRENCY}|{_CURRENCY}$|%$", "", clean).strip()
    if clean.casefold() in _NONE_MARKERS or (bare != clean and bare.casefold() in _NONE_MARKERS):
        return ParsedNumber(None)
    m = _GRAMMAR.match(clean)
    if m is None:
        raise _fail(text, "not a number as the pages print them")
    if m["sign1"] and m["sign2"]:
        raise _fail(text, "two signs")
    if m["cur1"] and m["cur2"]:
        raise _fail(text, "two currency signs")
    if m["pct"] and m["pct2"]:
        raise _fail(text, "two percent signs")
    sign_text = (m["sign1"] or m["sign2"] or "").strip()
    integer, fraction = _split_number(m["num"], locale, text, decimal)
    suffix = m["suffix"]
    power = 0
    if suffix:
        found = _MULTIPLIERS[locale].get(suffix.lower())
        if found is None:
            raise _fail(text, f"unknown magnitude suffix {suffix!r} for locale {locale!r}")
        power = found
    try:
        magnitude = Decimal(f"{integer}.{fraction or '0'}{m['exp'] or ''}").scaleb(power)
        unit = float(Decimal(1).scaleb(power - len(fraction) + (int(m["exp"][1:]) if m["exp"] else 0)))
    except (InvalidOperation, ValueError):
        raise _fail(text, "not a number") from None
    value = float(magnitude)
    if value in (float("inf"), float("-inf")):
        raise _fail(text, "too large")
    if sign_text == "-" and value:
        value = -value
    return ParsedNumber(
        value=value,
        currency=m["cur1"] or m["cur2"],
        percent=bool(m["pct"] or m["pct2"]),
        suffix=suffix,
        signed=bool(sign_text),
        approximate=bool(m["approx"]),
        unit=unit,
    )


def parse_number(text: str | None, *, locale: str = "en") -> float | None:
    """``"$1,234.56"`` -> ``1234.56``; ``"1,23 Md $"`` (``locale="fr"``) -> ``1.23e9``; ``"—"`` -> ``None``.

    Raises :class:`ParseError` (quoting the text) for anything else.
    """
    return parse_detailed(text, locale=locale).value


def parse_percent(text: str | None, *, locale: str = "en") -> float | None:
    """A percentage change as printed (``"+1.5%"``, ``"−0,32 %"``, or a bare ``"1.2"``) in percent units.

    Refuses currency signs and magnitude suffixes, which mean the wrong cell was read.
    """
    parsed = parse_detailed(text, locale=locale)
    if parsed.value is not None and (parsed.currency or parsed.suffix):
        raise _fail(text or "", "a percentage cannot carry a currency sign or a magnitude suffix")
    return parsed.value


# --- which mark is the decimal one ------------------------------------------------------------------------

AMBIGUOUS: Final = "ambiguous"
Mark = Literal[".", ",", "ambiguous"]

# A run of digits with the separators that may sit between them (subscript zero counts included).
_DIGIT_RUN = re.compile(r"[0-9₀-₉](?:[0-9₀-₉.,  \u00a0\u202f\u2009]*[0-9₀-₉])?")


def _run_mark(run: str) -> Mark | None:
    run = re.sub(r"[  \u00a0\u202f\u2009]", " ", run)
    dots, commas = run.count("."), run.count(",")
    if dots and commas:
        return "." if run.rfind(".") > run.rfind(",") else ","
    if dots > 1:
        return ","
    if commas > 1:
        return "."
    if not dots and not commas:
        return None
    integer, _, fraction = run.partition("." if dots else ",")
    integer = integer.strip()
    if (len(fraction) != 3 or not fraction.isascii() or not integer or integer.startswith("0")
            or " " in integer or len(integer) > 3 or " " in fraction):
        return "." if dots else ","  # cannot be a thousands separator: a decimal mark
    return AMBIGUOUS


def decimal_mark(text: str) -> Mark | None:
    """The decimal mark ``text`` shows: ``"."`` (``1,234.5``, ``0.05``, ``12.5``), ``","`` (``7.299.982``,
    ``0,05``, ``1 234,5``), :data:`AMBIGUOUS` (a lone ``.`` or ``,`` followed by exactly three digits,
    ``1.234``: a decimal mark or a thousands separator), or ``None`` (nothing to tell: ``42``, ``1 234``).

    Numbers that contradict each other in one text give ``None``.
    """
    marks = {mark for run in _DIGIT_RUN.findall(text.translate(_SPACES)) if (mark := _run_mark(run))}
    definite = marks - {AMBIGUOUS}
    if len(definite) > 1:
        return None
    if definite:
        return definite.pop()
    return AMBIGUOUS if marks else None


def settle_decimal_mark(texts: Iterable[str]) -> Literal[".", ","] | None:
    """The decimal mark a page's numbers show, or ``None`` when none of them tells.

    A page prints all its numbers one way; a few cells that say otherwise (a garbled cell, at most a tenth
    of those that tell) do not unsettle it, more do (``None``).
    """
    points = commas = 0
    for text in texts:
        mark = decimal_mark(text)
        points += mark == "."
        commas += mark == ","
    if max(points, commas) == 0 or min(points, commas) * 10 > points + commas:
        return None
    return "." if points > commas else ","
