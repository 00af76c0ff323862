"""The one parser for numbers as coingecko.com and coinmarketcap.com print them."""

from __future__ import annotations

import math
import re
from decimal import Decimal

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cryptoviz.errors import ParseError
from cryptoviz.simulator import pages
from cryptoviz.sources.numbers import (
    AMBIGUOUS,
    SUBSCRIPT_DIGITS,
    currency_code,
    decimal_mark,
    parse_detailed,
    parse_number,
    parse_percent,
    settle_decimal_mark,
)

NNBSP = "\u202f"
NBSP = "\u00a0"


@pytest.mark.parametrize(("text", "expected"), [
    ("$1,234.56", 1234.56),
    ("$67,187.34", 67187.34),
    ("$1,323,456,789,012", 1323456789012.0),
    ("$1.23T", 1.23e12),
    ("$1.23t", 1.23e12),
    ("$29.32B", 29.32e9),
    ("$812.45M", 812.45e6),
    ("$4.5K", 4500.0),
    ("$ 1.2 b", 1.2e9),
    ("1.5 m", 1.5e6),
    ("<$0.0001", 0.0001),
    ("< $0.01", 0.01),
    ("0.0₅123", 0.00000123),
    ("$0.0₅1234", 0.000001234),
    ("$0.0₄2345", 0.00002345),
    ("$0.0₁₂5", 5e-13),
    ("+1.5%", 1.5),
    ("-0.32%", -0.32),
    ("\u22120.32%", -0.32),
    ("1.2%", 1.2),
    ("12.3 %", 12.3),
    ("-$1.2", -1.2),
    ("$-1.2", -1.2),
    ("US$1,234", 1234.0),
    ("1,234 USD", 1234.0),
    ("19,696,875", 19696875.0),
    ("0.5", 0.5),
    (".5", 0.5),
    ("7", 7.0),
    ("1.2e-7", 1.2e-7),
])
def test_english_examples(text: str, expected: float) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    (f"1{NNBSP}234,56{NBSP}$", 1234.56),
    (f"1{NBSP}234,56{NBSP}€", 1234.56),
    ("1 234,56 $", 1234.56),
    (f"67{NNBSP}187,34{NBSP}$US", 67187.34),
    (f"1 323 456 789 012{NBSP}$", 1323456789012.0),
    ("1,23 Md $", 1.23e9),
    ("1,23 Mds $", 1.23e9),
    ("1,23 Mrd €", 1.23e9),
    (f"1{NNBSP}323,46{NBSP}Md{NBSP}$", 1323.46e9),
    ("12,3 M $", 12.3e6),
    ("4,5 k $", 4500.0),
    ("1,32 T $", 1.32e12),
    (f"0,0₅1234{NBSP}$", 0.000001234),
    (f"1,6{NBSP}%", 1.6),
    ("\u22121,2 %", -1.2),
    ("+0,5 %", 0.5),
    ("1.234.567,89 €", 1234567.89),
    ("0.5", 0.5),  # a lone point with no comma: a decimal point
    ("< 0,0001 $", 0.0001),
])
def test_french_examples(text: str, expected: float) -> None:
    assert parse_number(text, locale="fr") == expected


@pytest.mark.parametrize("text", [None, "", "   ", "-", "—", "–", "--", "N/A", "n/a", "?", "$-", "- $",
                                  "—%", f"-{NBSP}%", "$ --"])
def test_no_value_markers_are_none(text: str | None) -> None:
    assert parse_number(text) is None
    assert parse_number(text, locale="fr") is None


@pytest.mark.parametrize(("text", "locale", "why"), [
    ("abc", "en", "not a number"),
    ("$1.2X", "en", "not a number"),
    ("1,5", "en", "misplaced thousands separator"),
    ("1,23,456", "en", "misplaced thousands separator"),
    ("1..2", "en", "more than one decimal separator"),
    ("1.2.3", "en", "more than one decimal separator"),
    ("$$1", "en", "not a number"),
    ("--5", "en", "two signs"),
    ("$1 €", "en", "two currency signs"),
    ("1₅", "en", "subscript digits before the decimal point"),
    ("0.1₅2", "en", "a subscript zero count must follow a 0"),
    ("0.0₀12", "en", "out of range"),
    ("0.0₉₉₉₉1", "en", "out of range"),
    ("1e99999", "en", "not a number"),
    ("1e400", "en", "too large"),
    ("1,23 Bn $", "fr", "unknown magnitude suffix 'Bn'"),
    ("1,2,3 $", "fr", "more than one decimal separator"),
    ("1.", "en", "not a number"),
    ("1" * 300, "en", "longer than 200 characters"),
])
def test_garbled_text_raises_parse_error_quoting_it(text: str, locale: str, why: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_number(text, locale=locale)
    message = str(info.value)
    assert why in message
    assert repr(text[:20])[1:-1] in message or text[:20] in message


def test_unsupported_locale_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unsupported locale 'de'"):
        parse_number("1,5", locale="de")


def test_detailed_reports_what_was_printed_around_the_number() -> None:
    d = parse_detailed("<$1.2M")
    assert (d.value, d.currency, d.suffix, d.approximate, d.percent, d.signed) == (1.2e6, "$", "M", True,
                                                                                   False, False)
    d = parse_detailed("\u22121,5\u00a0%", locale="fr")
    assert (d.value, d.percent, d.signed, d.currency) == (-1.5, True, True, None)
    assert currency_code("$") == "usd"
    assert currency_code("US$") == "usd"
    assert currency_code("€") == "eur"
    assert currency_code("¤") is None
    assert currency_code(None) is None


def test_parse_percent_refuses_amounts() -> None:
    assert parse_percent("+1.5%") == 1.5
    assert parse_percent("1.5") == 1.5
    assert parse_percent("—") is None
    with pytest.raises(ParseError, match="currency sign or a magnitude suffix"):
        parse_percent("$1.5")
    with pytest.raises(ParseError, match="currency sign or a magnitude suffix"):
        parse_percent("1.5M")


# --- properties --------------------------------------------------------------------------------------

_PAGE_ALPHABET = st.sampled_from(list("0123456789.,-+−%$€£<>~ \u00a0\u202fkKmMbBtTdDsrUSN/A?—e")
                                 + list(SUBSCRIPT_DIGITS))


@settings(max_examples=400)
@given(text=st.one_of(st.text(max_size=40), st.text(_PAGE_ALPHABET, max_size=25)),
       locale=st.sampled_from(["en", "fr"]))
@example(text="0.0₉₉₉₉₉₉₉₉₉₉₉₉1", locale="en")
@example(text="9" * 199, locale="en")
@example(text="1e-9999", locale="en")
@example(text="\x00", locale="fr")
def test_never_raises_anything_but_parse_error(text: str, locale: str) -> None:
    try:
        value = parse_number(text, locale=locale)
    except ParseError as exc:
        assert str(exc).startswith("cannot read number")
        return
    assert value is None or math.isfinite(value)


def _close(got: float | None, printed: str, value: float, half_unit: float) -> None:
    """``got`` is the printed number exactly (as a float), and within half a printed unit of ``value``."""
    assert got is not None
    assert got == pytest.approx(float(Decimal(printed)), rel=1e-12, abs=0)
    assert abs(got - value) <= half_unit * 1.000001 + abs(value) * 1e-9


_AMOUNTS = st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False)


@given(value=_AMOUNTS, sign=st.sampled_from(["$", "US$", "€", "£"]))
def test_english_amounts_round_trip(value: float, sign: str) -> None:
    printed = f"{value:.2f}"
    _close(parse_number(f"{sign}{value:,.2f}"), printed, value, 0.005)


@given(value=_AMOUNTS, sign=st.sampled_from(["$", "€", "$US"]), group=st.sampled_from([NNBSP, NBSP, " "]),
       gap=st.sampled_from([NBSP, " ", NNBSP]))
def test_french_amounts_round_trip(value: float, sign: str, group: str, gap: str) -> None:
    text = f"{value:,.2f}".replace(",", group).replace(".", ",") + gap + sign
    _close(parse_number(text, locale="fr"), f"{value:.2f}", value, 0.005)


_SUFFIXES = {"en": [(12, "T"), (9, "B"), (6, "M"), (3, "K")], "fr": [(9, "Md"), (6, "M"), (3, "k")]}


@given(value=st.floats(min_value=1e3, max_value=1e16), locale=st.sampled_from(["en", "fr"]),
       decimals=st.integers(0, 4), lower=st.booleans(), spaced=st.booleans())
def test_suffixed_amounts_round_trip(value: float, locale: str, decimals: int, lower: bool,
                                     spaced: bool) -> None:
    power, suffix = next((p, s) for p, s in _SUFFIXES[locale] if value >= 10 ** p)
    suffix = suffix.lower() if lower else suffix
    scaled = value / 10 ** power
    digits = f"{scaled:.{decimals}f}"
    gap = " " if spaced else ""
    if locale == "en":
        text = f"${digits}{gap}{suffix}"
    else:
        text = f"{scaled:,.{decimals}f}".replace(",", NNBSP).replace(".", ",") + f"{NBSP}{suffix}{NBSP}$"
    half_unit = 0.5 * 10 ** (power - decimals)
    got = parse_number(text, locale=locale)
    assert got is not None
    assert got == pytest.approx(float(Decimal(digits).scaleb(power)), rel=1e-12)
    assert abs(got - value) <= half_unit * 1.000001 + value * 1e-9


@given(value=st.floats(min_value=1e-30, max_value=1e-4, exclude_max=True), significant=st.integers(1, 6),
       locale=st.sampled_from(["en", "fr"]))
def test_subscript_zero_counts_round_trip(value: float, significant: int, locale: str) -> None:
    zeros = -Decimal(repr(value)).adjusted() - 1
    printed = f"{value:.{zeros + significant}f}"
    fraction = printed.split(".")[1]
    shown = len(fraction) - len(fraction.lstrip("0"))
    if shown == len(fraction):  # rounded to zero: nothing to write as a count
        return
    count = "".join(SUBSCRIPT_DIGITS[int(d)] for d in str(shown))
    point = "." if locale == "en" else ","
    text = f"$0{point}0{count}{fraction[shown:]}" if locale == "en" else f"0{point}0{count}{fraction[shown:]} $"
    _close(parse_number(text, locale=locale), printed, value, 0.5 * 10 ** -(zeros + significant))


@given(value=st.floats(min_value=-1e4, max_value=1e4), decimals=st.integers(0, 3),
       minus=st.sampled_from(["-", "\u2212"]), locale=st.sampled_from(["en", "fr"]))
def test_signed_percentages_round_trip(value: float, decimals: int, minus: str, locale: str) -> None:
    printed = f"{value:+.{decimals}f}"
    text = printed.replace("-", minus) + "%"
    if locale == "fr":
        text = text.replace(".", ",").replace("%", f"{NBSP}%")
    got = parse_percent(text, locale=locale)
    assert got is not None
    assert got == pytest.approx(float(Decimal(printed)), rel=1e-12, abs=1e-300)
    assert abs(got - value) <= 0.5 * 10 ** -decimals * 1.000001


@given(value=st.one_of(st.floats(min_value=1e-20, max_value=1e13), st.just(0.0)),
       lang=st.sampled_from(["en", "fr"]))
def test_renderer_numbers_round_trip(value: float, lang: str) -> None:
    """What the simulator prints reads back within the printed precision."""
    price = parse_number(pages.coingecko_price(value, lang), locale=lang)
    assert price is not None and abs(price - value) <= max(value * 5e-4, 0.005) * 1.000001
    amount = parse_number(pages.coingecko_amount(value, lang), locale=lang)
    assert amount is not None and abs(amount - value) <= 0.5 * 1.000001 + value * 1e-12
    cmc = parse_number(pages.cmc_price(value, lang), locale=lang)
    assert cmc is not None and abs(cmc - value) <= max(value * 5e-4, 0.005) * 1.000001
    compact = parse_number(pages.cmc_compact(value, lang), locale=lang)
    assert compact is not None and abs(compact - value) <= max(value * 5e-3, 0.005) * 1.000001
    change = parse_percent(pages.percent(value, 2, lang), locale=lang)
    assert change is not None and abs(change - value) <= 0.005 * 1.000001 + value * 1e-12


# --- the decimal mark a number shows ---------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mark"), [
    ("$1,234.56", "."), ("$7.299.982.172", ","), ("0,05%", ","), ("0.05%", "."), ("12.5", "."), ("12,5 %", ","),
    ("$6\u00a0436,54", ","), ("1 234,567", ","), ("1234.567", "."), ("0.123", "."), ("0,0₅123", ","),
    ("$1.32T$1,323,456,789,012", "."), ("1.234", AMBIGUOUS), ("$1,234", AMBIGUOUS), ("999.000", AMBIGUOUS),
    ("42", None), ("1 234", None), ("-", None), ("", None), ("1.5 and 2,5", None),
])
def test_decimal_mark_examples(text: str, mark: str | None) -> None:
    assert decimal_mark(text) == mark


def test_settle_decimal_mark_examples() -> None:
    assert settle_decimal_mark(["$7.299.982.172", "0,05%", "1.234", "42"]) == ","
    assert settle_decimal_mark(["1.234", "42", "-"]) is None
    assert settle_decimal_mark(["1.5%", "2,5%"]) is None  # half and half: unsettled
    assert settle_decimal_mark(["$1,234.56"] * 10 + ["$145..67"]) == "."  # one garbled cell in eleven
    assert settle_decimal_mark([]) is None


def test_an_explicit_decimal_mark_overrides_the_locale() -> None:
    with pytest.raises(ParseError, match="more than one decimal separator"):
        parse_number("$7.299.982.172", locale="en")  # the locale's own separators refuse it
    assert parse_detailed("$7.299.982.172", decimal=",").value == 7299982172.0
    assert parse_detailed("1.234", decimal=",").value == 1234.0
    assert parse_detailed("1.234", locale="fr", decimal=".").value == 1.234
    assert parse_detailed("1 234,5 Md $", locale="fr", decimal=",").value == 1234.5e9
    with pytest.raises(ParseError, match="misplaced thousands separator"):
        parse_detailed("1.5", decimal=",")
    with pytest.raises(ParseError, match="unsupported decimal mark"):
        parse_detailed("1.5", decimal=";")


def test_unit_is_one_in_the_last_digit_printed() -> None:
    assert parse_detailed("$1.32T").unit == 1e10
    assert parse_detailed("0.10%").unit == 0.01
    assert parse_detailed("$0.0₅123").unit == pytest.approx(1e-8)
    assert parse_detailed("17,224,900").unit == 1.0
    assert parse_detailed("1.5e-7").unit == pytest.approx(1e-8)


# (grouping separator, decimal mark) as browsers print numbers: en-US, de-DE, fr-FR (three kinds of space).
_STYLES = st.sampled_from([(",", "."), (".", ","), (" ", ","), (NNBSP, ","), (NBSP, ",")])
_VALUES = st.decimals(min_value=0, max_value=Decimal("1e15"), allow_nan=False, allow_infinity=False, places=4)


def _printed(value: Decimal, decimals: int, group: str, point: str) -> str:
    text = f"{value:,.{decimals}f}".replace(",", "\0").replace(".", point).replace("\0", group)
    return text


@settings(max_examples=300)
@given(value=_VALUES, decimals=st.integers(0, 4), style=_STYLES, sign=st.sampled_from(["$", "", "€"]))
@example(value=Decimal("1234"), decimals=0, style=(".", ","), sign="$")
@example(value=Decimal("1.234"), decimals=3, style=(",", "."), sign="")
def test_a_number_never_shows_the_other_mark_and_reads_back_in_its_own(value: Decimal, decimals: int,
                                                                       style: tuple[str, str], sign: str) -> None:
    group, point = style
    number = _printed(value, decimals, group, point)
    text = f"{sign}{number}"
    mark = decimal_mark(text)
    other = "," if point == "." else "."
    assert mark != other, text
    if mark == AMBIGUOUS:
        # Only a lone separator before exactly three digits is ambiguous.
        assert re.fullmatch(r"[1-9][0-9]{0,2}[.,][0-9]{3}", number), text
    got = parse_detailed(text, decimal=point).value
    assert got == pytest.approx(float(round(value, decimals)), rel=1e-12, abs=1e-12), text


@settings(max_examples=200)
@given(values=st.lists(st.tuples(_VALUES, st.integers(0, 4)), min_size=1, max_size=12), style=_STYLES)
def test_a_page_printed_one_way_settles_on_its_mark_or_on_nothing(values: list[tuple[Decimal, int]],
                                                                   style: tuple[str, str]) -> None:
    group, point = style
    texts = [_printed(v, d, group, point) for v, d in values]
    settled = settle_decimal_mark(texts)
    tells = any(decimal_mark(t) == point for t in texts)
    assert settled == (point if tells else None), texts


@settings(max_examples=200)
@given(values=st.lists(_VALUES, min_size=10, max_size=30), style=_STYLES, garbled=st.integers(0, 3))
def test_a_few_contrary_cells_do_not_unsettle_a_page(values: list[Decimal], style: tuple[str, str],
                                                      garbled: int) -> None:
    group, point = style
    texts = [_printed(v, 2, group, point) for v in values]  # two decimals: every text tells its mark
    other = "1,5" if point == "." else "1.5"
    mixed = texts + [other] * garbled
    expected = point if garbled * 10 <= len(mixed) else None
    assert settle_decimal_mark(mixed) == expected


@given(integer=st.integers(1, 999), fraction=st.integers(0, 999), sep=st.sampled_from([".", ","]))
def test_one_separator_before_three_digits_is_ambiguous(integer: int, fraction: int, sep: str) -> None:
    text = f"{integer}{sep}{fraction:03d}"
    assert decimal_mark(text) == AMBIGUOUS
    assert decimal_mark(text + "5") == sep  # four digits after it: a decimal mark
    assert decimal_mark(f"{integer}{sep}{fraction:03d}{sep}000") == ("," if sep == "." else ".")  # two: groups
