"""Reading JSON bodies and their items, for every parser of JSON coin lists (both APIs, and the coin list
inside coinmarketcap.com pages).

Each field reader returns the value or raises ``ItemRejected`` naming the field and a stable reason
(``missing_field``, ``not_a_number``, ``not_an_integer``, ``not_a_string``, ``bad_timestamp``, ...);
:func:`collect` turns such an item into a ``Rejection`` and keeps the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

from cryptoviz.errors import ParseError
from cryptoviz.models import ParseResult, Rejection, SourceQuote
from cryptoviz.sources.base import MAX_SYMBOL, MAX_TEXT, checked_text


class ItemRejected(Exception):
    """One item (or one of its fields) cannot be used; the rest of the body still is."""

    def __init__(self, field: str, reason: str, detail: str = "") -> None:
        super().__init__(field, reason, detail)
        self.field = field
        self.reason = reason
        self.detail = detail


def got(value: Any) -> str:
    """What came instead of the expected value, for a rejection's detail: ``got str 'abc'``. Containers
    are named only (a deeply nested one would exhaust the recursion limit in ``repr``)."""
    if isinstance(value, dict | list):
        return f"got {type(value).__name__}"
    return f"got {type(value).__name__} {value!r:.40}"


def read_number(obj: dict[str, Any], name: str, prefix: str = "", *, blank: bool = False) -> float | None:
    """A JSON number (int or float) as float; null or absent -> None. Range checks belong to validation.

    ``blank``: an empty string is absent too (for sources that send ``""`` for a value they lack)."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        if blank and value == "":
            return None
        raise ItemRejected(prefix + name, "not_a_number", got(value))
    try:
        return float(value)
    except OverflowError:
        raise ItemRejected(prefix + name, "not_a_number", "too large for a float") from None


def read_integer(obj: dict[str, Any], name: str, prefix: str = "") -> int | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ItemRejected(prefix + name, "not_an_integer", got(value))
    return value


def read_optional_text(obj: dict[str, Any], name: str, prefix: str = "", *,
                       max_length: int = MAX_TEXT) -> str | None:
    """A string, stripped; blank or absent -> None. Control characters and more than ``max_length``
    characters reject the item (the store could not hold it)."""
    value = obj.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ItemRejected(prefix + name, "not_a_string", got(value))
    return checked_text(value.strip(), prefix + name, max_length, ItemRejected)


def read_symbol(obj: dict[str, Any], name: str = "symbol") -> str:
    """A required ticker symbol, upper-cased (which can lengthen it: "ß" is "SS")."""
    symbol = read_text(obj, name).upper()
    return checked_text(symbol, name, MAX_SYMBOL, ItemRejected)


def read_text(obj: dict[str, Any], name: str, prefix: str = "") -> str:
    """A required, non-blank string."""
    value = read_optional_text(obj, name, prefix)
    if value is None:
        raise ItemRejected(prefix + name, "missing_field", "" if obj.get(name) is None else "blank string")
    return value


def read_container(obj: dict[str, Any], name: str, kind: type[dict[Any, Any]] | type[list[Any]]) -> Any:
    """A required JSON object (``kind=dict``) or list (``kind=list``)."""
    value = obj.get(name)
    if value is None:
        raise ItemRejected(name, "missing_field")
    if not isinstance(value, kind):
        reason = "not_an_object" if kind is dict else "not_a_list"
        raise ItemRejected(name, reason, f"got {type(value).__name__}")
    return value


def read_timestamp(obj: dict[str, Any], name: str, prefix: str = "") -> datetime | None:
    """An ISO-8601 time ("2021-04-20T23:29:02.000Z"); a naive one is taken as UTC."""
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ItemRejected(prefix + name, "bad_timestamp", got(value))
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ItemRejected(prefix + name, "bad_timestamp", f"not ISO-8601: {value!r:.40}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_json(body: bytes, source: str) -> Any:
    """Decode a body, or raise ``ParseError`` saying what came instead of JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        head = body.lstrip()[:200].lower()
        if not head:
            raise ParseError(f"{source}: expected JSON, got an empty body") from None
        if head.startswith(b"<") or b"<html" in head:
            raise ParseError(f"{source}: expected JSON, got HTML (Cloudflare block?)") from None
        raise ParseError(f"{source}: expected JSON, got invalid JSON ({exc})") from None


def collect(items: Iterable[Any], source: str, read: Callable[[Any], SourceQuote],
            label: Callable[[Any, int], str]) -> ParseResult:
    """``read`` every item; one it rejects becomes a ``Rejection`` labelled ``label(item, index)``."""
    result = ParseResult()
    for index, item in enumerate(items):
        try:
            result.quotes.append(read(item))
        except ItemRejected as bad:
            result.rejected.append(Rejection(source, label(item, index), bad.field, bad.reason, bad.detail))
    return result
