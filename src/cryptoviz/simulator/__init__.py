"""A local market simulator on 127.0.0.1: CoinGecko-, CoinMarketCap- and CoinPaprika-shaped APIs and HTML pages,
and Binance-, Coinbase- and Kraken-shaped websocket feeds.

Deterministic given a seed, with injectable faults; used by ``cryptoviz demo`` and the tests::

    with start_simulator(seed=7, faults=Faults.demo_default()) as sim:
        settings = load_settings(**sim.settings_overrides())
"""

from cryptoviz.simulator.coins import COINS, CoinSpec, make_coin
from cryptoviz.simulator.faults import FAULT_NAMES, FEED_FAULT_NAMES, FaultInjector, FaultRule, Faults
from cryptoviz.simulator.feeds import FeedServer
from cryptoviz.simulator.market import FIAT_PER_USD, SUPPORTED_CURRENCIES, Market
from cryptoviz.simulator.server import Simulator, start_simulator

__all__ = [
    "COINS",
    "FAULT_NAMES",
    "FEED_FAULT_NAMES",
    "FIAT_PER_USD",
    "SUPPORTED_CURRENCIES",
    "CoinSpec",
    "FaultInjector",
    "FaultRule",
    "Faults",
    "FeedServer",
    "Market",
    "Simulator",
    "make_coin",
    "start_simulator",
]
