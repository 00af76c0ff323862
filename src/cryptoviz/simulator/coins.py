"""The simulator's coin universe: well-known coins with plausible figures, then synthetic ones.

Figures are rounded, approximate and frozen: the simulator needs realistic orders of magnitude, not
today's market. The list deliberately contains awkward cases every parser meets in real data:

* ids that differ between the services (CoinGecko ``binancecoin`` is CoinMarketCap ``bnb``,
  ``ripple`` is ``xrp``, ``avalanche-2`` is ``avalanche``...);
* coins sharing a symbol (two ``UNI``, two ``BTT``), so a symbol is never an identity;
* coins priced far below a cent with supplies in the quintillions (``baby-doge-coin``, ``pico-inu``);
* ``max_supply`` of ``None``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import date, timedelta

_NOT_ID = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True, slots=True)
class CoinSpec:
    """One coin as the services know it, with its starting figures (USD)."""

    cg_id: str
    cmc_id: int
    slug: str
    name: str
    symbol: str
    price: float
    circulating_supply: float
    total_supply: float
    max_supply: float | None
    category: str
    date_added: str  # ISO date, as CoinMarketCap's ``date_added``

    @property
    def stable(self) -> bool:
        return self.category == "stablecoin"

    @property
    def market_cap(self) -> float:
        return self.price * self.circulating_supply

    @property
    def paprika_id(self) -> str:
        """The coin's CoinPaprika id: symbol and name in lower case, dash-joined (``btc-bitcoin``)."""
        words = _NOT_ID.sub("-", f"{self.symbol} {self.name}".lower()).strip("-")
        return words or self.cg_id


_Row = tuple[str, int, str, str, str, float, float, float, float | None, str]

# cg_id, cmc_id, cmc slug, name, symbol, price (USD), circulating, total, max, category
_KNOWN: tuple[_Row, ...] = (
    ("bitcoin", 1, "bitcoin", "Bitcoin", "BTC", 67_000.0, 19.7e6, 19.7e6, 21e6, "pow"),
    ("ethereum", 1027, "ethereum", "Ethereum", "ETH", 3_500.0, 120.1e6, 120.1e6, None, "layer-1"),
    ("tether", 825, "tether", "Tether", "USDT", 1.0, 112e9, 112e9, None, "stablecoin"),
    ("binancecoin", 1839, "bnb", "BNB", "BNB", 590.0, 147.6e6, 147.6e6, 200e6, "exchange"),
    ("solana", 5426, "solana", "Solana", "SOL", 165.0, 462e6, 579e6, None, "layer-1"),
    ("usd-coin", 3408, "usd-coin", "USDC", "USDC", 1.0, 32.5e9, 32.5e9, None, "stablecoin"),
    ("ripple", 52, "xrp", "XRP", "XRP", 0.52, 55.6e9, 99.99e9, 100e9, "payments"),
    ("dogecoin", 74, "dogecoin", "Dogecoin", "DOGE", 0.15, 145e9, 145e9, None, "meme"),
    ("the-open-network", 11419, "toncoin", "Toncoin", "TON", 7.2, 2.47e9, 5.11e9, None, "layer-1"),
    ("cardano", 2010, "cardano", "Cardano", "ADA", 0.45, 35.4e9, 45e9, 45e9, "layer-1"),
    ("shiba-inu", 5994, "shiba-inu", "Shiba Inu", "SHIB", 0.0000245, 589.3e12, 589.5e12, None, "meme"),
    ("avalanche-2", 5805, "avalanche", "Avalanche", "AVAX", 35.0, 394e6, 447e6, 720e6, "layer-1"),
    ("tron", 1958, "tron", "TRON", "TRX", 0.12, 87.3e9, 87.3e9, None, "layer-1"),
    ("wrapped-bitcoin", 3717, "wrapped-bitcoin", "Wrapped Bitcoin", "WBTC", 67_000.0, 154e3, 154e3, None,
     "wrapped"),
    ("polkadot", 6636, "polkadot-new", "Polkadot", "DOT", 7.0, 1.44e9, 1.44e9, None, "layer-0"),
    ("chainlink", 1975, "chainlink", "Chainlink", "LINK", 17.0, 587e6, 1e9, 1e9, "oracle"),
    ("bitcoin-cash", 1831, "bitcoin-cash", "Bitcoin Cash", "BCH", 470.0, 19.7e6, 19.7e6, 21e6, "pow"),
    ("near", 6535, "near-protocol", "NEAR Protocol", "NEAR", 7.1, 1.07e9, 1.19e9, None, "layer-1"),
    ("uniswap", 7083, "uniswap", "Uniswap", "UNI", 9.8, 600e6, 1e9, 1e9, "defi"),
    ("litecoin", 2, "litecoin", "Litecoin", "LTC", 84.0, 74.6e6, 84e6, 84e6, "pow"),
    ("matic-network", 3890, "polygon", "Polygon", "MATIC", 0.72, 9.9e9, 10e9, 10e9, "layer-2"),
    ("pepe", 24478, "pepe", "Pepe", "PEPE", 0.0000125, 420.69e12, 420.69e12, 420.69e12, "meme"),
    ("internet-computer", 8916, "internet-computer", "Internet Computer", "ICP", 12.0, 464e6, 517e6, None,
     "layer-1"),
    ("leo-token", 3957, "unus-sed-leo", "LEO Token", "LEO", 5.9, 925e6, 985e6, None, "exchange"),
    ("dai", 4943, "multi-collateral-dai", "Dai", "DAI", 1.0, 5.3e9, 5.3e9, None, "stablecoin"),
    ("ethereum-classic", 1321, "ethereum-classic", "Ethereum Classic", "ETC", 27.0, 147e6, 147e6, 210.7e6,
     "pow"),
    ("aptos", 21794, "aptos", "Aptos", "APT", 8.9, 430e6, 1.09e9, None, "layer-1"),
    ("render-token", 5690, "render", "Render", "RNDR", 9.7, 388e6, 531e6, 644e6, "ai"),
    ("hedera-hashgraph", 4642, "hedera", "Hedera", "HBAR", 0.11, 35.7e9, 50e9, 50e9, "layer-1"),
    ("cosmos", 3794, "cosmos", "Cosmos Hub", "ATOM", 8.6, 390e6, 390e6, None, "layer-0"),
    ("kaspa", 20396, "kaspa", "Kaspa", "KAS", 0.16, 23.5e9, 23.5e9, 28.7e9, "pow"),
    ("stellar", 512, "stellar", "Stellar", "XLM", 0.11, 29e9, 50.001e9, 50.001e9, "payments"),
    ("mantle", 27075, "mantle", "Mantle", "MNT", 1.05, 3.25e9, 6.22e9, None, "layer-2"),
    ("okb", 3897, "okb", "OKB", "OKB", 51.0, 60e6, 300e6, 300e6, "exchange"),
    ("arbitrum", 11841, "arbitrum", "Arbitrum", "ARB", 1.05, 2.9e9, 10e9, 10e9, "layer-2"),
    ("filecoin", 2280, "filecoin", "Filecoin", "FIL", 5.9, 560e6, 1.96e9, 1.96e9, "storage"),
    ("crypto-com-chain", 3635, "cronos", "Cronos", "CRO", 0.12, 26.9e9, 30e9, 30e9, "exchange"),
    ("immutable-x", 10603, "immutable-x", "Immutable", "IMX", 2.1, 1.47e9, 2e9, 2e9, "gaming"),
    ("vechain", 3077, "vechain", "VeChain", "VET", 0.035, 72.7e9, 85.985e9, 86.712634466e9, "layer-1"),
    ("sui", 20947, "sui", "Sui", "SUI", 1.05, 1.3e9, 10e9, 10e9, "layer-1"),
    ("optimism", 11840, "optimism-ethereum", "Optimism", "OP", 2.6, 1.06e9, 4.29e9, 4_294_967_296, "layer-2"),
    ("injective-protocol", 7226, "injective", "Injective", "INJ", 26.0, 93.4e6, 100e6, 100e6, "defi"),
    ("maker", 1518, "maker", "Maker", "MKR", 2_800.0, 929e3, 977e3, 1_005_577, "defi"),
    ("the-graph", 6719, "the-graph", "The Graph", "GRT", 0.27, 9.5e9, 10.8e9, None, "ai"),
    ("first-digital-usd", 26081, "first-digital-usd", "First Digital USD", "FDUSD", 1.0, 3.6e9, 3.6e9, None,
     "stablecoin"),
    ("blockstack", 4847, "stacks", "Stacks", "STX", 2.0, 1.46e9, 1.46e9, 1.818e9, "layer-2"),
    ("dogwifcoin", 28752, "dogwifhat", "dogwifhat", "WIF", 2.9, 999e6, 999e6, 999e6, "meme"),
    ("fantom", 3513, "fantom", "Fantom", "FTM", 0.7, 2.8e9, 3.175e9, 3.175e9, "layer-1"),
    ("thorchain", 4157, "thorchain", "THORChain", "RUNE", 5.6, 335e6, 496e6, 500e6, "defi"),
    ("celestia", 22861, "celestia", "Celestia", "TIA", 9.5, 190e6, 1.04e9, None, "layer-1"),
    ("bonk", 23095, "bonk1", "Bonk", "BONK", 0.000025, 68e12, 93.5e12, 93.5e12, "meme"),
    ("floki", 10804, "floki-inu", "FLOKI", "FLOKI", 0.00018, 9.6e12, 9.7e12, 10e12, "meme"),
    ("aave", 7278, "aave", "Aave", "AAVE", 95.0, 14.8e6, 16e6, 16e6, "defi"),
    ("algorand", 4030, "algorand", "Algorand", "ALGO", 0.17, 8.14e9, 8.14e9, 10e9, "layer-1"),
    ("monero", 328, "monero", "Monero", "XMR", 125.0, 18.44e6, 18.44e6, None, "privacy"),
    ("lido-dao", 8000, "lido-dao", "Lido DAO", "LDO", 2.0, 890e6, 1e9, 1e9, "defi"),
    ("flow", 4558, "flow", "Flow", "FLOW", 0.8, 1.5e9, 1.5e9, None, "layer-1"),
    ("quant-network", 3155, "quant", "Quant", "QNT", 95.0, 14.5e6, 14.6e6, 14.6e6, "interoperability"),
    ("bittorrent", 16086, "bittorrent-new", "BitTorrent", "BTT", 0.0000011, 968e12, 990e12, 990e12,
     "storage"),
    ("the-sandbox", 6210, "the-sandbox", "The Sandbox", "SAND", 0.42, 2.26e9, 3e9, 3e9, "gaming"),
    ("elrond-erd-2", 6892, "multiversx-egld", "MultiversX", "EGLD", 36.0, 27e6, 27e6, 31_415_926, "layer-1"),
    ("tezos", 2011, "tezos", "Tezos", "XTZ", 0.95, 1e9, 1.03e9, None, "layer-1"),
    ("axie-infinity", 6783, "axie-infinity", "Axie Infinity", "AXS", 7.3, 146e6, 270e6, 270e6, "gaming"),
    ("kucoin-shares", 2087, "kucoin-token", "KuCoin", "KCS", 10.0, 96e6, 142e6, None, "exchange"),
    ("chiliz", 4066, "chiliz", "Chiliz", "CHZ", 0.11, 8.8e9, 8.88e9, 8_888_888_888, "fan-token"),
    ("theta-token", 2416, "theta-network", "Theta Network", "THETA", 2.0, 1e9, 1e9, 1e9, "media"),
    ("decentraland", 1966, "decentraland", "Decentraland", "MANA", 0.45, 1.9e9, 2.19e9, None, "gaming"),
    ("eos", 1765, "eos", "EOS", "EOS", 0.8, 1.13e9, 1.13e9, None, "layer-1"),
    ("gala", 7080, "gala", "GALA", "GALA", 0.04, 35e9, 35e9, 50e9, "gaming"),
    ("neo", 1376, "neo", "Neo", "NEO", 14.0, 70.5e6, 100e6, 100e6, "layer-1"),
    ("true-usd", 2563, "trueusd", "TrueUSD", "TUSD", 1.0, 490e6, 490e6, None, "stablecoin"),
    ("iota", 1720, "iota", "IOTA", "IOTA", 0.22, 3.3e9, 4.6e9, 4.6e9, "iot"),
    ("pancakeswap-token", 7186, "pancakeswap", "PancakeSwap", "CAKE", 2.6, 280e6, 380e6, 450e6, "defi"),
    ("zcash", 1437, "zcash", "Zcash", "ZEC", 24.0, 16.3e6, 16.3e6, 21e6, "privacy"),
    ("curve-dao-token", 6538, "curve-dao-token", "Curve DAO", "CRV", 0.45, 1.2e9, 2.1e9, 3.03e9, "defi"),
    ("kava", 4846, "kava", "Kava", "KAVA", 0.7, 1.08e9, 1.08e9, None, "layer-1"),
    ("trust-wallet-token", 5964, "trust-wallet-token", "Trust Wallet", "TWT", 1.1, 416e6, 1e9, 1e9, "wallet"),
    ("1inch", 8104, "1inch", "1inch", "1INCH", 0.42, 1.19e9, 1.5e9, 1.5e9, "defi"),
    ("compound-governance-token", 5692, "compound", "Compound", "COMP", 55.0, 8.3e6, 10e6, 10e6, "defi"),
    ("dash", 131, "dash", "Dash", "DASH", 28.0, 12e6, 12e6, 18.9e6, "pow"),
    ("zilliqa", 2469, "zilliqa", "Zilliqa", "ZIL", 0.021, 18.7e9, 18.7e9, 21e9, "layer-1"),
    ("enjincoin", 2130, "enjin-coin", "Enjin Coin", "ENJ", 0.27, 1.78e9, 1.87e9, None, "gaming"),
    ("basic-attention-token", 1697, "basic-attention-token", "Basic Attention", "BAT", 0.24, 1.49e9, 1.5e9,
     1.5e9, "media"),
    ("baby-doge-coin", 10407, "baby-doge-coin", "Baby Doge Coin", "BABYDOGE", 0.0000000017, 159e15, 420e15,
     420e15, "meme"),
)

# Synthetic coins that make the awkward cases explicit (ids chosen not to collide with _KNOWN).
_SPECIAL: tuple[_Row, ...] = (
    # a second "UNI" and a second "BTT": symbols are not identities
    ("unicorn-token", 90001, "unicorn-token", "Unicorn Token", "UNI", 0.31, 610e6, 1e9, 1e9, "meme"),
    ("blocktrade-token", 90002, "blocktrade-token", "BlockTrade Token", "BTT", 0.047, 1.9e9, 2.5e9, None,
     "exchange"),
    # a price around 4e-11 USD with a supply of five quintillion
    ("pico-inu", 90003, "pico-inu", "Pico Inu", "PICO", 4e-11, 5e18, 1e19, 1e19, "meme"),
)

_PREFIXES = (
    "Aether", "Nimbus", "Quasar", "Helio", "Lumen", "Vortex", "Zenith", "Orbit", "Cobalt", "Ember",
    "Nova", "Atlas", "Prism", "Falcon", "Tidal", "Aurora", "Cipher", "Summit", "Harbor", "Onyx",
    "Radiant", "Solace", "Vector", "Willow", "Kepler", "Meridian", "Polar", "Sable", "Titan", "Verdant",
)
_SUFFIXES = (
    ("Chain", "layer-1"), ("Protocol", "defi"), ("Network", "layer-0"), ("Finance", "defi"),
    ("Swap", "defi"), ("DAO", "governance"), ("Labs", "ai"), ("Play", "gaming"),
)
_TOTAL = 220


def _synthetic(count: int, taken_symbols: set[str]) -> list[_Row]:
    """Plausible small caps, deterministic (fixed generator seed, independent of the market seed)."""
    rng = random.Random(20240611)
    rows: list[_Row] = []
    index = 0
    while len(rows) < count:
        prefix = _PREFIXES[index % len(_PREFIXES)]
        suffix, category = _SUFFIXES[(index // len(_PREFIXES) + index) % len(_SUFFIXES)]
        index += 1
        symbol = (prefix[:3] + suffix[0]).upper()
        if symbol in taken_symbols:
            symbol = (prefix[:2] + suffix[:2]).upper()
        if symbol in taken_symbols:
            continue
        taken_symbols.add(symbol)
        name = f"{prefix} {suffix}"
        slug = name.lower().replace(" ", "-")
        # market caps from ~300M down to ~5M USD, descending with some scatter
        position = len(rows) / max(count - 1, 1)
        market_cap = 3e8 * (5e6 / 3e8) ** position * rng.uniform(0.85, 1.15)
        price = 10 ** rng.uniform(-4, 2.3)
        circulating = market_cap / price
        total = circulating * rng.uniform(1.0, 1.6)
        maximum: float | None = total * rng.uniform(1.0, 1.3) if rng.random() < 0.6 else None
        cmc_id = 91000 + len(rows)
        rows.append((slug, cmc_id, slug, name, symbol, price, circulating, total, maximum, category))
    return rows


def _date_added(position: int, rng: random.Random) -> str:
    if position == 0:
        return "2013-04-28"
    start = date(2013, 4, 28) + timedelta(days=min(position * 18, 3000))
    return (start + timedelta(days=rng.randrange(0, 900))).isoformat()


def _build() -> tuple[CoinSpec, ...]:
    rows = list(_KNOWN) + list(_SPECIAL)
    rows += _synthetic(_TOTAL - len(rows), {row[4] for row in rows})
    rng = random.Random(1367)
    specs: list[CoinSpec] = []
    for position, (cg_id, cmc_id, slug, name, symbol, price, circulating, total, maximum, category) in (
            enumerate(rows)):
        specs.append(CoinSpec(
            cg_id, cmc_id, slug, name, symbol, float(price), float(circulating), float(total),
            float(maximum) if maximum is not None else None, category, _date_added(position, rng),
        ))
    return tuple(specs)


COINS: tuple[CoinSpec, ...] = _build()
"""Every coin the simulator knows; the first ``n_coins`` of them are served."""


def make_coin(name: str, symbol: str, *, cg_id: str | None = None, cmc_id: int = 99_001,
              slug: str | None = None, price: float = 1.25, circulating_supply: float = 5e8,
              max_supply: float | None = None, category: str = "meme") -> CoinSpec:
    """A coin of your own for ``start_simulator(extra_coins=[...])``: any name, symbol or id, served as is.

    ``cg_id`` (the CoinGecko id) and ``slug`` (CoinMarketCap's) default to each other, else to the name
    lower-cased with dashes for spaces. Nothing is escaped or checked: hostile names are the point.
    """
    slug = slug if slug is not None else cg_id if cg_id is not None else name.lower().replace(" ", "-")
    return CoinSpec(cg_id if cg_id is not None else slug, cmc_id, slug, name, symbol, float(price),
                    float(circulating_supply), float(circulating_supply), max_supply, category, "2024-01-01")


def coins(n: int | None = None) -> tuple[CoinSpec, ...]:
    """The first ``n`` coins (all by default); ``n`` must be between 1 and ``len(COINS)``."""
    if n is None:
        return COINS
    if not 1 <= n <= len(COINS):
        raise ValueError(f"n_coins must be between 1 and {len(COINS)}, got {n}")
    return COINS[:n]
