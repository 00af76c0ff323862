"""Number parsing against a reference built from the parts a number is printed from.

The strategies draw the parts (sign, currency before or after, digits grouped in the locale's way, a
fraction whose leading zeros may be printed as a subscript count, a magnitude suffix in any case, a percent
sign, an approximation mark) and print them as coingecko.com and coinmarketcap.com do in English and French.
The reference value is the exact decimal those parts spell, rounded once to a float: ``parse_detailed`` must
give it to the last bit, with what it reports about the text (currency, suffix, percent, sign, unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cryptoviz.errors import ParseError
from cryptoviz.sources.numbers import (
    AMBIGUOUS,
    SUBSCRIPT_DIGITS,
    ParsedNumber,
    decimal_mark,
    parse_detailed,
    parse_number,
    parse_percent,
    settle_decimal_mark,
    to_subscript,
)
from tests.properties import property_settings

PROPERTY = property_settings(1000)
NBSP, NNBSP, THIN = "\u00a0", "\u202f", "\u2009"

POWERS = {"en": {"k": 3, "m": 6, "b": 9, "t": 12, "bn": 9, "tn": 12, "mn": 6},
          "fr": {"k": 3, "m": 6, "b": 9, "t": 12, "md": 9, "mds": 9, "mrd": 9, "mrds": 9}}
# (printed before the number, printed after it, what parse_detailed reports as the currency)
CURRENCIES = {
    "en": [("$", "", "$"), ("US$", "", "US$"), ("€", "", "€"), ("£", "", "£"), ("USD ", "", "USD"), ("", " USD", "USD"),
           ("", "$", "$"), ("CA$", "", "CA$")],
    "fr": [("", " $", "$"), ("", f"{NBSP}$", "$"), ("", " €", "€"), ("", " $US", "$US"), ("", "$", "$"),
           ("", " EUR", "EUR")],
}


@dataclass
class Printed:
    """A number as the parts it is printed from, and the text they make."""

    text: str
    locale: str
    digits: str  # integer digits, no separators
    fraction: str  # fraction digits, subscript counts expanded
    power: int
    negative: bool
    signed: bool
    currency: str | None
    suffix: str | None
    percent: bool
    approximate: bool

    def reference(self) -> ParsedNumber:
        value = float(Decimal(f"{self.digits}.{self.fraction or '0'}").scaleb(self.power))
        if self.negative and value:
            value = -value
        return ParsedNumber(value=value, currency=self.currency, percent=self.percent, suffix=self.suffix,
                            signed=self.signed, approximate=self.approximate,
                            unit=float(Decimal(1).scaleb(self.power - len(self.fraction))))


def grouped(digits: str, separator: str) -> str:
    head = len(digits) % 3 or 3
    return separator.join([digits[:head], *(digits[i:i + 3] for i in range(head, len(digits), 3))])


@st.composite
def printed_numbers(draw: st.DrawFn, locale: str | None = None) -> Printed:
    locale = locale or draw(st.sampled_from(["en", "fr"]))
    digits = str(draw(st.one_of(st.integers(0, 999), st.integers(0, 10**15))))
    zeros = draw(st.integers(0, 12))
    rest = draw(st.text("0123456789", max_size=6))
    if zeros and not rest:
        rest = draw(st.sampled_from("123456789"))
    rest = rest if not zeros else draw(st.sampled_from("123456789")) + rest[1:]
    fraction = "0" * zeros + rest
    shown = fraction
    if zeros and draw(st.booleans()):
        shown = "0" + to_subscript(str(zeros)) + rest  # 0.0₅123: five zeros
    if locale == "en":
        separator = draw(st.sampled_from(["", ","]))
        point = "."
    else:
        separator = draw(st.sampled_from(["", " ", NBSP, NNBSP, THIN, "."]))
        point = ","
        if separator == "." and not fraction and len(digits) in (4, 5, 6):
            separator = " "  # one dot and no comma reads as a decimal point (tested below)
    number = grouped(digits, separator) + (point + shown if fraction or shown else "")

    suffix = None
    power = 0
    if draw(st.integers(0, 2)) == 0:
        name = draw(st.sampled_from(sorted(POWERS[locale])))
        power = POWERS[locale][name]
        suffix = "".join(c.upper() if draw(st.booleans()) else c for c in name)
        number += draw(st.sampled_from(["", " ", NBSP])) + suffix
    percent = draw(st.integers(0, 3)) == 0
    before, after, currency = ("", "", None)
    if not percent and draw(st.booleans()):
        before, after, currency = draw(st.sampled_from(CURRENCIES[locale]))
    sign = draw(st.sampled_from(["", "", "+", "-", "\u2212"]))
    if before and draw(st.booleans()):
        body = f"{before}{sign}{number}"  # $-1.2
    else:
        body = f"{sign}{before}{number}"  # -$1.2
    body += after
    if percent:
        body += draw(st.sampled_from(["%", " %", f"{NBSP}%"]))
    approximate = draw(st.integers(0, 5)) == 0
    if approximate:
        body = draw(st.sampled_from(["<", ">", "≈", "~", "< "])) + body
    return Printed(text=body, locale=locale, digits=digits, fraction=fraction, power=power,
                   negative=sign in ("-", "\u2212"), signed=bool(sign), currency=currency, suffix=suffix,
                   percent=percent, approximate=approximate)


@PROPERTY
@given(printed_numbers())
@example(Printed("$0.0₅123", "en", "0", "00000123", 0, False, False, "$", None, False, False))
@example(Printed("1,23 Md $", "fr", "1", "23", 9, False, False, "$", "Md", False, False))
@example(Printed("-0", "en", "0", "", 0, True, True, None, None, False, False))
@example(Printed("+1.5%", "en", "1", "5", 0, False, True, None, None, True, False))
@example(Printed("−0,32 %", "fr", "0", "32", 0, True, True, None, None, True, False))
@example(Printed("<$0.0001", "en", "0", "0001", 0, False, False, "$", None, False, True))
@example(Printed("1.234.567,5", "fr", "1234567", "5", 0, False, False, None, None, False, False))  # dots group
def test_a_printed_number_reads_back_as_the_decimal_it_spells(p: Printed) -> None:
    got = parse_detailed(p.text, locale=p.locale)
    expected = p.reference()
    assert got == expected
    assert repr(got.value) == repr(expected.value)  # -0.0 is not printed: "-0" is 0.0
    assert parse_number(p.text, locale=p.locale) == expected.value


@PROPERTY
@given(st.lists(st.text("0123456789", min_size=1, max_size=5), min_size=2, max_size=5),
       st.sampled_from([("en", ",", ""), ("fr", " ", ""), ("fr", NNBSP, ""), ("fr", ".", ",5")]))
@example(["1", "5"], ("en", ",", ""))
@example(["1234", "567"], ("fr", " ", ""))
@example(["12", "345", "67"], ("en", ",", ""))
def test_digits_group_by_three_after_the_first_group(groups: list[str], style: tuple[str, str, str]) -> None:
    """A thousands separator anywhere but before a group of exactly three digits is an error, never a
    different number."""
    locale, separator, tail = style
    text = separator.join(groups) + tail
    if 1 <= len(groups[0]) <= 3 and all(len(g) == 3 for g in groups[1:]):
        assert parse_number(text, locale=locale) == float(Decimal("".join(groups)) + (Decimal("0.5") if tail else 0))
    else:
        with pytest.raises(ParseError) as raised:
            parse_number(text, locale=locale)
        assert str(raised.value) == f"cannot read number {text!r}: misplaced thousands separator"


# --- each refusal says what and where ------------------------------------------------------------------

REFUSED = [
    ("1,5", "en", "misplaced thousands separator"),
    ("1234,567", "en", "misplaced thousands separator"),
    ("1,2345", "en", "misplaced thousands separator"),
    ("1 234,5678 9", "fr", "separator after the decimal point"),
    ("1,234.5,6", "en", "separator after the decimal point"),
    ("1₅", "en", "subscript digits before the decimal point"),
    ("0.₅1", "en", "a subscript zero count must follow a 0"),
    ("0.1₅2", "en", "a subscript zero count must follow a 0"),
    ("0.0₀1", "en", "subscript zero count 0 out of range"),
    ("0.0₄₀₁1", "en", "subscript zero count 401 out of range"),
    ("1.2.3", "en", "more than one decimal separator '.'"),
    ("1,2,3", "fr", "more than one decimal separator ','"),
    ("--5", "en", "two signs"),
    ("$1 €", "en", "two currency signs"),
    ("5%%", "en", "two percent signs"),
    ("5% %", "en", "two percent signs"),
    ("abc", "en", "not a number as the pages print them"),
    ("1e99999", "en", "not a number as the pages print them"),  # at most 4 exponent digits
    ("1e9999", "en", "too large"),
    ("1e400", "en", "too large"),
    ("-1e400", "en", "too large"),
    ("1e300T", "en", "too large"),
    ("1,5 Bn", "fr", "unknown magnitude suffix 'Bn' for locale 'fr'"),
    ("1.5 Md", "en", "unknown magnitude suffix 'Md' for locale 'en'"),
    ("1.", "en", "not a number as the pages print them"),
    (",", "fr", "no digits"),
    ("$.", "en", "no digits"),
]


@pytest.mark.parametrize(("text", "locale", "why"), REFUSED)
def test_each_refusal_quotes_the_text_and_says_why(text: str, locale: str, why: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse_detailed(text, locale=locale)
    assert str(raised.value) == f"cannot read number {text!r}: {why}"


def test_refusals_of_the_arguments() -> None:
    for call, message in [
        (lambda: parse_detailed(5), "cannot read number 5: not text"),  # type: ignore[arg-type]
        (lambda: parse_detailed(b"5"), "cannot read number b'5': not text"),  # type: ignore[arg-type]
        (lambda: parse_detailed("5", locale="de"), "cannot read number '5': unsupported locale 'de'"),
        (lambda: parse_detailed("5", decimal=";"), "cannot read number '5': unsupported decimal mark ';'"),
        (lambda: parse_percent("$5"), "cannot read number '$5': a percentage cannot carry a currency sign or a "
                                      "magnitude suffix"),
        (lambda: parse_percent("5 K"), "cannot read number '5 K': a percentage cannot carry a currency sign or a "
                                       "magnitude suffix"),
    ]:
        with pytest.raises(ParseError) as raised:
            call()
        assert str(raised.value) == message


def test_a_long_text_is_shown_cut_to_80_characters() -> None:
    for length, shown in [(80, "x" * 80), (81, "x" * 77 + "..."), (200, "x" * 77 + "...")]:
        with pytest.raises(ParseError) as raised:
            parse_number("x" * length)
        assert str(raised.value) == f"cannot read number {shown!r}: not a number as the pages print them"


def test_texts_up_to_200_characters_are_read() -> None:
    padded = " " * 199 + "7"
    assert parse_number(padded) == 7.0
    with pytest.raises(ParseError) as raised:
        parse_number(" " * 200 + "7")
    assert str(raised.value).endswith(": longer than 200 characters")


def test_runs_of_spaces_count_as_one() -> None:
    assert parse_detailed("1  234,5  $", locale="fr") == ParsedNumber(1234.5, "$", unit=0.1)
    assert parse_number("$ 1.5   M") == 1.5e6
    assert parse_number("1    234", locale="fr") == 1234.0


@pytest.mark.parametrize(("text", "value"), [
    ("0.0₁5", 0.05), ("0.0₂5", 0.005), ("0.0₁₀1", 1e-11), ("0.1230₃1", 0.1230001),
    ("0.0₄₀₀1", float("1e-401")),  # underflows to 0: 400 zeros is the most a count may say
])
def test_subscript_counts_at_their_edges(text: str, value: float) -> None:
    assert parse_number(text) == value


def test_one_dot_and_no_comma_is_a_decimal_point_in_french() -> None:
    assert parse_number("1.234", locale="fr") == 1.234
    assert parse_number("1.234,5", locale="fr") == 1234.5
    assert parse_number("1.234.567", locale="fr") == 1234567.0


def test_infinite_words_are_not_numbers() -> None:
    for text in ("inf", "-inf", "Infinity", "NaN", "1e309"):
        with pytest.raises(ParseError):
            parse_number(text)
    assert not math.isinf(parse_number("1.7976931348623157e308") or 0.0)


# --- which mark is the decimal one --------------------------------------------------------------------


@PROPERTY
@given(st.integers(1000, 10**12), st.text("0123456789", min_size=1, max_size=4), st.sampled_from(["en", "de"]))
def test_both_marks_the_last_one_is_the_decimal_mark(integer: int, fraction: str, style: str) -> None:
    group, point = (",", ".") if style == "en" else (".", ",")
    text = grouped(str(integer), group) + point + fraction
    assert decimal_mark(text) == point
    assert decimal_mark(f"price {text} $") == point


@pytest.mark.parametrize(("text", "mark"), [
    ("1.234", AMBIGUOUS), ("1,234", AMBIGUOUS), ("999.999", AMBIGUOUS),
    ("0.234", "."), ("0,234", ","), ("1234.567", "."), ("1.23", "."), ("1,2345", ","),
    ("1.0₄5", "."), ("1,0₄5", ","),  # a subscript count only ever follows a decimal mark
    ("1 234.567", "."), ("1 234,567", ","), ("1.234 567", "."),
    ("1.234.567", ","), ("1,234,567", "."), ("42", None), ("1 234", None), ("", None),
    ("1.5 and 2,5", None), ("1.5 and 1.234", "."), ("7.299.982 and 1.234", ","),
])
def test_decimal_mark_edges(text: str, mark: str | None) -> None:
    assert decimal_mark(text) == mark


def test_settle_on_the_majority_unless_too_many_disagree() -> None:
    assert settle_decimal_mark(["1.5"] * 10 + ["2,5"]) == "."
    assert settle_decimal_mark(["1,5"] * 10 + ["2.5"]) == ","
    assert settle_decimal_mark(["1.5"] * 9 + ["2,5"]) == "."  # exactly a tenth disagree: still settled
    assert settle_decimal_mark(["1.5"] * 9 + ["2,5"] * 2) is None
    assert settle_decimal_mark(["1.5", "2,5"]) is None
    assert settle_decimal_mark(["1.234", "42"]) is None
    assert settle_decimal_mark([]) is None
    assert settle_decimal_mark(["1,5"]) == ","


def test_subscript_digits_are_the_unicode_ones() -> None:
    assert SUBSCRIPT_DIGITS == "".join(chr(0x2080 + i) for i in range(10))
    assert to_subscript("1234567890") == "₁₂₃₄₅₆₇₈₉₀"
