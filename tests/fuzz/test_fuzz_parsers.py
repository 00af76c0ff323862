"""Property-based fuzzing of every parser: whatever arrives, a parser returns a result or raises one of the
project's own errors (``ParseError``, ``SourceError``, ``MessageError``), never anything else.

Inputs are structurally plausible bodies, the real fixtures under ``tests/fixtures`` mutated (fields
deleted or added, types swapped, huge / negative / NaN-like numbers, deep nesting, unicode, truncation;
HTML pages with tags and bytes deleted or inserted and cell texts replaced), and raw bytes.

``make test`` runs ``CRYPTOVIZ_FUZZ_EXAMPLES`` (default 5,000) examples per parser; ``make fuzz`` 50,000.
The HTML fixtures are trimmed to a few rows so that 5,000 pages parse in well under a minute.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from bs4 import BeautifulSoup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryptoviz.errors import MessageError, ParseError, SourceError
from cryptoviz.models import (
    CoinSnapshot,
    ParseResult,
    Rejection,
    SourceQuote,
    SourceValue,
    decode_snapshot,
    encode_snapshot,
)
from cryptoviz.sources import coingecko, coingecko_html, coinmarketcap, coinmarketcap_html, numbers

pytestmark = pytest.mark.fuzz

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLES = int(os.environ.get("CRYPTOVIZ_FUZZ_EXAMPLES", "5000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
COLLECTED = datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)
CURRENCIES = st.sampled_from(["usd", "usd", "usd", "eur", "gbp", "btc"])

# --- JSON documents ---------------------------------------------------------------------------------


class Raw:
    """JSON text put verbatim into a document (nesting too deep to build as Python objects)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def dump(value: Any) -> str:
    """JSON text; NaN and Infinity come out as the (invalid) tokens ``NaN`` / ``Infinity``."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


SPECIAL_TIMES = [
    "2021-04-20T23:29:02.000Z", "2021-04-20", "2021-04-20 23:29", "9999-12-31T23:59:59", "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "0001-01-01", "2021-02-30T00:00:00Z",
    "2021-04-20T24:00:00Z", "2021-04-20T23:29:02.000+99:00", "T", "20210420T232902Z",
]
SPECIAL_STRINGS = [
    "", " ", "NaN", "nan", "Infinity", "-Infinity", "1e999", "-0", "0x1F", "1,234.56", "$1.2B", "n/a", "null",
    "true", "[]", "{}", *SPECIAL_TIMES, "\x00", "\u202e", "\U0001f4a5", "\u00df" * 3, "\u00e9",
    "'); DROP TABLE currencies;--", "%s%s%n", "\\", "<script>", "a" * 3000, "USD", "usd", "cryptoCurrencyList",
]
SPECIAL_NUMBERS = [
    0, -0.0, -1, 1, 2**31, 2**53 + 1, 2**63, -(2**63), 2**64, 10**30, -(10**30), 10**400, 1e308, -1e308,
    1.7976931348623157e308, 5e-324, -5e-324, 1e-12, 1e13, 0.1, float("nan"), float("inf"), float("-inf"),
    400, 401, 403, 404, 429, 500, 503, 599, 600, 1001, 1002, 1006, 1007, 1008, 1009, 1010, 1011, 1099, 10002,
    10005, 10011, 99999,
]
SCALARS = st.one_of(
    st.sampled_from(SPECIAL_NUMBERS),
    st.sampled_from(SPECIAL_STRINGS),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),
    st.text(max_size=30),
)
WEIRD = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@st.composite
def deep(draw: st.DrawFn) -> Raw:
    """Nesting deeper than most decoders allow (orjson stops at 1024)."""
    depth = draw(st.integers(1, 1500))
    if draw(st.booleans()):
        return Raw("[" * depth + "1" + "]" * depth)
    return Raw('{"a":' * depth + "null" + "}" * depth)


def swap_type(value: Any) -> Any:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return [value]
    return {}


Path = tuple[str | int, ...]
_PATHS: dict[int, list[Path]] = {}


def paths_of(doc: Any, *, cache: bool = True) -> list[Path]:
    """Every node of ``doc`` (the root is ``()``); computed once for the module's seed documents."""
    found = _PATHS.get(id(doc)) if cache else None
    if found is None:
        found = []
        stack: list[tuple[Path, Any]] = [((), doc)]
        while stack:
            path, node = stack.pop()
            found.append(path)
            if isinstance(node, dict):
                stack.extend(((*path, k), v) for k, v in node.items())
            elif isinstance(node, list):
                stack.extend(((*path, i), v) for i, v in enumerate(node))
        found.sort(key=lambda p: (len(p), [str(x) for x in p]))
        if cache:
            _PATHS[id(doc)] = found
    return found


TIMEZONES = st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14)),
                             timezone(timedelta(hours=5, minutes=30))])
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=TIMEZONES).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.000Z")),
    st.sampled_from(SPECIAL_TIMES),
)


def plausible(value: Any) -> st.SearchStrategy[Any]:
    """A replacement of the same kind: another time for a time, an extreme number for a number..."""
    if isinstance(value, bool):
        return st.booleans() | st.sampled_from([0, 1, "true", None])
    if isinstance(value, int | float):
        return st.sampled_from(SPECIAL_NUMBERS) | st.floats() | st.integers(-(10**30), 10**30)
    if isinstance(value, str) and value[:2].isdigit() and "-" in value:
        return TIMESTAMPS
    if isinstance(value, str):
        return st.sampled_from(SPECIAL_STRINGS) | st.text(max_size=30)
    return WEIRD


def _parent(doc: Any, path: Path) -> Any:
    node = doc
    for step in path[:-1]:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return None
    return node


@st.composite
def mutated(draw: st.DrawFn, doc: Any, cache: bool = True) -> Any:
    """A copy of ``doc`` with up to six edits at random places: a value replaced by one of its kind or by
    anything, a field or item deleted or duplicated, a type swapped, nesting deeper than decoders allow."""
    out = copy.deepcopy(doc)
    paths = paths_of(doc, cache=cache)
    for _ in range(draw(st.integers(0, 6))):
        path = paths[draw(st.integers(0, len(paths) - 1))]
        op = draw(st.integers(0, 6))
        if not path:
            if op in (0, 1):
                out = draw(WEIRD)
            elif op == 2:
                out = swap_type(out)
            continue
        parent, key = _parent(out, path), path[-1]
        try:
            value = parent[key]
        except (KeyError, IndexError, TypeError):
            continue  # gone with an earlier edit
        if op == 0:
            parent[key] = draw(plausible(value))
        elif op == 1:
            parent[key] = draw(WEIRD)
        elif op == 2:
            del parent[key]
        elif op == 3:
            parent[key] = swap_type(value)
        elif op == 4:
            parent[key] = draw(deep())
        elif op == 5 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
        elif op == 5:
            parent[draw(st.sampled_from(["extra", "", str(key).upper(), "error", "status", "data"]))] = value
        else:
            parent[key] = None
    return out


@st.composite
def byte_mutations(draw: st.DrawFn, body: bytes) -> bytes:
    """Truncation, junk bytes, a BOM, another encoding."""
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.integers(0, 9))
        at = draw(st.integers(0, len(body)))
        if op == 9:
            body = body[:at]
        elif op == 8:
            body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
        elif op == 7 and at < len(body):
            body = body[:at] + body[at + draw(st.integers(1, 64)):]
    encoding = draw(st.integers(0, 19))
    if encoding == 19:
        body = b"\xef\xbb\xbf" + body
    elif encoding == 18:
        body = body.decode("utf-8", "replace").encode("utf-16")
    return body


def read_json(path: Path, keep: int | None = None) -> Any:
    """A fixture, with its coin list cut to ``keep`` items (small inputs mutate and parse faster)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    if keep is not None:
        if isinstance(doc, list):
            doc = doc[:keep]
        elif isinstance(doc, dict) and isinstance(doc.get("data"), list):
            doc["data"] = doc["data"][:keep]
    return doc


CG = FIXTURES / "coingecko"
CMC = FIXTURES / "coinmarketcap"
COINGECKO_DOCS = [read_json(CG / "markets-usd-page1.json", 4), read_json(CG / "error-429.json"),
                  read_json(CG / "error-invalid-key.json"), read_json(CG / "error-vs-currency.json"),
                  {"error": {"status": {"error_code": 10002, "error_message": "Missing API key"}}}]
CMC_DOCS = [read_json(CMC / "listings-latest-newer.json", 4), read_json(CMC / "listings-latest-older.json", 4),
            read_json(CMC / "listings-latest-2021-04-20.json", 4), read_json(CMC / "error-1001.json"),
            read_json(CMC / "error-1008.json"), read_json(CMC / "error-1009.json")]


@st.composite
def json_bodies(draw: st.DrawFn, source: str) -> bytes:
    """A mutated fixture (mostly this parser's own, sometimes the other API's), or raw bytes."""
    own, other = (COINGECKO_DOCS, CMC_DOCS) if source == "coingecko" else (CMC_DOCS, COINGECKO_DOCS)
    kind = draw(st.integers(0, 9))
    if kind == 9:
        return draw(st.binary(max_size=600))
    if kind == 8:
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    docs = other if kind == 7 else own
    base = docs[draw(st.integers(0, len(docs) - 1))]
    return draw(byte_mutations(dump(draw(mutated(base))).encode("utf-8", "surrogatepass")))


# --- HTML pages -------------------------------------------------------------------------------------


def _trim_rows(soup: BeautifulSoup, keep_first: int, keep_last: int) -> None:
    for table in soup.find_all("table"):
        rows = [tr for tr in table.find_all("tr") if tr.find("td") is not None]
        for i, tr in enumerate(rows):
            is_ad = any(td.get("colspan") for td in tr.find_all("td"))
            if i >= keep_first and i < len(rows) - keep_last and not is_ad:
                tr.decompose()


def _trim_lists(node: Any, keep: int) -> Any:
    """Cut every ``cryptoCurrencyList`` to ``keep`` items, also inside values that are JSON strings."""
    if isinstance(node, dict):
        return {k: (v[:keep] if k == "cryptoCurrencyList" and isinstance(v, list) else _trim_lists(v, keep))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_trim_lists(v, keep) for v in node]
    if isinstance(node, str) and "cryptoCurrencyList" in node and node.lstrip()[:1] in ("{", "["):
        try:
            return json.dumps(_trim_lists(json.loads(node), keep), separators=(",", ":"))
        except ValueError:
            return node
    return node


def trimmed_page(name: str, rows: int = 2, items: int = 4) -> bytes:
    """A fixture page cut down to what the parsers read: a few rows, a few list items, no navigation."""
    raw = (FIXTURES / "html" / name).read_bytes()
    soup = BeautifulSoup(raw, "lxml")
    if soup.find("table") is not None or soup.find("script", id="__NEXT_DATA__") is not None:
        for tag in soup.find_all(["nav", "footer", "header", "link", "style", "svg", "button"]):
            tag.decompose()
        for tag in soup.find_all("script"):
            if tag.get("id") != "__NEXT_DATA__":
                tag.decompose()
        for tag in soup.find_all("meta"):
            if not tag.get("charset"):
                tag.decompose()
    _trim_rows(soup, rows, 1)
    script = soup.find("script", id="__NEXT_DATA__")
    if script is not None:
        doc = _trim_lists(json.loads(script.get_text()), items)
        script.string = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return str(soup).encode("utf-8")


COINGECKO_PAGES = [trimmed_page(n) for n in (
    "coingecko-en-page1.html", "coingecko-fr-page1.html", "coingecko-en-no-header.html",
    "coingecko-en-broken-rows.html", "coingecko-en-lazy-rows.html", "coingecko-en-no-table-marker.html",
    "coingecko-en-renamed-classes.html", "coingecko-en-empty-table.html", "coingecko-en-no-table.html",
    "coingecko-challenge.html", "coingecko-access-denied.html")]
CMC_PAGES = [trimmed_page(n) for n in (
    "coinmarketcap-en-page1.html", "coinmarketcap-fr-page1.html", "coinmarketcap-en-no-next-data.html",
    "coinmarketcap-fr-no-next-data.html", "coinmarketcap-en-list-in-page-props.html",
    "coinmarketcap-en-json-without-list.html", "coinmarketcap-en-broken-items.html",
    "coinmarketcap-en-broken-rows.html", "coinmarketcap-en-renamed-classes.html",
    "coinmarketcap-en-empty-list.html", "coinmarketcap-en-no-list-no-table.html",
    "coinmarketcap-challenge.html")]

SNIPPETS = [
    b"<table>", b"</table>", b"<thead>", b"<tbody>", b"</tbody>", b"<tr>", b"</tr>", b"<td>", b"</td>",
    b'<td colspan="99999">', b'<td colspan="-3">', b'<td colspan="2.5">', b'<td colspan="\xd9\xa3">',
    b"<th>Price</th>", b"<th>Coin</th>", b"<th>Market Cap</th>", b"<th>#</th>", b"<th>Volume</th>",
    b"<th>Circulating Supply</th>", b'<a href="/en/coins/x%FF%00">', b'<a href="/fr-FR/coins/%E2%82%AC">',
    b'<a href="/currencies/bitcoin/">', b'<a href="https://coinmarketcap.com/currencies/a/?x#y">', b"</a>",
    b"<sub>5</sub>", b"<sub>400</sub>", b"<sub>99999</sub>", b"<sub>\xe2\x82\x85</sub>",
    b'<span class="gecko-down">', b'<span class="icon-Caret-down">', b'<img alt="BTC">',
    b'<img src="https://s2.coinmarketcap.com/static/img/coins/64x64/99999999999999999999.png" alt=" logo">',
    b'<p class="coin-item-symbol"></p>', b'<script id="__NEXT_DATA__" type="application/json">', b"</script>",
    b'{"cryptoCurrencyList": [{"id": 1, "quotes": [{"name": "USD", "price": NaN}]}]}',
    b'"{\\"cryptoCurrencyList\\": []}"', b'<html lang="de">', b'<html lang="fr-FR">', b'<html lang="">',
    b"<!--", b"-->", b"<![CDATA[", b'<?xml version="1.0" encoding="ebcdic"?>', b'<meta charset="x-unknown">',
    b'<meta charset="utf-16">', b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", "\u20ac \u2085 \u2212 \u202f".encode(),
    b"<div>" * 1200, b"<b><i>" * 300, b"&#0;&#xD800;&#x110000;&amp", b"Just a moment...",
    b"429 Too Many Requests", b"$1,234.56", b"1,23 Md $", b"n/a", b"-", b"<td>$0.0<sub>5</sub>123</td>",
]
NUMBER_PARTS = [
    "$", "\u20ac", "\u00a3", "US$", "$US", "CA$", "USD", "EUR", "-", "+", "\u2212", "<", ">", "\u2248", "~",
    "0", "1", "2", "9", "0.0", "\u2085", "\u2081\u2082", "\u2080", ",", ".", " ", "\u202f", "\u00a0", "k",
    "K", "M", "Md", "Mds", "Mrd", "Bn", "bn", "T", "Tn", "%", "e", "E+", "e-", "999", "123456", "n/a",
    "\u2014", "--", "?", "N/A", "\u200b", "\ufeff", "\u0663", "\u00b2",
]
NUMBER_TEXT = st.one_of(
    st.lists(st.sampled_from(NUMBER_PARTS), max_size=12).map("".join),
    st.text(max_size=40),
    st.text(alphabet="0123456789.,  $%-+\u20ac\u2085kMBT<", max_size=30),
)


def _next_data_mutation(draw: st.DrawFn, body: bytes) -> bytes:
    """Mutate the coin items inside ``__NEXT_DATA__`` (the JSON path of coinmarketcap.com pages)."""
    m = re.search(rb'(<script id="__NEXT_DATA__"[^>]*>)(.*?)(</script>)', body, re.DOTALL)
    if m is None:
        return body
    try:
        doc = json.loads(m.group(2))
    except ValueError:
        return body

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (draw(mutated(v, cache=False)) if k == "cryptoCurrencyList" else walk(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str) and "cryptoCurrencyList" in node and node.lstrip()[:1] == "{":
            try:
                return dump(walk(json.loads(node)))
            except ValueError:
                return node
        return node

    text = dump(walk(doc)).replace("<", "\\u003c")
    return body[:m.start(2)] + text.encode("utf-8", "surrogatepass") + body[m.end(2):]


@st.composite
def html_bodies(draw: st.DrawFn, site: str) -> bytes:
    """A trimmed fixture page with up to six edits, or raw bytes."""
    if draw(st.integers(0, 9)) == 9:
        return draw(st.binary(max_size=600))
    pages = COINGECKO_PAGES if site == "coingecko" else CMC_PAGES
    body = pages[draw(st.integers(0, len(pages) - 1))]
    if draw(st.integers(0, 3)) == 3:  # first (and once): what it adds may be nested too deep to re-read
        body = _next_data_mutation(draw, body)
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.integers(0, 5))
        if op == 0:  # a cell's text replaced by a number-like string
            texts = list(re.finditer(rb">([^<>]+)<", body))
            if texts:
                t = draw(st.sampled_from(texts))
                body = body[:t.start(1)] + draw(NUMBER_TEXT).encode("utf-8", "surrogatepass") + body[t.end(1):]
        elif op == 1:  # a tag deleted
            tags = list(re.finditer(rb"<[^<>]*>", body))
            if tags:
                t = draw(st.sampled_from(tags))
                body = body[:t.start()] + body[t.end():]
        elif op == 2:  # a snippet inserted
            at = draw(st.integers(0, len(body)))
            snippet = draw(st.sampled_from(SNIPPETS) | st.binary(min_size=1, max_size=16))
            body = body[:at] + snippet + body[at:]
        elif op == 3:  # a span deleted
            at = draw(st.integers(0, len(body)))
            body = body[:at] + body[at + draw(st.integers(1, 400)):]
        elif op == 4:  # cut short
            body = body[:draw(st.integers(0, len(body)))]
        else:  # an attribute value replaced
            attrs = list(re.finditer(rb'="([^"]*)"', body))
            if attrs:
                a = draw(st.sampled_from(attrs))
                value = draw(st.sampled_from([b"", b"99999", b"-1", b"/en/coins/", b"fr", b"symbol", b"down"])
                             | st.binary(max_size=12))
                body = body[:a.start(1)] + value.replace(b'"', b"") + body[a.end(1):]
    return body


# --- the properties ---------------------------------------------------------------------------------


def check_result(result: Any, source: str) -> None:
    assert isinstance(result, ParseResult)
    for quote in result.quotes:
        assert isinstance(quote, SourceQuote)
        assert quote.source == source
        assert quote.name and quote.symbol and quote.source_id
        for value in (quote.price, quote.market_cap, quote.volume_24h, quote.change_1h, quote.change_24h,
                      quote.change_7d, quote.circulating_supply, quote.total_supply, quote.max_supply):
            assert value is None or isinstance(value, float)
        assert quote.rank is None or isinstance(quote.rank, int)
        assert quote.last_updated is None or quote.last_updated.tzinfo is not None
    for rejection in result.rejected:
        assert isinstance(rejection, Rejection)
        assert rejection.source == source and rejection.reason and rejection.field


def parse_or_fail_cleanly(parse: Callable[[bytes, datetime, str], ParseResult], body: bytes, currency: str,
                          source: str) -> None:
    try:
        result = parse(body, COLLECTED, currency)
    except (ParseError, SourceError) as exc:
        assert str(exc).strip(), "an error must say what went wrong"
        return
    check_result(result, source)


@FUZZ
@given(body=json_bodies("coingecko"), currency=CURRENCIES)
def test_coingecko_parse_markets(body: bytes, currency: str) -> None:
    parse_or_fail_cleanly(coingecko.parse_markets, body, currency, "coingecko")


@FUZZ
@given(body=json_bodies("coinmarketcap"), currency=CURRENCIES)
def test_coinmarketcap_parse_listings(body: bytes, currency: str) -> None:
    parse_or_fail_cleanly(coinmarketcap.parse_listings, body, currency, "coinmarketcap")


@FUZZ
@given(body=html_bodies("coingecko"), currency=CURRENCIES)
def test_coingecko_html_parse_page(body: bytes, currency: str) -> None:
    parse_or_fail_cleanly(coingecko_html.parse_page, body, currency, "coingecko-html")


@FUZZ
@given(body=html_bodies("coinmarketcap"), currency=CURRENCIES)
def test_coinmarketcap_html_parse_page(body: bytes, currency: str) -> None:
    parse_or_fail_cleanly(coinmarketcap_html.parse_page, body, currency, "coinmarketcap-html")


@FUZZ
@given(text=st.one_of(NUMBER_TEXT, st.none(), st.integers(), st.floats()),
       locale=st.sampled_from(["en", "en", "fr", "fr", "de"]))
def test_numbers_parse_number(text: Any, locale: str) -> None:
    try:
        value = numbers.parse_number(text, locale=locale)
    except ParseError as exc:
        assert str(exc).startswith("cannot read number")
        return
    assert value is None or (isinstance(value, float) and math.isfinite(value))


def _snapshot(n: int) -> CoinSnapshot:
    at = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=n)
    return CoinSnapshot(
        coin_id=f"coin-{n}", symbol=f"C{n}", name=f"Coin {n}", slug=f"coin-{n}", rank=n + 1, price=100.0 + n,
        market_cap=1e8, volume_24h=1e5, change_1h=0.5, change_24h=None, change_7d=-2.0, circulating_supply=1e6,
        total_supply=None, max_supply=2e6, confidence=0.8, observed_at=at, currency="usd",
        coingecko_id=f"coin-{n}", coinmarketcap_id=str(n),
        sources=(SourceValue("coingecko", f"coin-{n}", 100.0 + n, 1e8, 1e5, at),
                 SourceValue("coinmarketcap", str(n), 101.0 + n, None, None, None, used=False,
                             dropped_reason="outlier")),
    )


MESSAGES = [orjson.loads(encode_snapshot(_snapshot(n))) for n in range(2)]


@st.composite
def messages(draw: st.DrawFn) -> Any:
    kind = draw(st.integers(0, 9))
    if kind == 9:
        return draw(st.binary(max_size=400))
    if kind == 8:
        return draw(st.none() | st.text(max_size=100))
    body = dump(draw(mutated(draw(st.sampled_from(MESSAGES))))).encode("utf-8", "surrogatepass")
    body = draw(byte_mutations(body))
    return body.decode("utf-8", "replace") if draw(st.integers(0, 9)) == 9 else body


@FUZZ
@given(value=messages())
def test_models_decode_snapshot(value: Any) -> None:
    try:
        snapshot = decode_snapshot(value)
    except MessageError as exc:
        assert str(exc).strip()
        return
    assert isinstance(snapshot, CoinSnapshot)
    assert snapshot.coin_id and snapshot.price > 0 and math.isfinite(snapshot.price)
    assert 0.0 <= snapshot.confidence <= 1.0
    assert snapshot.observed_at.tzinfo is not None


def test_the_fixtures_still_parse() -> None:
    """The trimmed pages used as seeds are still what the parsers expect (else the fuzzing is shallow)."""
    assert coingecko.parse_markets(dump(COINGECKO_DOCS[0]).encode(), COLLECTED, "usd").quotes
    assert coinmarketcap.parse_listings(dump(CMC_DOCS[0]).encode(), COLLECTED, "usd").quotes
    assert len(coingecko_html.parse_page(COINGECKO_PAGES[0], COLLECTED, "usd").quotes) >= 3
    assert len(coinmarketcap_html.parse_page(CMC_PAGES[0], COLLECTED, "usd").quotes) >= 3
    assert len(coinmarketcap_html.parse_page(CMC_PAGES[2], COLLECTED, "usd").quotes) >= 3
    assert decode_snapshot(orjson.dumps(MESSAGES[0])) == _snapshot(0)
