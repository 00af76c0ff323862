"""Builders for records used across tests (real dataclasses, no mocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptoviz.models import CoinSnapshot, SourceValue

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def snapshot(coin: str = "bitcoin", *, price: float = 100.0, at: datetime = T0, symbol: str = "BTC",
             name: str | None = None, confidence: float = 0.9, minutes: int = 0) -> CoinSnapshot:
    observed = at + timedelta(minutes=minutes)
    return CoinSnapshot(
        coin_id=coin, symbol=symbol, name=name or coin.title(), slug=coin, rank=1, price=price,
        market_cap=price * 1000, volume_24h=price * 10, change_1h=0.1, change_24h=-1.5, change_7d=3.0,
        circulating_supply=1000.0, total_supply=2000.0, max_supply=None, confidence=confidence,
        observed_at=observed, currency="usd", coingecko_id=coin, coinmarketcap_id="1",
        sources=(
            SourceValue("coingecko", coin, price, price * 1000, price * 10, observed - timedelta(seconds=30)),
            SourceValue("coinmarketcap", "1", price * 1.001, None, None, observed - timedelta(seconds=20)),
        ),
    )


def numbered(coin: int, minute: int, *, t0: datetime, base_price: float) -> CoinSnapshot:
    """Coin number ``coin`` observed ``minute`` minutes after ``t0``, from one source; the price moves
    a little each minute so the latest value is recognisable."""
    at = t0 + timedelta(minutes=minute)
    price = base_price + coin + minute / 100
    cid = f"coin-{coin:04d}"
    return CoinSnapshot(
        coin_id=cid, symbol=f"C{coin}", name=f"Coin {coin}", slug=cid, rank=coin + 1, price=price,
        market_cap=price * 1e6, volume_24h=1e5, change_1h=None, change_24h=None, change_7d=None,
        circulating_supply=1e6, total_supply=None, max_supply=None, confidence=0.8, observed_at=at,
        currency="usd", coingecko_id=cid, sources=(SourceValue("coingecko", cid, price, price * 1e6, 1e5, at),),
    )
