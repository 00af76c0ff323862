"""How precise each source's price is: the half-width of a nominal 95 % interval around one quote.

u = Z x p x sqrt(noise^2 + DRIFT^2 x (age + latency)) + rounding(p)

* ``noise``: the source's own relative error (one standard deviation) on a fresh price: an exchange's
  last trade is the market; an aggregator's price is an average over venues, a little behind and apart.
* ``DRIFT``: how far a price wanders per square root of a second (about 85 % a year, a typical
  crypto volatility): a quote ``age`` seconds old (by its own ``last_updated``) may have moved that much,
  and an aggregator's value is already ``latency`` seconds old when it stamps it (it averages trades
  gathered over the last minute or so).
* ``rounding``: a page shows prices rounded (2 decimals from 1 up, 4 significant digits below):
  the true value is anywhere within half the last digit shown. A bound, not a standard deviation: added.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

Z95 = 1.96
DRIFT = 1.5e-4  # relative price move per sqrt(second)


@dataclass(frozen=True, slots=True)
class Precision:
    """One source's declared precision: relative noise (1 sigma) and whether its prices are rounded for display."""

    noise: float
    rounded: bool = False
    latency: float = 0.0  # seconds


EXCHANGE = Precision(0.0005)
AGGREGATOR = Precision(0.001, latency=60.0)
PAGE = Precision(0.001, rounded=True, latency=60.0)
UNKNOWN = Precision(0.002, latency=60.0)

DEFAULT_PRECISION: Mapping[str, Precision] = {
    "binance": EXCHANGE, "coinbase": EXCHANGE, "kraken": EXCHANGE,
    "coingecko": AGGREGATOR, "coinmarketcap": AGGREGATOR, "coinpaprika": AGGREGATOR,
    "coingecko-html": PAGE, "coinmarketcap-html": PAGE,
}


def precision_of(source: str, table: Mapping[str, Precision] | None = None) -> Precision:
    """The precision of ``source``: from ``table`` (default: ``DEFAULT_PRECISION``), else ``UNKNOWN``, or
    ``PAGE`` for an unlisted source named ``*-html``."""
    found = (DEFAULT_PRECISION if table is None else table).get(source)
    if found is not None:
        return found
    return PAGE if source.endswith("-html") else UNKNOWN


def rounding(price: float) -> float:
    """Half the last digit a page shows of ``price``: 0.005 from 1 up; below, half the 4th significant digit."""
    if price >= 1.0:
        return 0.005
    zeros = math.ceil(-math.log10(price)) - 1  # 0.0123 -> 1
    return 0.5 * 10.0 ** (-(zeros + 4))


def half_width(price: float, age: float, precision: Precision) -> float:
    """u of one quote (see the module docstring); a future time counts as age 0."""
    noise = precision.noise
    age = precision.latency + (age if age > 0.0 else 0.0)
    u = Z95 * price * math.sqrt(noise * noise + DRIFT * DRIFT * age)
    if precision.rounded:
        u += rounding(price)
    return u
