"""Property-based fuzzing of every parser: whatever arrives, a parser returns a result or raises one of the
project's own errors (``ParseError``, ``SourceError``, ``MessageError``), never anything else.

Inputs are structurally plausible bodies made from the real fixtures under ``tests/fixtures`` (fields
deleted, added or duplicated, types swapped, huge / negative / NaN-like numbers, extreme or malformed
timestamps, nesting deeper than decoders allow, unicode, truncation, junk bytes, other encodings; HTML pages
with tags, attributes and bytes deleted or inserted and cell texts replaced by number-like strings), and raw
bytes.

Hypothesis draws one seed per example and a seeded :class:`Fuzzer` builds the input from it: one draw
instead of hundreds keeps 5,000 examples per parser affordable on a small machine. The failing input is
attached to the report with ``note`` (and the seed reproduces it). ``make test`` runs
``CRYPTOVIZ_FUZZ_EXAMPLES`` (default 5,000) examples per parser, ``make fuzz`` 50,000. The HTML fixtures are
cut down to a few rows and to the attributes the parsers read, so that a page parses in a few milliseconds.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from bs4 import BeautifulSoup, Tag
from hypothesis import HealthCheck, given, note, settings
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
from cryptoviz.sources import (
    binance,
    coinbase,
    coingecko,
    coingecko_history,
    coingecko_html,
    coinmarketcap,
    coinmarketcap_history,
    coinmarketcap_html,
    coinpaprika,
    kraken,
    numbers,
)
from cryptoviz.sources.coingecko_history import History

pytestmark = pytest.mark.fuzz

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXAMPLES = int(os.environ.get("CRYPTOVIZ_FUZZ_EXAMPLES", "5000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SEEDS = st.integers(min_value=0, max_value=2**64 - 1)
COLLECTED = datetime(2024, 6, 1, 12, 0, 5, tzinfo=UTC)
CURRENCIES = ("usd", "usd", "usd", "usd", "eur", "gbp", "btc")

# --- ingredients ------------------------------------------------------------------------------------

SPECIAL_TIMES = [
    "2021-04-20T23:29:02.000Z", "2021-04-20", "2021-04-20 23:29", "9999-12-31T23:59:59", "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59.999999+00:00", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "0001-01-01",
    "2021-02-30T00:00:00Z", "2021-04-20T24:00:00Z", "2021-04-20T23:29:02.000+99:00", "T", "20210420T232902Z",
    "2021-W16-2", "2021-04-20T23:29:02,5Z", "+002021-04-20",
]
SPECIAL_STRINGS = [
    "", " ", "NaN", "nan", "Infinity", "-Infinity", "1e999", "-0", "0x1F", "1,234.56", "$1.2B", "n/a", "null",
    "true", "[]", "{}", *SPECIAL_TIMES, "\x00", "\u202e", "\U0001f4a5", "\u00df" * 3, "\u00e9", "\ud800",
    "'); DROP TABLE currencies;--", "%s%s%n", "\\", "<script>", "a" * 3000, "USD", "usd", "cryptoCurrencyList",
]
SPECIAL_NUMBERS: list[Any] = [
    0, -0.0, -1, 1, 2**31, 2**53 + 1, 2**63, -(2**63), 2**64, 10**30, -(10**30), 10**400, 1e308, -1e308,
    1.7976931348623157e308, 5e-324, -5e-324, 1e-12, 1e13, 0.1, float("nan"), float("inf"), float("-inf"),
    400, 401, 403, 404, 429, 500, 503, 599, 600, 1001, 1002, 1006, 1007, 1008, 1009, 1010, 1011, 1099, 10002,
    10005, 10011, 99999, True, False,
]
NUMBER_PARTS = [
    "$", "\u20ac", "\u00a3", "US$", "$US", "CA$", "USD", "EUR", "-", "+", "\u2212", "<", ">", "\u2248", "~",
    "0", "1", "2", "9", "0.0", "\u2085", "\u2081\u2082", "\u2080", ",", ".", " ", "\u202f", "\u00a0", "k",
    "K", "M", "Md", "Mds", "Mrd", "Bn", "bn", "T", "Tn", "%", "e", "E+", "e-", "999", "123456", "n/a",
    "\u2014", "--", "?", "N/A", "\u200b", "\ufeff", "\u0663", "\u00b2", "<sub>5</sub>",
]
SNIPPETS = [
    b"<table>", b"</table>", b"<thead>", b"<tbody>", b"</tbody>", b"<tr>", b"</tr>", b"<td>", b"</td>",
    b'<td colspan="99999">', b'<td colspan="-3">', b'<td colspan="2.5">', "<td colspan=\"\u0663\">".encode(),
    b"<th>Price</th>", b"<th>Coin</th>", b"<th>Market Cap</th>", b"<th>#</th>", b"<th>Volume</th>",
    b"<th>Circulating Supply</th>", b'<a href="/en/coins/x%FF%00">', b'<a href="/fr-FR/coins/%E2%82%AC">',
    b'<a href="/currencies/bitcoin/">', b'<a href="https://coinmarketcap.com/currencies/a/?x#y">', b"</a>",
    b"<sub>5</sub>", b"<sub>400</sub>", b"<sub>99999</sub>", "<sub>\u2085</sub>".encode(),
    b'<span class="gecko-down">', b'<span class="icon-Caret-down">', b'<img alt="BTC">',
    b'<img src="https://s2.coinmarketcap.com/static/img/coins/64x64/99999999999999999999.png" alt=" logo">',
    b'<p class="coin-item-symbol"></p>', b'<script id="__NEXT_DATA__" type="application/json">', b"</script>",
    b'{"cryptoCurrencyList": [{"id": 1, "quotes": [{"name": "USD", "price": NaN}]}]}',
    b'"{\\"cryptoCurrencyList\\": []}"', b'<html lang="de">', b'<html lang="fr-FR">', b'<html lang="">',
    b"<!--", b"-->", b"<![CDATA[", b'<?xml version="1.0" encoding="ebcdic"?>', b'<meta charset="x-unknown">',
    b'<meta charset="utf-16">', b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", "\u20ac \u2085 \u2212 \u202f".encode(),
    b"<div>" * 600, b"<b><i>" * 200, b"&#0;&#xD800;&#x110000;&amp", b"Just a moment...",
    b"429 Too Many Requests", b"$1,234.56", b"1,23 Md $", b"n/a", b"-", b"<td>$0.0<sub>5</sub>123</td>",
    # older layouts: exact values in attributes, the symbol as a link, other JSON shapes, browser formats
    b'<td data-usd="1e999" data-sort="nan">', b'<a class="price" data-usd="abc">', b'<span data-supply="-0">',
    b'<td data-percentusd="1.234" data-timespan="1h" data-symbol="">', b'<td data-cc-id="99999999999999999999">',
    b'<span class="currency-symbol"><a href="/currencies/bitcoin/">BTC</a></span>',
    b'<a class="coin-symbol" href="/en/coins/bitcoin">', b'<img class="coin-logo" src="./x_files/1.png">',
    b'<th>Symbol</th>', b'<th>Mkt Cap</th>', b'<th>Change (24h)</th>', b"<table><thead><tr><th>Coin</th>"
    b"<th>Price</th><th>Market Cap</th></tr></thead></table>",
    b'"listingLatest": {"data": [{"keysArr": ["id", "quote.USD.price", "a.b.c.d"]}, [1, "x"], []]}',
    b'"{\\"listingLatest\\": {\\"data\\": [{\\"keysArr\\": null}]}}"', b'{"keysArr": [1, null, ""]}',
    b"$7.299.982.172", b"0,05%", b"1.234", b"$1,234", b"1.234,5", b"\xc2\xa0436,54",
]
ATTRIBUTE_VALUES = [b"", b"99999", b"-1", b"/en/coins/", b"/currencies//", b"fr", b"de", b"symbol", b"down",
                    b"table", b"__NEXT_DATA__", b"/coins/64x64/x.png", b"1e999", b"nan", b"1.234", b"-0", b"?",
                    b"coin-logo", b"currency-symbol", b"1h", b"24h", b"./x_files/123.png"]


class Raw:
    """JSON text put verbatim into a document (nesting too deep to build as Python objects)."""

    def __init__(self, text: str) -> None:
        self.text = text


def dump(value: Any) -> str:
    """JSON text; NaN and Infinity come out as the (invalid) tokens ``NaN`` / ``Infinity``."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k))}:{dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    return json.dumps(value)


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate goes out as the bytes a bad encoder makes


Path_ = tuple[str | int, ...]


def paths_of(doc: Any) -> list[Path_]:
    """Every node of ``doc``; the root is ``()``."""
    found: list[Path_] = []
    stack: list[tuple[Path_, Any]] = [((), doc)]
    while stack:
        path, node = stack.pop()
        found.append(path)
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in enumerate(node))
    return found


class Fuzzer:
    """Builds one input from a seed: mutations of a seed document or page, or raw bytes."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # -- values --

    def number(self) -> Any:
        r = self.rng.random()
        if r < 0.4:
            return self.rng.choice(SPECIAL_NUMBERS)
        if r < 0.55:
            return struct.unpack("<d", self.rng.randbytes(8))[0]  # any double: subnormal, huge, NaN, inf
        if r < 0.8:
            bound = 10 ** self.rng.randint(1, 40)
            return self.rng.randint(-bound, bound)
        return self.rng.uniform(-1e6, 1e6)

    def text(self, size: int = 30) -> str:
        r = self.rng.random()
        if r < 0.35:
            return self.rng.choice(SPECIAL_STRINGS)
        if r < 0.55:
            return "".join(self.rng.choice(NUMBER_PARTS) for _ in range(self.rng.randint(0, 8)))
        if r < 0.8:
            return "".join(chr(self.rng.randint(32, 126)) for _ in range(self.rng.randint(0, size)))
        return "".join(chr(self.rng.choice([self.rng.randint(0, 0x2FF), self.rng.randint(0x300, 0xFFFF),
                                            self.rng.randint(0x10000, 0x10FFFF)]))
                       for _ in range(self.rng.randint(0, size)))

    def timestamp(self) -> str:
        if self.chance(0.3):
            return self.rng.choice(SPECIAL_TIMES)
        year = self.rng.choice([1, 1, 2, 1970, 2021, 2024, 2100, 9998, 9999, 9999, self.rng.randint(1, 9999)])
        moment = datetime(year, self.rng.randint(1, 12), self.rng.randint(1, 28), self.rng.randint(0, 23),
                          self.rng.randint(0, 59), self.rng.randint(0, 59), self.rng.choice([0, 999_999]))
        if year == 9999 and self.chance(0.5):
            moment = moment.replace(month=12, day=31, hour=23)
        if year == 1 and self.chance(0.5):
            moment = moment.replace(month=1, day=1, hour=0)
        text = moment.isoformat()
        suffix = self.rng.choice(["", "Z", "+00:00", "+14:00", "-14:00", "+05:30", "-23:59", ".000Z"])
        return text + suffix

    def weird(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth < 3 and r < 0.08:
            return [self.weird(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if depth < 3 and r < 0.16:
            return {self.text(8): self.weird(depth + 1) for _ in range(self.rng.randint(0, 3))}
        if r < 0.22:
            return None
        if r < 0.55:
            return self.number()
        if r < 0.65:
            return self.timestamp()
        return self.text()

    def deep(self) -> Raw:
        """Nesting deeper than most decoders allow (orjson stops at 1024)."""
        depth = self.rng.choice([self.rng.randint(1, 50), self.rng.randint(900, 1023), self.rng.randint(1024, 1100),
                                 3000])
        if self.chance(0.5):
            return Raw("[" * depth + "1" + "]" * depth)
        return Raw('{"a":' * depth + "null" + "}" * depth)

    def plausible(self, value: Any) -> Any:
        """A replacement of the same kind: another time for a time, an extreme number for a number..."""
        if isinstance(value, bool):
            return self.rng.choice([True, False, 0, 1, "true", None])
        if isinstance(value, int | float):
            return self.number()
        if isinstance(value, str) and value[:2].isdigit() and "-" in value:
            return self.timestamp()
        if isinstance(value, str):
            return self.text()
        return self.weird()

    # -- JSON documents --

    def mutate(self, doc: Any, paths: list[Path_] | None = None) -> Any:
        """A copy of ``doc`` with up to eight edits at random places."""
        out = copy.deepcopy(doc)
        paths = paths if paths is not None else paths_of(doc)
        for _ in range(self.rng.choice([0, 1, 1, 2, 2, 3, 4, 8])):
            path = self.rng.choice(paths)
            op = self.rng.randint(0, 7)
            if not path:
                out = self.weird() if op < 2 else (swap_type(out) if op == 2 else out)
                continue
            parent = out
            try:
                for step in path[:-1]:
                    parent = parent[step]
                key = path[-1]
                value = parent[key]
            except (KeyError, IndexError, TypeError):
                continue  # gone with an earlier edit
            if not isinstance(parent, dict | list):
                continue  # replaced by a scalar with an earlier edit
            if op in (0, 1):
                parent[key] = self.plausible(value)
            elif op == 2:
                parent[key] = self.weird()
            elif op == 3:
                del parent[key]
            elif op == 4:
                parent[key] = swap_type(value)
            elif op == 5:
                parent[key] = self.deep()
            elif op == 6 and isinstance(parent, list):
                parent.insert(int(key), copy.deepcopy(value))
            elif op == 6:
                parent[self.rng.choice(["extra", "", str(key).upper(), "error", "status", "data"])] = value
            else:
                parent[key] = None
        return out

    def bytes_of(self, text: str) -> bytes:
        """Encoded, then maybe cut short, spliced with junk, prefixed with a BOM or in UTF-16."""
        body = encode(text)
        for _ in range(self.rng.choice([0, 0, 0, 0, 0, 0, 0, 1, 1, 2])):
            at = self.rng.randint(0, len(body))
            op = self.rng.randint(0, 2)
            if op == 0:
                body = body[:at]
            elif op == 1:
                body = body[:at] + self.rng.randbytes(self.rng.randint(1, 8)) + body[at:]
            else:
                body = body[:at] + body[at + self.rng.randint(1, 64):]
        if self.chance(0.015):
            body = b"\xef\xbb\xbf" + body
        elif self.chance(0.015):
            body = body.decode("utf-8", "replace").encode("utf-16")
        return body

    def raw(self) -> bytes:
        if self.chance(0.5):
            return self.rng.randbytes(self.rng.randint(0, 600))
        return encode(self.text(200))

    def json_body(self, own: list[Any], other: list[Any]) -> bytes:
        """Mostly a mutation of this parser's own fixtures, sometimes of the other API's, or raw bytes."""
        r = self.rng.random()
        if r < 0.1:
            return self.raw()
        docs = other if r < 0.18 else own
        doc = self.rng.choice(docs)
        return self.bytes_of(dump(self.mutate(doc, PATHS[id(doc)])))

    # -- HTML pages --

    def html_body(self, pages: list[bytes]) -> bytes:
        if self.chance(0.08):
            return self.raw()
        body = self.rng.choice(pages)
        if self.chance(0.3):
            body = self.next_data(body)
        for _ in range(self.rng.choice([0, 1, 1, 2, 2, 3, 4, 6])):
            op = self.rng.randint(0, 5)
            if op == 0:  # a cell's text replaced by a number-like string
                texts = list(re.finditer(rb">([^<>]+)<", body))
                if texts:
                    t = self.rng.choice(texts)
                    body = body[:t.start(1)] + encode(self.text()) + body[t.end(1):]
            elif op == 1:  # a tag deleted
                tags = list(re.finditer(rb"<[^<>]*>", body))
                if tags:
                    t = self.rng.choice(tags)
                    body = body[:t.start()] + body[t.end():]
            elif op == 2:  # a snippet inserted
                at = self.rng.randint(0, len(body))
                snippet = self.rng.choice(SNIPPETS) if self.chance(0.8) else self.rng.randbytes(8)
                body = body[:at] + snippet + body[at:]
            elif op == 3:  # a span deleted
                at = self.rng.randint(0, len(body))
                body = body[:at] + body[at + self.rng.randint(1, 400):]
            elif op == 4:  # cut short
                body = body[:self.rng.randint(0, len(body))]
            else:  # an attribute value replaced
                attrs = list(re.finditer(rb'="([^"]*)"', body))
                if attrs:
                    a = self.rng.choice(attrs)
                    value = self.rng.choice(ATTRIBUTE_VALUES) if self.chance(0.7) else self.rng.randbytes(6)
                    body = body[:a.start(1)] + value.replace(b'"', b"") + body[a.end(1):]
        return body

    def next_data(self, body: bytes) -> bytes:
        """The coin items inside ``__NEXT_DATA__`` mutated (the JSON paths of coinmarketcap.com pages)."""
        m = re.search(rb'(<script id="__NEXT_DATA__"[^>]*>)(.*?)(</script>)', body, re.DOTALL)
        if m is None:
            return body
        try:
            doc = json.loads(m.group(2))
        except ValueError:
            return body

        def walk(node: Any) -> Any:
            if isinstance(node, dict):
                return {k: (self.mutate(v) if k in LIST_KEYS else walk(v)) for k, v in node.items()}
            if isinstance(node, list):
                return [walk(v) for v in node]
            if isinstance(node, str) and any(k in node for k in LIST_KEYS) and node.lstrip()[:1] == "{":
                try:
                    return dump(walk(json.loads(node)))
                except ValueError:
                    return node
            return node

        return body[:m.start(2)] + encode(dump(walk(doc)).replace("<", "\\u003c")) + body[m.end(2):]


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


# --- seed inputs ------------------------------------------------------------------------------------


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
CP = FIXTURES / "coinpaprika"
COINGECKO_DOCS = [read_json(CG / "markets-usd-page1.json", 4), read_json(CG / "error-429.json"),
                  read_json(CG / "error-invalid-key.json"), read_json(CG / "error-vs-currency.json"),
                  {"error": {"status": {"error_code": 10002, "error_message": "Missing API key"}}}]
CMC_DOCS = [read_json(CMC / "listings-latest-newer.json", 4), read_json(CMC / "listings-latest-older.json", 4),
            read_json(CMC / "listings-latest-2021-04-20.json", 4), read_json(CMC / "error-1001.json"),
            read_json(CMC / "error-1008.json"), read_json(CMC / "error-1009.json")]
PAPRIKA_DOCS = [read_json(CP / "tickers-usd.json", 4), read_json(CP / "error-429.json"),
                read_json(CP / "error-402.json"), read_json(CP / "error-400.json"), read_json(CP / "error-404.json")]

# What the page parsers read; everything else (Tailwind and styled-components classes, data-*, styles)
# is dropped from the seed pages to keep them small.
_KEPT_ATTRIBUTES = {"href", "src", "alt", "colspan", "id", "lang", "charset", "type", "data-coin-table-target",
                    "data-usd", "data-supply", "data-percentusd", "data-sort", "data-symbol", "data-coin-symbol",
                    "data-cc-id", "data-timespan"}
_KEPT_CLASS = re.compile(r"down|up|negative|danger|decrease|symbol|name|cmc-table|caret|hidden|logo",
                         re.IGNORECASE)
# Where the pages keep their coin lists: cut to a few items in the seeds, mutated by Fuzzer.next_data.
LIST_KEYS = ("cryptoCurrencyList", "listingLatest")


def _slim(soup: BeautifulSoup) -> None:
    for tag in soup.find_all(["nav", "footer", "header", "link", "style", "svg", "button", "meta", "h1", "p"]):
        if tag.name == "meta" and tag.get("charset"):
            continue
        if tag.name == "p" and tag.find_parent("table") is not None:
            continue
        tag.decompose()
    for tag in soup.find_all("script"):
        if tag.get("id") != "__NEXT_DATA__":
            tag.decompose()
    for tag in soup.find_all(True):
        classes = [c for c in (tag.get("class") or []) if _KEPT_CLASS.search(c)]
        tag.attrs = {k: v for k, v in tag.attrs.items() if k in _KEPT_ATTRIBUTES}
        if classes:
            tag["class"] = classes


def _trim_rows(soup: BeautifulSoup, keep_first: int, keep_last: int) -> None:
    for table in soup.find_all("table"):
        rows = [tr for tr in table.find_all("tr") if tr.find("td") is not None]
        for i, tr in enumerate(rows):
            cells = tr.find_all("td")
            is_ad = len(cells) == 1 and isinstance(cells[0], Tag) and cells[0].get("colspan") is not None
            if keep_first <= i < len(rows) - keep_last and not is_ad:
                tr.decompose()


def _trim_lists(node: Any, keep: int) -> Any:
    """Cut every ``cryptoCurrencyList`` and ``listingLatest.data`` to ``keep`` items (a ``keysArr`` item and
    ``keep`` rows), also inside values that are JSON strings."""
    if isinstance(node, dict):
        out = {k: (v[:keep] if k == "cryptoCurrencyList" and isinstance(v, list) else _trim_lists(v, keep))
               for k, v in node.items()}
        listing = out.get("listingLatest")
        if isinstance(listing, dict) and isinstance(listing.get("data"), list):
            data = listing["data"]
            keyed = bool(data) and isinstance(data[0], dict) and "keysArr" in data[0]
            out["listingLatest"] = dict(listing, data=data[:keep + keyed])
        return out
    if isinstance(node, list):
        return [_trim_lists(v, keep) for v in node]
    if isinstance(node, str) and any(k in node for k in LIST_KEYS) and node.lstrip()[:1] in ("{", "["):
        try:
            return json.dumps(_trim_lists(json.loads(node), keep), separators=(",", ":"))
        except ValueError:
            return node
    return node


def trimmed_page(name: str, rows: int = 2, items: int = 3) -> bytes:
    """A fixture page cut down to what the parsers read: a few rows, a few list items, no decoration."""
    soup = BeautifulSoup((FIXTURES / "html" / name).read_bytes(), "lxml")
    if soup.find("table") is not None or soup.find("script", id="__NEXT_DATA__") is not None:
        _slim(soup)  # block pages stay whole: their text is what identifies them
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
    "coingecko-challenge.html", "coingecko-access-denied.html", "real/coingecko-2020-home-made.html")]
CMC_PAGES = [trimmed_page(n) for n in (
    "coinmarketcap-en-page1.html", "coinmarketcap-fr-page1.html", "coinmarketcap-en-no-next-data.html",
    "coinmarketcap-fr-no-next-data.html", "coinmarketcap-en-list-in-page-props.html",
    "coinmarketcap-en-json-without-list.html", "coinmarketcap-en-broken-items.html",
    "coinmarketcap-en-broken-rows.html", "coinmarketcap-en-renamed-classes.html",
    "coinmarketcap-en-empty-list.html", "coinmarketcap-en-no-list-no-table.html",
    "coinmarketcap-challenge.html", "real/coinmarketcap-2025-home.html", "real/coinmarketcap-2018-home-made.html",
    "real/coinmarketcap-2019-all-browser-de-made.html", "real/coinmarketcap-2020-home-made.html",
    "real/coinmarketcap-2022-all-keysarr-made.html")]
# The 2020 page without its __NEXT_DATA__: the React table after its header-only copies.
CMC_PAGES.append(re.sub(rb'<script id="__NEXT_DATA__".*?</script>', b"", CMC_PAGES[-2], flags=re.DOTALL))


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
PATHS = {id(doc): paths_of(doc) for doc in [*COINGECKO_DOCS, *CMC_DOCS, *PAPRIKA_DOCS, *MESSAGES]}


# --- the properties ---------------------------------------------------------------------------------


def check_result(result: Any, source: str, *, named: bool = True) -> None:
    """``named``: the source names its coins (an exchange names pairs only)."""
    assert isinstance(result, ParseResult)
    for quote in result.quotes:
        assert isinstance(quote, SourceQuote)
        assert quote.source == source
        assert (quote.name or not named) and quote.symbol and quote.source_id
        for value in (quote.price, quote.market_cap, quote.volume_24h, quote.change_1h, quote.change_24h,
                      quote.change_7d, quote.circulating_supply, quote.total_supply, quote.max_supply):
            assert value is None or isinstance(value, float)
        assert quote.rank is None or isinstance(quote.rank, int)
        assert quote.last_updated is None or quote.last_updated.tzinfo is not None
    for rejection in result.rejected:
        assert isinstance(rejection, Rejection)
        assert rejection.source == source and rejection.reason and rejection.field


def parse_or_fail_cleanly(parse: Callable[[bytes, datetime, str], ParseResult], body: bytes, currency: str,
                          source: str, *, named: bool = True) -> None:
    note(f"currency={currency!r} body={body[:4000]!r}{' (cut)' if len(body) > 4000 else ''}")
    try:
        result = parse(body, COLLECTED, currency)
    except (ParseError, SourceError) as exc:
        assert str(exc).strip(), "an error must say what went wrong"
        return
    check_result(result, source, named=named)


@FUZZ
@given(seed=SEEDS)
def test_coingecko_parse_markets(seed: int) -> None:
    fuzz = Fuzzer(seed)
    body = fuzz.json_body(COINGECKO_DOCS, CMC_DOCS)
    parse_or_fail_cleanly(coingecko.parse_markets, body, fuzz.rng.choice(CURRENCIES), "coingecko")


@FUZZ
@given(seed=SEEDS)
def test_coinmarketcap_parse_listings(seed: int) -> None:
    fuzz = Fuzzer(seed)
    body = fuzz.json_body(CMC_DOCS, COINGECKO_DOCS)
    parse_or_fail_cleanly(coinmarketcap.parse_listings, body, fuzz.rng.choice(CURRENCIES), "coinmarketcap")


@FUZZ
@given(seed=SEEDS)
def test_coinpaprika_parse_tickers(seed: int) -> None:
    fuzz = Fuzzer(seed)
    body = fuzz.json_body(PAPRIKA_DOCS, COINGECKO_DOCS)
    parse_or_fail_cleanly(coinpaprika.parse_tickers, body, fuzz.rng.choice(CURRENCIES), "coinpaprika")


@FUZZ
@given(seed=SEEDS)
def test_coingecko_html_parse_page(seed: int) -> None:
    fuzz = Fuzzer(seed)
    body = fuzz.html_body(COINGECKO_PAGES)
    parse_or_fail_cleanly(coingecko_html.parse_page, body, fuzz.rng.choice(CURRENCIES), "coingecko-html")


@FUZZ
@given(seed=SEEDS)
def test_coinmarketcap_html_parse_page(seed: int) -> None:
    fuzz = Fuzzer(seed)
    body = fuzz.html_body(CMC_PAGES)
    parse_or_fail_cleanly(coinmarketcap_html.parse_page, body, fuzz.rng.choice(CURRENCIES),
                          "coinmarketcap-html")


NUMBER_TEXT = st.one_of(
    st.lists(st.sampled_from(NUMBER_PARTS), max_size=10).map("".join),
    st.text(max_size=40),
    st.text(alphabet="0123456789.,  $%-+\u20ac\u2085kMBT<", max_size=30),
    st.none(),
    st.integers() | st.floats(),
)


@FUZZ
@given(text=NUMBER_TEXT, locale=st.sampled_from(["en", "fr", "de"]))
def test_numbers_parse_number(text: Any, locale: str) -> None:
    try:
        value = numbers.parse_number(text, locale=locale)
    except ParseError as exc:
        assert str(exc).startswith("cannot read number")
        return
    assert value is None or (isinstance(value, float) and math.isfinite(value))


@FUZZ
@given(texts=st.lists(st.one_of(st.lists(st.sampled_from(NUMBER_PARTS), max_size=10).map("".join),
                                st.text(max_size=40)), max_size=8),
       decimal=st.sampled_from([None, ".", ",", ";"]), locale=st.sampled_from(["en", "fr"]))
def test_numbers_decimal_mark(texts: list[str], decimal: str | None, locale: str) -> None:
    """Telling the decimal mark never fails, and a number read in the mark it shows reads back."""
    settled = numbers.settle_decimal_mark(texts)
    assert settled in (None, ".", ",")
    for text in texts:
        mark = numbers.decimal_mark(text)
        assert mark in (None, ".", ",", numbers.AMBIGUOUS)
        try:
            value = numbers.parse_detailed(text, locale=locale, decimal=decimal).value
        except ParseError as exc:
            assert str(exc).startswith("cannot read number")
            continue
        assert value is None or math.isfinite(value)


@FUZZ
@given(seed=SEEDS)
def test_models_decode_snapshot(seed: int) -> None:
    fuzz = Fuzzer(seed)
    r = fuzz.rng.random()
    value: bytes | str | None
    if r < 0.05:
        value = None
    elif r < 0.15:
        value = fuzz.raw()
    else:
        doc = fuzz.rng.choice(MESSAGES)
        value = fuzz.bytes_of(dump(fuzz.mutate(doc, PATHS[id(doc)])))
        if fuzz.chance(0.1):
            value = value.decode("utf-8", "surrogateescape" if fuzz.chance(0.5) else "replace")
    note(f"value={value!r:.4000}")
    try:
        snapshot = decode_snapshot(value)
    except MessageError as exc:
        assert str(exc).strip()
        return
    assert isinstance(snapshot, CoinSnapshot)
    assert snapshot.coin_id and snapshot.price > 0 and math.isfinite(snapshot.price)
    assert 0.0 <= snapshot.confidence <= 1.0
    assert snapshot.observed_at.tzinfo is not None


def test_the_seed_inputs_still_parse() -> None:
    """The trimmed seeds are still what the parsers expect (else the fuzzing would stay on the surface)."""
    assert len(coingecko.parse_markets(dump(COINGECKO_DOCS[0]).encode(), COLLECTED, "usd").quotes) == 4
    assert len(coinmarketcap.parse_listings(dump(CMC_DOCS[0]).encode(), COLLECTED, "usd").quotes) == 3
    assert len(coinpaprika.parse_tickers(dump(PAPRIKA_DOCS[0]).encode(), COLLECTED, "usd").quotes) == 4
    assert len(coingecko_html.parse_page(COINGECKO_PAGES[0], COLLECTED, "usd").quotes) == 3
    assert len(coingecko_html.parse_page(COINGECKO_PAGES[1], COLLECTED, "eur").quotes) == 3
    assert len(coinmarketcap_html.parse_page(CMC_PAGES[0], COLLECTED, "usd").quotes) == 3
    assert len(coinmarketcap_html.parse_page(CMC_PAGES[2], COLLECTED, "usd").quotes) == 2  # the table rows
    # The other layouts, each still read by its own strategy.
    strategies = {}
    for page in [*CMC_PAGES[12:], COINGECKO_PAGES[-1]]:
        parse = coingecko_html.parse_page if page is COINGECKO_PAGES[-1] else coinmarketcap_html.parse_page
        result = parse(page, COLLECTED, "usd")
        assert len(result.quotes) >= 2 and not result.rejected
        strategies[result.strategy] = strategies.get(result.strategy, 0) + 1
    assert strategies == {"table": 3, "table:attributes": 2, "next-data:listingLatest": 1, "next-data:keysArr": 1}
    assert decode_snapshot(orjson.dumps(MESSAGES[0])) == _snapshot(0)


# --- the history parsers -----------------------------------------------------------------------------


def _first(doc: Any, keep: int) -> Any:
    """A market_chart body with each series cut to ``keep`` points, or a quotes/historical body with ``keep``
    quotes."""
    if isinstance(doc, dict) and "prices" in doc:
        return {k: (v[:keep] if isinstance(v, list) else v) for k, v in doc.items()}
    for coin in (doc.get("data") or {}).values() if isinstance(doc, dict) else ():
        if isinstance(coin, dict) and isinstance(coin.get("quotes"), list):
            coin["quotes"] = coin["quotes"][:keep]
    return doc


CHART_DOCS = [read_json(CG / "market-chart-example.json"), _first(read_json(CG / "market-chart-hourly.json"), 4),
              _first(read_json(CG / "market-chart-daily.json"), 3), read_json(CG / "market-chart-malformed.json"),
              read_json(CG / "market-chart-error-365-days.json"), read_json(CG / "market-chart-coin-not-found.json"),
              read_json(CG / "error-429.json")]
CMC_HISTORY_DOCS = [read_json(CMC / "historical-docs-example.json"),
                    _first(read_json(CMC / "historical-v2-hourly.json"), 3), read_json(CMC / "historical-error-1006.json"),
                    read_json(CMC / "error-1008.json")]
PATHS.update({id(doc): paths_of(doc) for doc in [*CHART_DOCS, *CMC_HISTORY_DOCS]})


def history_or_fail_cleanly(parse: Callable[[bytes], History], body: bytes, source: str) -> None:
    note(f"body={body[:4000]!r}{' (cut)' if len(body) > 4000 else ''}")
    try:
        history = parse(body)
    except (ParseError, SourceError) as exc:
        assert str(exc).strip(), "an error must say what went wrong"
        return
    assert isinstance(history, History)
    times = [p.at for p in history.points]
    assert times == sorted(set(times)), "points are oldest first, one per time"
    for point in history.points:
        assert point.at.tzinfo is not None
        assert isinstance(point.price, float) and math.isfinite(point.price) and point.price > 0
        for value in (point.market_cap, point.volume_24h):
            assert value is None or (isinstance(value, float) and math.isfinite(value) and value >= 0)
    for rejection in history.rejected:
        assert isinstance(rejection, Rejection)
        assert rejection.source == source and rejection.reason and rejection.field
    spacing = history.spacing()
    assert spacing is None or spacing > 0


@FUZZ
@given(seed=SEEDS)
def test_coingecko_history_parse_market_chart(seed: int) -> None:
    fuzz = Fuzzer(seed)
    body = fuzz.json_body(CHART_DOCS, CMC_HISTORY_DOCS)
    history_or_fail_cleanly(lambda raw: coingecko_history.parse_market_chart(raw, "bitcoin"), body, "coingecko")


@FUZZ
@given(seed=SEEDS)
def test_coinmarketcap_history_parse_quotes_historical(seed: int) -> None:
    fuzz = Fuzzer(seed)
    body = fuzz.json_body(CMC_HISTORY_DOCS, CHART_DOCS)
    currency = fuzz.rng.choice(CURRENCIES)
    history_or_fail_cleanly(lambda raw: coinmarketcap_history.parse_quotes_historical(raw, "1", currency), body,
                            "coinmarketcap")


def test_the_history_seed_inputs_still_parse() -> None:
    assert len(coingecko_history.parse_market_chart(dump(CHART_DOCS[0]).encode(), "bitcoin").points) == 2
    assert len(coingecko_history.parse_market_chart(dump(CHART_DOCS[1]).encode(), "bitcoin").points) == 4
    assert len(coingecko_history.parse_market_chart(dump(CHART_DOCS[3]).encode(), "bitcoin").rejected) == 13
    assert len(coinmarketcap_history.parse_quotes_historical(dump(CMC_HISTORY_DOCS[0]).encode(), "1",
                                                             "usd").points) == 2
    assert len(coinmarketcap_history.parse_quotes_historical(dump(CMC_HISTORY_DOCS[1]).encode(), "1",
                                                             "usd").points) == 3


# --- the exchanges' websocket frames ------------------------------------------------------------------

BN, CB, KR = FIXTURES / "binance", FIXTURES / "coinbase", FIXTURES / "kraken"
BINANCE_DOCS = [read_json(BN / "mini-ticker-arr-combined.json", 4), read_json(BN / "mini-ticker-arr-raw.json"),
                read_json(BN / "subscribe-response.json"), read_json(BN / "error-invalid-request.json"),
                read_json(BN / "server-shutdown.json")]
COINBASE_DOCS = [read_json(CB / "ticker-batch.json"), read_json(CB / "ticker.json"), read_json(CB / "heartbeats.json"),
                 read_json(CB / "subscriptions.json"), read_json(CB / "error.json")]
KRAKEN_DOCS = [read_json(KR / "ticker-update.json"), read_json(KR / "ticker-snapshot.json"),
               read_json(KR / "heartbeat.json"), read_json(KR / "status.json"), read_json(KR / "subscribe-ack.json"),
               read_json(KR / "subscribe-error.json")]
PATHS.update({id(doc): paths_of(doc) for doc in [*BINANCE_DOCS, *COINBASE_DOCS, *KRAKEN_DOCS]})


def frame_or_fail_cleanly(module: Any, body: bytes, currency: str) -> None:
    """The parser returns quotes of pairs or raises one of the project's errors; classifying never raises."""
    assert module.classify(body).kind
    parse_or_fail_cleanly(module.parse_frame, body, currency, module.SOURCE, named=False)


@FUZZ
@given(seed=SEEDS)
def test_binance_parse_frame(seed: int) -> None:
    fuzz = Fuzzer(seed)
    frame_or_fail_cleanly(binance, fuzz.json_body(BINANCE_DOCS, KRAKEN_DOCS), fuzz.rng.choice(CURRENCIES))


@FUZZ
@given(seed=SEEDS)
def test_coinbase_parse_frame(seed: int) -> None:
    fuzz = Fuzzer(seed)
    frame_or_fail_cleanly(coinbase, fuzz.json_body(COINBASE_DOCS, BINANCE_DOCS), fuzz.rng.choice(CURRENCIES))


@FUZZ
@given(seed=SEEDS)
def test_kraken_parse_frame(seed: int) -> None:
    fuzz = Fuzzer(seed)
    frame_or_fail_cleanly(kraken, fuzz.json_body(KRAKEN_DOCS, COINBASE_DOCS), fuzz.rng.choice(CURRENCIES))


def test_the_exchange_seed_frames_still_parse() -> None:
    assert len(binance.parse_frame(dump(BINANCE_DOCS[0]).encode(), COLLECTED, "usd").quotes) == 4
    assert len(coinbase.parse_frame(dump(COINBASE_DOCS[0]).encode(), COLLECTED, "usd").quotes) == 5
    assert len(kraken.parse_frame(dump(KRAKEN_DOCS[0]).encode(), COLLECTED, "usd").quotes) == 3
