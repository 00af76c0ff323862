from __future__ import annotations

import gc
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue
from cryptoviz.reconcile import (
    BASELINE,
    DISAGREEMENT,
    DROPPED_REASONS,
    OUTLIER,
    RULES,
    ConsensusMemory,
    identity_keys,
    normalise_name,
    reconcile,
)
from cryptoviz.sources import registry
from cryptoviz.sources.spec import IdNamespace
from cryptoviz.validate import STALE
from tests import reference_reconcile

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
MAX_STALENESS = 900.0
TOL = 0.05
TRUST = {"coinmarketcap": 0.9, "coingecko": 0.8, "coinmarketcap-html": 0.7, "coingecko-html": 0.6}


def q(source: str, source_id: str, price: float | None, *, symbol: str = "BTC", name: str = "Bitcoin",
      slug: str | None = None, age: float = 0.0, currency: str = "usd", **fields: Any) -> SourceQuote:
    values: dict[str, Any] = {
        "rank": None, "market_cap": None, "volume_24h": None, "change_1h": None, "change_24h": None,
        "change_7d": None, "circulating_supply": None, "total_supply": None, "max_supply": None,
        "last_updated": NOW - timedelta(seconds=age), "collected_at": NOW,
    }
    values.update(fields)
    return SourceQuote(source=source, source_id=source_id, symbol=symbol, name=name, slug=slug, price=price,
                       currency=currency, **values)


def cg(price: float, **kw: Any) -> SourceQuote:
    return q("coingecko", "bitcoin", price, **kw)


def cmc(price: float, **kw: Any) -> SourceQuote:
    kw.setdefault("slug", "bitcoin")
    return q("coinmarketcap", "1", price, **kw)


def cgh(price: float, **kw: Any) -> SourceQuote:
    return q("coingecko-html", "bitcoin", price, **kw)


def cmch(price: float, **kw: Any) -> SourceQuote:
    kw.setdefault("slug", "bitcoin")
    return q("coinmarketcap-html", "1", price, **kw)


CG_IDS = IdNamespace("coingecko", ids_are_slugs=True, canonical=True, column="coingecko_id")
CMC_IDS = IdNamespace("coinmarketcap", column="coinmarketcap_id")
# As the registry declares them; coinpaprika joins the others by name and symbol only (no slug, ids of its own).
NAMESPACES = {"coingecko": CG_IDS, "coingecko-html": CG_IDS, "coinmarketcap": CMC_IDS, "coinmarketcap-html": CMC_IDS,
              "coinpaprika": IdNamespace("coinpaprika")}


def run(quotes: list[SourceQuote], previous: dict[str, float] | None = None, **kw: Any) -> list[CoinSnapshot]:
    """``reconcile`` with the registry's namespaces (unless ``namespaces`` is given)."""
    kw.setdefault("trust", TRUST)
    return reconcile(quotes, observed_at=NOW, max_staleness=MAX_STALENESS, disagreement_tolerance=TOL,
                     previous=previous, **kw)


def baseline(quotes: list[SourceQuote], previous: dict[str, float] | None = None, **kw: Any) -> list[CoinSnapshot]:
    """``run`` with the baseline rule (trust-based confidence), which the tests of its figures pin."""
    return run(quotes, previous, rule=BASELINE, **kw)


def agreeing(t_max: float, combined: float, spread: float) -> float:
    """The baseline's documented confidence of sources that agree within the tolerance."""
    return t_max + (combined - t_max) * (1 - spread / TOL)


SPREAD_1 = 1 / 101  # 100 vs 101
SPREAD_20 = 20 / 120  # 100 vs 120
CG_CMC = 1 - (1 - 0.8) * (1 - 0.9)

# The baseline rule's figures: (quotes, previous, {coin_id: (price, confidence, {source: dropped_reason or None})})
SCENARIOS = [
    pytest.param([cg(100.0), cmc(101.0)], None,
                 {"bitcoin": (101.0, agreeing(0.9, CG_CMC, SPREAD_1),
                              {"coingecko": None, "coinmarketcap": None})},
                 id="two-sources-agree"),
    pytest.param([cg(100.0), cmc(100.0), cgh(100.0)], None,
                 {"bitcoin": (100.0, 1 - 0.2 * 0.1 * 0.4,
                              {"coingecko": None, "coingecko-html": None, "coinmarketcap": None})},
                 id="three-sources-agree-exactly"),
    pytest.param([cg(100.0), cmc(100.1), cgh(101.0)], None,
                 {"bitcoin": (100.1, agreeing(0.9, 1 - 0.2 * 0.1 * 0.4, SPREAD_1),
                              {"coingecko": None, "coingecko-html": None, "coinmarketcap": None})},
                 id="three-sources-small-spread-all-kept"),
    pytest.param([cg(100.0), cmc(101.0), cgh(1000.0)], None,
                 # the outlier disagreed: only 2 of the 3 fresh sources vouch for the consensus
                 {"bitcoin": (101.0, agreeing(0.9, CG_CMC, SPREAD_1) * 2 / 3,
                              {"coingecko": None, "coingecko-html": OUTLIER, "coinmarketcap": None})},
                 id="one-10x-outlier-among-three"),
    pytest.param([cg(100.0), cmc(100.0), cmch(10.0)], None,
                 {"bitcoin": (100.0, CG_CMC * 2 / 3,
                              {"coingecko": None, "coinmarketcap": None, "coinmarketcap-html": OUTLIER})},
                 id="one-low-outlier-mad-zero"),
    pytest.param([cg(100.0), cmc(100.0), cgh(105.1)], None,
                 # a MAD of 0: the tolerance decides (|105.1 - 100| > 0.05 x 100), although the spread, 5.1 / 105.1,
                 # is within it
                 {"bitcoin": (100.0, CG_CMC * 2 / 3,
                              {"coingecko": None, "coingecko-html": OUTLIER, "coinmarketcap": None})},
                 id="outlier-just-past-the-tolerance"),
    pytest.param([cg(100.0), cmc(105.0, age=1000)], None,
                 {"bitcoin": (100.0, 0.8, {"coingecko": None, "coinmarketcap": STALE})},
                 id="one-stale-source"),
    pytest.param([cg(100.0, age=1000), cmc(100.0, age=901)], None, {}, id="all-stale-no-snapshot"),
    pytest.param([cmc(100.0)], None, {"bitcoin": (100.0, 0.9, {"coinmarketcap": None})},
                 id="one-source-only"),
    pytest.param([cgh(100.0, age=600)], None, {"bitcoin": (100.0, 0.6, {"coingecko-html": None})},
                 id="one-aged-html-source-only"),
    pytest.param([cg(100.0), cmc(120.0)], None,
                 {"bitcoin": (120.0, 0.9 * TOL / SPREAD_20, {"coingecko": None, "coinmarketcap": None})},
                 id="two-disagree-no-previous"),
    pytest.param([cg(100.0), cmc(120.0)], {"bitcoin": 101.0},
                 {"bitcoin": (100.0, 0.8 * TOL / SPREAD_20, {"coingecko": None, "coinmarketcap": DISAGREEMENT})},
                 id="two-disagree-previous-near-lower"),
    pytest.param([cg(100.0), cmc(120.0)], {"bitcoin": 125.0},
                 {"bitcoin": (120.0, 0.9 * TOL / SPREAD_20, {"coingecko": DISAGREEMENT, "coinmarketcap": None})},
                 id="two-disagree-previous-near-higher"),
    pytest.param([cg(100.0), cmc(120.0)], {"bitcoin": 110.0},
                 {"bitcoin": (120.0, 0.9 * TOL / SPREAD_20, {"coingecko": None, "coinmarketcap": None})},
                 id="two-disagree-previous-equidistant"),
    pytest.param([cg(100.0), cmc(120.0)], {"ethereum": 100.0},
                 {"bitcoin": (120.0, 0.9 * TOL / SPREAD_20, {"coingecko": None, "coinmarketcap": None})},
                 id="two-disagree-previous-of-other-coin"),
    pytest.param([cg(100.0), cmc(101.0)], {"bitcoin": 50.0},
                 {"bitcoin": (101.0, agreeing(0.9, CG_CMC, SPREAD_1),
                              {"coingecko": None, "coinmarketcap": None})},
                 id="two-agree-previous-ignored"),
    pytest.param([cg(100.0), cmc(101.0, age=810)], None,
                 {"bitcoin": (100.0, agreeing(0.9, CG_CMC, SPREAD_1),
                              {"coingecko": None, "coinmarketcap": None})},
                 id="older-source-weighs-less"),
]


@pytest.mark.parametrize(("quotes", "previous", "expected"), SCENARIOS)
def test_consensus(quotes: list[SourceQuote], previous: dict[str, float] | None,
                   expected: dict[str, tuple[float, float, dict[str, str | None]]]) -> None:
    snapshots = baseline(quotes, previous)
    got = {
        s.coin_id: (s.price, s.confidence, {v.source: v.dropped_reason for v in s.sources})
        for s in snapshots
    }
    assert got.keys() == expected.keys()
    for coin_id, (price, confidence, reasons) in expected.items():
        got_price, got_confidence, got_reasons = got[coin_id]
        assert got_price == price
        assert got_confidence == pytest.approx(confidence, rel=1e-12, abs=0)
        assert got_reasons == reasons
    for s in snapshots:
        assert [v.source for v in s.sources] == sorted(v.source for v in s.sources)
        assert all(v.used == (v.dropped_reason is None) for v in s.sources)
        assert {v.dropped_reason for v in s.sources} <= {None, *DROPPED_REASONS}


def test_single_source_confidence_is_exactly_its_trust() -> None:
    for source, trust in TRUST.items():
        sid = "1" if "coinmarketcap" in source else "bitcoin"
        [snap] = baseline([q(source, sid, 100.0, slug="bitcoin", age=300)])
        assert snap.confidence == trust


def test_confidence_rewards_agreement_and_punishes_disagreement() -> None:
    best_alone = max(baseline([cg(100.0)])[0].confidence, baseline([cmc(100.0)])[0].confidence)
    assert baseline([cg(100.0), cmc(100.5)])[0].confidence > best_alone
    assert baseline([cg(100.0), cmc(110.0)])[0].confidence < best_alone
    assert baseline([cg(100.0), cmc(110.0)], {"bitcoin": 100.0})[0].confidence < best_alone
    two = baseline([cg(100.0), cmc(100.0)])[0].confidence
    three = baseline([cg(100.0), cmc(100.0), cgh(100.0)])[0].confidence
    assert three > two > best_alone
    # at the tolerance edge, agreement is worth exactly the best single trust
    assert baseline([cg(95.0), cmc(100.0)])[0].confidence == pytest.approx(0.9, rel=1e-12)


def test_source_values_keep_each_sources_own_reading() -> None:
    t = NOW - timedelta(seconds=5)
    quotes = [
        cg(100.0, market_cap=1000.0, volume_24h=10.0, last_updated=t),
        cmc(101.0, market_cap=1010.0, volume_24h=None),
        cgh(1000.0, market_cap=10_000.0, volume_24h=99.0),
    ]
    [snap] = run(quotes)
    assert snap.sources == (
        SourceValue("coingecko", "bitcoin", 100.0, 1000.0, 10.0, t, True, None),
        SourceValue("coingecko-html", "bitcoin", 1000.0, 10_000.0, 99.0, NOW, False, OUTLIER),
        SourceValue("coinmarketcap", "1", 101.0, 1010.0, None, NOW, True, None),
    )
    assert snap.sources_used == ("coingecko", "coinmarketcap")
    # weighted medians per field over the used sources that have it
    assert snap.market_cap == 1010.0  # cmc weighs 0.9 against 0.8
    assert snap.volume_24h == 10.0  # only coingecko has a volume among the used


def test_descriptive_fields_come_from_the_heaviest_source_that_has_them() -> None:
    quotes = [
        cg(100.0, symbol="btc", name="Bitcoin (CG)", rank=2, change_1h=0.1, change_24h=1.0, change_7d=7.0,
           circulating_supply=19.0, total_supply=21.0, max_supply=21.0),
        cmc(100.0, symbol="BTC", name="Bitcoin", rank=1, change_1h=None, change_24h=2.0, change_7d=None,
            circulating_supply=19.5, total_supply=None, max_supply=None, age=450),
    ]
    # weights: coingecko 0.8 x 1 = 0.8, coinmarketcap 0.9 x 0.5 = 0.45
    [snap] = run(quotes)
    assert (snap.symbol, snap.name) == ("btc", "Bitcoin (CG)")
    assert (snap.change_1h, snap.change_24h, snap.change_7d) == (0.1, 1.0, 7.0)
    assert (snap.circulating_supply, snap.total_supply, snap.max_supply) == (19.0, 21.0, 21.0)
    assert snap.rank == 1  # rank: the most trusted source's (coinmarketcap), not the heaviest
    assert snap.slug == "bitcoin"
    assert (snap.coingecko_id, snap.coinmarketcap_id) == ("bitcoin", "1")
    assert snap.observed_at == NOW and snap.currency == "usd"

    quotes[0] = cg(100.0, symbol="btc", name="Bitcoin (CG)", change_24h=None)
    [snap] = run(quotes)
    assert snap.change_24h == 2.0  # missing on the heaviest source: the next one's
    assert snap.change_1h is None  # missing everywhere


def test_trust_may_be_a_callable_and_equal_weights_give_the_midpoint() -> None:
    [snap] = baseline([cg(100.0), cmc(101.0)], trust=lambda source: 0.5)
    assert snap.price == 100.5 == run([cg(100.0), cmc(101.0)], trust=lambda source: 0.5)[0].price
    assert snap.confidence == pytest.approx(agreeing(0.5, 0.75, SPREAD_1), rel=1e-12)


def test_unknown_source_in_a_mapping_gets_default_trust() -> None:
    [snap] = baseline([q("simulator", "x1", 5.0, slug="x")], trust={})
    assert (snap.coin_id, snap.confidence) == ("x", 0.5)


def test_newest_duplicate_wins_and_missing_price_is_skipped() -> None:
    old = cmc(90.0, age=60)
    new = cmc(100.0, age=10)
    [snap] = run([new, old, cg(None)])  # type: ignore[arg-type]
    assert snap.price == 100.0 and snap.sources_used == ("coinmarketcap",)
    assert run([old, new]) == run([new, old])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_max_staleness_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="max_staleness"):
        reconcile([], observed_at=NOW, trust=TRUST, max_staleness=bad)


def test_negative_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match="disagreement_tolerance"):
        reconcile([], observed_at=NOW, trust=TRUST, max_staleness=1.0, disagreement_tolerance=-0.1)


@pytest.mark.parametrize("enabled", [True, False], ids=["gc-on", "gc-off"])
def test_garbage_collector_state_is_restored(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        run([cg(100.0), cmc(101.0)])
        assert gc.isenabled() is enabled
        with pytest.raises(ValueError, match="could not convert"):
            run([cg(100.0)], trust=lambda source: "high")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


# --- identity ---------------------------------------------------------------------------------

IDENTITY = [
    pytest.param(
        [q("coingecko", "uniswap", 7.0, symbol="uni", name="Uniswap"),
         q("coingecko", "unicorn-token", 0.01, symbol="UNI", name="Unicorn Token"),
         q("coinmarketcap", "7083", 7.0, symbol="UNI", name="Uniswap", slug="uniswap"),
         q("coinmarketcap", "999", 0.01, symbol="UNI", name="Unicorn-Token", slug="unicorn")],
        {"uniswap": {"coingecko:uniswap", "coinmarketcap:7083"},
         "unicorn-token": {"coingecko:unicorn-token", "coinmarketcap:999"}},
        id="two-coins-share-a-symbol"),
    pytest.param(
        [q("coinmarketcap", "10", 1.0, symbol="BTT", name="BitTorrent", slug="bittorrent"),
         q("coingecko", "bittorrent-old", 1.0, symbol="BTT", name="BitTorrent [OLD]")],
        {"bittorrent": {"coinmarketcap:10"}, "bittorrent-old": {"coingecko:bittorrent-old"}},
        id="symbol-alone-never-joins"),
    pytest.param(
        [q("coingecko", "wrapped-bitcoin", 1.0, symbol="WBTC", name="Wrapped Bitcoin"),
         q("coinmarketcap", "3717", 1.0, symbol="wbtc ", name=" wrapped  bitcoin!", slug="multi-collateral")],
        {"wrapped-bitcoin": {"coingecko:wrapped-bitcoin", "coinmarketcap:3717"}},
        id="normalised-name-and-symbol-join"),
    pytest.param(
        [q("coingecko", "bitcoin", 1.0), q("coingecko-html", "bitcoin", 1.0, name="Bitcoin BTC", symbol="XBT")],
        {"bitcoin": {"coingecko:bitcoin", "coingecko-html:bitcoin"}},
        id="coingecko-api-and-page-by-id"),
    pytest.param(
        [q("coinmarketcap", "1", 1.0, slug="bitcoin"), q("coinmarketcap-html", "1", 1.0, name="BTC")],
        {"bitcoin": {"coinmarketcap:1", "coinmarketcap-html:1"}},
        id="coinmarketcap-api-and-page-by-id"),
    pytest.param(
        [q("coingecko", "weth", 1.0, symbol="WETH", name="WETH"),
         q("coinmarketcap", "2396", 1.0, symbol="WETH", name="WETH", slug="weth"),
         q("coinmarketcap", "9999", 1.0, symbol="WETH", name="WETH", slug="arbitrum-bridged-weth")],
        {"weth": {"coingecko:weth", "coinmarketcap:2396"},
         "arbitrum-bridged-weth": {"coinmarketcap:9999"}},
        id="key-ambiguous-within-a-source-is-not-used"),
    pytest.param(
        [q("coingecko", "foo", 1.0, symbol="FOC", name="Foo Classic"),
         q("coinmarketcap", "1", 1.0, symbol="FOO", name="Foo", slug="foo"),
         q("coinmarketcap", "2", 1.0, symbol="FOC", name="Foo Classic", slug="foo-classic")],
        {"foo": {"coingecko:foo", "coinmarketcap:1"}, "foo-classic": {"coinmarketcap:2"}},
        id="chain-never-joins-two-quotes-of-one-source"),
    pytest.param(
        # coingecko-html "foo" (slug "bar") shares its id with coingecko "foo" and its slug with coingecko "bar",
        # which cannot both be in its coin: the id, the stronger key, decides
        [q("coingecko-html", "foo", 1.0, slug="bar", name="X", symbol="X"),
         q("coingecko", "bar", 1.0, name="Y", symbol="Y"), q("coingecko", "foo", 1.0, name="Z", symbol="Z")],
        {"foo": {"coingecko:foo", "coingecko-html:foo"}, "bar": {"coingecko:bar"}},
        id="ids-join-before-slugs"),
    pytest.param(
        [q("coingecko", "foo", 1.0, symbol="F0", name="F0"),
         q("coinmarketcap", "1", 1.0, symbol="FA", name="Foo A", slug="foo"),
         q("coinmarketcap", "2", 1.0, symbol="FB", name="Foo B", slug="foo")],
        {"foo": {"coingecko:foo"}, "coinmarketcap:1": {"coinmarketcap:1"},
         "coinmarketcap:2": {"coinmarketcap:2"}},
        id="claimed-ids-stay-unique"),
    pytest.param(
        [q("coinmarketcap", "5", 1.0, slug=None, name="No Slug", symbol="NS")],
        {"coinmarketcap:5": {"coinmarketcap:5"}},
        id="no-coingecko-id-no-slug"),
]


@pytest.mark.parametrize(("quotes", "expected"), IDENTITY)
def test_identity(quotes: list[SourceQuote], expected: dict[str, set[str]]) -> None:
    snapshots = run(quotes)
    assert {s.coin_id: {f"{v.source}:{v.source_id}" for v in s.sources} for s in snapshots} == expected
    assert [s.coin_id for s in snapshots] == sorted(s.coin_id for s in snapshots)
    assert run(list(reversed(quotes))) == snapshots


def test_identity_ids_of_a_joined_coin() -> None:
    snapshots = run([
        q("coingecko", "uniswap", 7.0, symbol="UNI", name="Uniswap"),
        q("coinmarketcap", "7083", 7.0, symbol="UNI", name="Uniswap", slug="uniswap"),
        q("coinmarketcap-html", "7083", 7.0, symbol="UNI", name="Uniswap", slug="uniswap"),
    ])
    [snap] = snapshots
    assert (snap.coin_id, snap.coingecko_id, snap.coinmarketcap_id, snap.slug) == (
        "uniswap", "uniswap", "7083", "uniswap")


def test_currencies_are_never_joined() -> None:
    snapshots = run([cg(100.0, currency="usd"), cg(90.0, currency="eur"), cmc(101.0, currency="usd")])
    assert [(s.coin_id, s.currency, s.price) for s in snapshots] == [
        ("bitcoin", "eur", 90.0), ("bitcoin", "usd", 101.0)]


def test_identity_helpers() -> None:
    assert normalise_name("Wrapped Bitcoin (WBTC)") == "wrappedbitcoinwbtc"
    assert normalise_name("Ünï-Swap_2") == "ünïswap2"
    assert identity_keys(cmc(1.0, symbol=" btc", name="Bit Coin", slug=" Bitcoin ")) == [
        ("id", "usd", "coinmarketcap", "1"), ("slug", "usd", "bitcoin"), ("ns", "usd", "bitcoin", "BTC")]
    # a CoinGecko id is a slug too; a name without letters or digits is no name
    assert identity_keys(q("coingecko-html", "Bitcoin", 1.0, slug="bitcoin", name="!!", symbol="BTC")) == [
        ("id", "usd", "coingecko", "Bitcoin"), ("slug", "usd", "bitcoin")]
    # a source without a namespace has its own: its ids join nothing but its own repeats
    assert identity_keys(q("binance", "BTC", 1.0, slug=""), NAMESPACES) == [
        ("id", "usd", "binance", "BTC"), ("ns", "usd", "bitcoin", "BTC")]
    assert identity_keys(q("coinpaprika", "btc-bitcoin", 1.0, currency="eur"), NAMESPACES) == [
        ("id", "eur", "coinpaprika", "btc-bitcoin"), ("ns", "eur", "bitcoin", "BTC")]


# --- properties -------------------------------------------------------------------------------

SOURCES = ("coingecko", "coinmarketcap", "coingecko-html", "coinmarketcap-html")
# (coingecko id, coinmarketcap id, slug, name, symbol): shared symbols and near-identical names on purpose
COINS = (
    ("bitcoin", "1", "bitcoin", "Bitcoin", "BTC"),
    ("uniswap", "7083", "uniswap", "Uniswap", "UNI"),
    ("unicorn", "8000", "unicorn-token", "Unicorn Token", "UNI"),
    ("bittorrent", "16086", "bittorrent-new", "BitTorrent", "BTT"),
    ("bittorrent-old", "3718", "bittorrent", "BitTorrent", "BTT"),
    ("weth", "2396", "weth", "WETH", "WETH"),
)

quote_specs = st.lists(
    st.tuples(
        st.sampled_from(SOURCES),
        st.integers(0, len(COINS) - 1),
        st.floats(1e-9, 1e9, allow_nan=False, allow_infinity=False),
        st.floats(0.0, 1.5 * MAX_STALENESS),
        st.one_of(st.none(), st.floats(0.0, 1e15)),
        st.sampled_from(("usd", "eur")),
    ),
    max_size=30,
)


def build(spec: tuple[str, int, float, float, float | None, str]) -> SourceQuote:
    source, coin, price, age, cap, currency = spec
    cg_id, cmc_id, slug, name, symbol = COINS[coin]
    sid = cg_id if source.startswith("coingecko") else cmc_id
    return q(source, sid, price, symbol=symbol, name=name, slug=None if source == "coingecko" else slug,
             age=age, market_cap=cap, currency=currency)


@settings(max_examples=200, deadline=None)
@given(
    specs=quote_specs,
    trust=st.fixed_dictionaries({s: st.floats(0.01, 1.0) for s in SOURCES}),
    previous=st.dictionaries(st.sampled_from([c[0] for c in COINS]), st.floats(1e-9, 1e9), max_size=3),
    data=st.data(),
)
def test_properties(specs: list[tuple[str, int, float, float, float | None, str]], trust: dict[str, float],
                    previous: dict[str, float], data: st.DataObject) -> None:
    quotes = [build(s) for s in specs]
    snapshots = run(quotes, previous, trust=trust)
    for s in snapshots:
        assert 0.0 <= s.confidence <= 1.0
        used = [v for v in s.sources if v.used]
        assert used
        assert min(v.price for v in used) <= s.price <= max(v.price for v in used)
        caps = [v.market_cap for v in used if v.market_cap is not None]
        assert (s.market_cap is None) == (not caps)
        if caps:
            assert min(caps) <= s.market_cap <= max(caps)  # type: ignore[operator]
        assert len({v.source for v in s.sources}) == len(s.sources)
    assert len({(s.coin_id, s.currency) for s in snapshots}) == len(snapshots)
    assert [(s.coin_id, s.currency) for s in snapshots] == sorted((s.coin_id, s.currency) for s in snapshots)
    # every distinct (currency, source, source_id) lands in exactly one snapshot, unless all its coin is stale
    seen = [(s.currency, v.source, v.source_id) for s in snapshots for v in s.sources]
    assert len(seen) == len(set(seen))
    assert set(seen) <= {(x.currency, x.source, x.source_id) for x in quotes}
    shuffled = data.draw(st.permutations(quotes))
    assert run(list(shuffled), previous, trust=trust) == snapshots


# --- one path for every input ---------------------------------------------------------------------
# Every input takes the same code; the tests below check what it does with the unusual ones, and compare it
# with tests/reference_reconcile.py (the rules written as plainly as possible) over generated inputs.


def groups(snapshots: list[CoinSnapshot]) -> set[frozenset[str]]:
    return {frozenset(f"{v.source}:{v.source_id}" for v in s.sources) for s in snapshots}


def test_usual_input_is_grouped_by_ids_slugs_and_names() -> None:
    quotes = [q(source, "bitcoin" if source.startswith("coingecko") else "1", 100.0 + i, slug="bitcoin")
              for i, source in enumerate(TRUST)]
    quotes += [q("coingecko", "ether", 10.0, name="Ether", symbol="ETH"),
               q("coinmarketcap", "2", 10.1, name="Ether", symbol="eth", slug="ethereum")]
    assert groups(run(quotes)) == {
        frozenset({"coingecko:bitcoin", "coingecko-html:bitcoin", "coinmarketcap:1", "coinmarketcap-html:1"}),
        frozenset({"coingecko:ether", "coinmarketcap:2"})}


def test_coins_found_apart_are_merged_by_a_later_quote() -> None:
    # In memory order the first two quotes start two coins; the third joins both (by id and by name).
    quotes = [q("coinmarketcap", "7", 1.0, slug="bar", name="Bar", symbol="B"),
              q("coingecko", "foo", 1.0, name="Foo", symbol="F"),
              q("coinmarketcap-html", "7", 1.0, name="Foo", symbol="F")]
    assert groups(run(quotes)) == {frozenset({"coinmarketcap:7", "coingecko:foo", "coinmarketcap-html:7"})}
    # ... unless the merged coin would hold one source twice: ids first, then slugs, then names decide.
    quotes.append(q("coingecko", "bar", 1.0, name="Bar", symbol="B"))
    assert groups(run(quotes)) == {frozenset({"coinmarketcap:7", "coinmarketcap-html:7", "coingecko:bar"}),
                                   frozenset({"coingecko:foo"})}


def test_coins_claiming_one_id_come_out_in_a_fixed_order() -> None:
    # A CoinGecko id that looks like a fallback id: both coins end up with it, ordered by their sources.
    quotes = [q("coingecko", "coinmarketcap:5", 1.0, name="A", symbol="A"),
              q("coinmarketcap", "5", 2.0, name="B", symbol="B")]
    snapshots = run(quotes)
    assert [(s.coin_id, s.sources[0].source) for s in snapshots] == [
        ("coinmarketcap:5", "coingecko"), ("coinmarketcap:5", "coinmarketcap")]
    assert run(list(reversed(quotes))) == snapshots


def test_namespaces_default_to_the_registry() -> None:
    quotes = [cg(100.0), cgh(100.5), cmc(101.0), q("simulator", "s1", 100.2)]
    assert run(quotes) == run(quotes, namespaces=registry.namespaces())
    assert identity_keys(cg(1.0)) == identity_keys(cg(1.0), registry.namespaces())


def test_coinpaprika_joins_by_name_and_symbol() -> None:
    quotes = [cg(100.0), cmc(101.0), q("coinpaprika", "btc-bitcoin", 102.0, name="Bitcoin", symbol="btc"),
              q("coinpaprika", "eth-ethereum", 10.0, name="Ethereum", symbol="ETH")]
    snapshots = run(quotes, namespaces=NAMESPACES, trust={**TRUST, "coinpaprika": 0.75})
    assert [(s.coin_id, [v.source for v in s.sources]) for s in snapshots] == [
        ("bitcoin", ["coingecko", "coinmarketcap", "coinpaprika"]),
        ("coinpaprika:eth-ethereum", ["coinpaprika"])]
    # its ids are its own: they fill no id column and never join another namespace's ids
    assert (snapshots[0].coingecko_id, snapshots[0].coinmarketcap_id) == ("bitcoin", "1")
    assert groups(run([q("coinpaprika", "1", 5.0, name="A", symbol="A"), q("coinmarketcap", "1", 5.0, name="B",
                                                                          symbol="B")], namespaces=NAMESPACES)) == {
        frozenset({"coinpaprika:1"}), frozenset({"coinmarketcap:1"})}


@pytest.mark.parametrize("fourth", ["coinpaprika", "binance"])
def test_a_source_outside_the_namespaces_is_grouped_like_any_other(fourth: str) -> None:
    """A source missing from the namespaces (binance) is grouped by the same code, with the same result, as
    one with a namespace of its own (coinpaprika)."""
    quotes = []
    for i in range(50):
        quotes += [q("coingecko", f"coin-{i}", 1.0 + i, name=f"Coin {i}", symbol=f"C{i}"),
                   q("coinmarketcap", str(i), 1.0 + i, name=f"Coin {i}", symbol=f"C{i}", slug=f"coin-{i}"),
                   q("coingecko-html", f"coin-{i}", 1.0 + i, name=f"Coin {i}", symbol=f"C{i}"),
                   q(fourth, f"c{i}-coin-{i}", 1.0 + i, name=f"coin {i}", symbol=f"c{i}")]
    snapshots = run(quotes, namespaces=NAMESPACES, trust={**TRUST, fourth: 0.75})
    assert [s.coin_id for s in snapshots] == sorted(f"coin-{i}" for i in range(50))
    assert {len(s.sources) for s in snapshots} == {4}
    assert {v.source_id for s in snapshots for v in s.sources if v.source == fourth} == {
        f"c{i}-coin-{i}" for i in range(50)}
    assert all(s.confidence > 0.75 for s in snapshots)  # 3 independent sources in exact agreement


def test_four_equal_sources_give_the_midpoint_of_the_middle_two() -> None:
    quotes = [cg(100.0), cgh(101.0), cmc(102.0), cmch(103.0)]
    [snap] = run(quotes, trust=lambda source: 0.7)
    assert snap.price == 101.5
    assert snap.sources_used == ("coingecko", "coingecko-html", "coinmarketcap", "coinmarketcap-html")
    # three equal sources: the middle one; five, with a fifth source of another namespace: the middle one
    assert run(quotes[:3], trust=lambda source: 0.7)[0].price == 101.0
    paprika = q("coinpaprika", "btc-bitcoin", 104.0)
    assert run([*quotes, paprika], trust=lambda source: 0.7, namespaces=NAMESPACES)[0].price == 102.0


def test_weights_within_a_rounding_error_of_half_give_the_midpoint() -> None:
    near = 0.6 * (1 + 1e-13)
    assert run([cg(100.0), cmc(102.0)], trust={"coingecko": 0.6, "coinmarketcap": near})[0].price == 101.0
    apart = 0.6 * (1 + 1e-10)
    assert run([cg(100.0), cmc(102.0)], trust={"coingecko": 0.6, "coinmarketcap": apart})[0].price == 102.0
    assert run([cg(100.0), cmc(102.0)], trust={"coingecko": apart, "coinmarketcap": 0.6})[0].price == 100.0


def test_ids_come_from_the_source_named_like_its_namespace() -> None:
    # "exchange" is the namespace's own source: its id is taken before "dex"'s, although "dex" sorts first
    exchange = IdNamespace("exchange", ids_are_slugs=True, canonical=True, column="coinmarketcap_id")
    namespaces = {**NAMESPACES, "dex": exchange, "exchange": exchange}
    quotes = [q("dex", "Bitcoin", 100.0), q("exchange", "bitcoin", 100.0), cmc(100.0)]
    [snap] = run(quotes, namespaces=namespaces)
    assert (snap.coin_id, snap.coingecko_id, snap.coinmarketcap_id) == ("bitcoin", None, "1")  # by namespace name
    [snap] = run([*quotes, cgh(100.0)], namespaces=namespaces)
    assert (snap.coin_id, snap.coingecko_id) == ("bitcoin", "bitcoin")  # coingecko before exchange
    [snap] = run(quotes[:1], namespaces=namespaces)
    assert (snap.coin_id, snap.coinmarketcap_id) == ("Bitcoin", "Bitcoin")


def test_nan_caps_count_as_missing_and_nan_trust_as_zero() -> None:
    [snap] = baseline([cg(100.0, market_cap=math.nan, volume_24h=5.0),
                       cmc(100.0, market_cap=7.0, volume_24h=math.nan)],
                      trust={"coingecko": math.nan, "coinmarketcap": 2.0})
    assert (snap.market_cap, snap.volume_24h, snap.confidence) == (7.0, 5.0, 1.0)
    assert [(v.market_cap, v.volume_24h) for v in snap.sources] == [(None, 5.0), (7.0, None)]


def test_same_time_duplicates_are_settled_whatever_the_order() -> None:
    a = cmc(100.0, market_cap=1.0)
    b = cmc(100.0, market_cap=2.0)
    assert repr(run([a, b])) == repr(run([b, a])) == repr(run([replace(b), replace(a)]))


# --- the reference implementation -----------------------------------------------------------------

# Sources: both namespaces of the registry, one joined by name and symbol only, two without a namespace,
# and a namespace whose own source does not sort first.
EXCHANGE = IdNamespace("exchange", ids_are_slugs=True, canonical=True, column="coingecko_id")
ORACLE_NAMESPACES = {**NAMESPACES, "dex": EXCHANGE, "exchange": EXCHANGE}
ALL_SOURCES = (*TRUST, "coinpaprika", "simulator", "binance", "dex", "exchange")
# (coingecko id, coinmarketcap id, name, symbol, slug): few values, so that keys collide, chain and go ambiguous
coin_specs = st.tuples(
    st.sampled_from(["bitcoin", "Bitcoin", "uniswap", "weth", "coinmarketcap:5", "foo", ""]),
    st.sampled_from(["1", "2", "5", "7083"]),
    st.sampled_from(["Bitcoin", "bitcoin!", "Bit Coin", "Uniswap", "Unicorn Token", "WETH", "Foo", ""]),
    st.sampled_from(["BTC", "btc ", "UNI", "WETH", "F", ""]),
    st.sampled_from([None, "bitcoin", " Bitcoin ", "uniswap", "weth", "foo", "coinmarketcap:5", "", "  "]),
)
numbers = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 5.0, 7.0, 5, math.nan, math.inf]), st.floats(0, 1e12))
# price offsets: equal, agreeing, at the tolerance, outliers
offsets = st.one_of(st.sampled_from([0.0, 0.0, 0.001, -0.002, 0.01, 0.049, 0.051, -0.052, -0.06, 0.5, 9.0]),
                    st.floats(-0.5, 10))


@st.composite
def messy_quotes(draw: st.DrawFn) -> list[SourceQuote]:
    coins = draw(st.lists(coin_specs, min_size=1, max_size=6))
    base = draw(st.sampled_from([1.0, 100.0, 3e-7, 5]))
    out = []
    for _ in range(draw(st.integers(0, 24))):
        source = draw(st.sampled_from(ALL_SOURCES))
        cg_id, cmc_id, name, symbol, slug = coins[draw(st.integers(0, len(coins) - 1))]
        if source.startswith("coingecko") or source in ("dex", "exchange"):
            sid = cg_id
        elif source.startswith("coinmarketcap"):
            sid = cmc_id
        elif source == "coinpaprika":
            sid, slug = f"{symbol.strip().lower()}-{name.lower()}", None
        else:
            sid = draw(st.sampled_from([symbol, cmc_id, "x"]))
        offset = draw(offsets)
        price = draw(st.sampled_from([None, 0.0, -1.0, math.nan, math.inf])) if draw(st.integers(0, 20)) == 0 \
            else base * (1 + offset) if offset else base
        age = draw(st.sampled_from([0.0, -5.0, 30.0, 60.0, 450.0, 899.0, 900.0, 901.0, 5000.0]))
        when = draw(st.sampled_from(["aware", "naive", "none"]))
        out.append(q(
            source, sid, price, name=name, symbol=symbol, slug=None if source == "coingecko" else slug, age=age,
            currency=draw(st.sampled_from(["usd", "usd", "eur"])), rank=draw(st.one_of(st.none(), st.integers(0, 9))),
            market_cap=draw(numbers), volume_24h=draw(numbers), change_1h=draw(st.one_of(st.none(), st.floats(-5, 5))),
            change_24h=draw(numbers), circulating_supply=draw(numbers), total_supply=draw(numbers),
            max_supply=draw(st.none() | st.just(1e9)),
            **({"last_updated": None, "collected_at": NOW - timedelta(seconds=age)} if when == "none" else
               {"last_updated": (NOW - timedelta(seconds=age)).replace(tzinfo=None)} if when == "naive" else {}),
        ))
    return out


# Coins named alike by every source (the usual input), 2-5 sources each, prices within a few percent.
USUAL_COINS = (
    ("bitcoin", "1", "bitcoin", "Bitcoin", "BTC"),
    ("uniswap", "7083", "uniswap", "Uniswap", "UNI"),
    ("unicorn", "8000", "unicorn-token", "Unicorn Token", "UNI"),
    ("bittorrent", "16086", "bittorrent-new", "BitTorrent", "BTT"),
    ("bittorrent-old", "3718", "bittorrent", "BitTorrent", "BTT"),
    ("Weth", "2396", " WETH ", "WETH", "weth"),
    ("x:1", "coingecko:x", "coinmarketcap:9", "", "X"),
    ("foo", "42", "foo-token", "Foo", "F"),  # named "Foo Token" by the CoinMarketCap API: joined by other keys
)
USUAL_SOURCES = (*TRUST, "coinpaprika")


@st.composite
def usual_quotes(draw: st.DrawFn) -> list[SourceQuote]:
    base = draw(st.sampled_from([1.0, 100.0, 3e-7, 5]))
    out = []
    for source, coin in draw(st.lists(st.tuples(st.sampled_from(USUAL_SOURCES), st.integers(0, len(USUAL_COINS) - 1)),
                                      max_size=30, unique=True)):
        cg_id, cmc_id, slug, name, symbol = USUAL_COINS[coin]
        variant = draw(st.integers(0, 3))
        if cg_id == "foo" and source == "coinmarketcap":
            name = "Foo Token"
        sid = cg_id if source.startswith("coingecko") else f"{symbol.lower()}-{slug}" if source == "coinpaprika" \
            else cmc_id
        out.append(q(
            source, sid,
            base * (1 + coin) * (1 + draw(st.sampled_from([0.0, 0.0, 0.001, -0.002, 0.02, -0.03, 0.049, 0.5]))),
            name=name.upper() if variant == 1 else name, symbol=symbol.lower() if variant == 2 else symbol,
            slug=None if source in ("coingecko", "coinpaprika") or variant == 3 else slug,
            age=draw(st.sampled_from([0.0, -5.0, 30.0, 30.0, 60.0, 899.0, 901.0])),
            market_cap=draw(numbers), volume_24h=draw(numbers), rank=draw(st.one_of(st.none(), st.integers(0, 9))),
            change_1h=draw(st.one_of(st.none(), st.floats(-5, 5))), total_supply=draw(numbers),
            circulating_supply=draw(numbers), max_supply=draw(st.none() | st.just(1e9)),
        ))
    return out


trusts = st.one_of(
    st.just({**TRUST, "coinpaprika": 0.75}),
    st.just(dict.fromkeys(ALL_SOURCES, 0.6)),  # equal weights: midpoints
    st.fixed_dictionaries({}, optional={s: st.sampled_from([0.0, 0.5, 0.6, 0.6 * (1 + 1e-13), 0.8, 1.0, 2.0, math.nan,
                                                            -1.0]) for s in ALL_SOURCES}),
    st.fixed_dictionaries({s: st.floats(0.0, 1.0) for s in ALL_SOURCES}),
)
previouses = st.dictionaries(
    st.sampled_from(["bitcoin", "Bitcoin", "uniswap", "unicorn", "weth", "foo", "x:1", "coinmarketcap:5", "simulator:x"]),
    st.sampled_from([1.0, 100.0, 250.0, 1000.0, 3e-7, 5, math.nan, 0.0]), max_size=4)
COIN_IDS = ["bitcoin", "Bitcoin", "uniswap", "unicorn", "weth", "foo", "x:1", "coinmarketcap:5", "simulator:x"]
memories = st.builds(
    ConsensusMemory,
    excluded=st.dictionaries(st.sampled_from(COIN_IDS), st.frozensets(st.sampled_from(ALL_SOURCES), max_size=3),
                             max_size=3),
    unverified=st.frozensets(st.sampled_from(COIN_IDS), max_size=3),
)
settings_of_a_call = st.fixed_dictionaries({
    "trust": trusts, "previous": previouses,
    "disagreement_tolerance": st.sampled_from([0.05, 0.05, 0.0, 0.01, 0.3]),
    "max_staleness": st.sampled_from([900.0, 900.0, 60.0, math.inf]),
    "memory": st.one_of(st.none(), memories), "rule": st.sampled_from(RULES),
})


def check_against_reference(quotes: list[SourceQuote], call: dict[str, Any], data: st.DataObject) -> None:
    kw = {"observed_at": NOW, "namespaces": ORACLE_NAMESPACES, **call}
    got = reconcile(quotes, **kw)
    # repr, not ==: it tells -0.0 from 0.0 and 5 from 5.0, and a NaN equals no other NaN
    assert repr(got) == repr(reference_reconcile.reconcile(quotes, **kw))
    # the same quotes in another order, and built in that order (reconcile visits them in memory order)
    shuffled = [replace(x) for x in data.draw(st.permutations(quotes))]
    assert repr(reconcile(shuffled, **kw)) == repr(got)


@settings(max_examples=400, deadline=None)
@given(quotes=messy_quotes(), call=settings_of_a_call, data=st.data())
def test_matches_the_reference_on_colliding_keys(quotes: list[SourceQuote], call: dict[str, Any],
                                                 data: st.DataObject) -> None:
    check_against_reference(quotes, call, data)


@settings(max_examples=300, deadline=None)
@given(quotes=usual_quotes(), call=settings_of_a_call, data=st.data())
def test_matches_the_reference_on_usual_input(quotes: list[SourceQuote], call: dict[str, Any],
                                              data: st.DataObject) -> None:
    check_against_reference(quotes, call, data)


@pytest.mark.parametrize("quotes", [
    pytest.param([cg(1.0), cg(2.0, age=10)], id="repeated-source-id"),
    pytest.param([cg(1.0, age=10, market_cap=1.0), cg(1.0, age=10, market_cap=-0.0), cmc(1.0)],
                 id="repeated-at-one-time"),
    pytest.param([cg(1.0), cmc(1.0, currency="eur"), cmc(1.1)], id="two-currencies"),
    pytest.param([cg(1.0), q("binance", "BTC", 1.0), q("simulator", "BTC", 1.2, slug="bitcoin")], id="unknown-sources"),
    pytest.param([q("coinmarketcap", "1", 1.0, slug="weth", name="WETH", symbol="WETH"),
                  q("coinmarketcap", "2", 1.0, slug="weth-bridged", name="WETH", symbol="WETH"),
                  q("coingecko", "weth", 1.0, name="WETH", symbol="WETH")], id="ambiguous-key"),
    pytest.param([q("coingecko", "foo", 1.0, symbol="FOC", name="Foo Classic"),
                  q("coinmarketcap", "1", 1.0, symbol="FOO", name="Foo", slug="foo"),
                  q("coinmarketcap", "2", 1.0, symbol="FOC", name="Foo Classic", slug="foo-classic"),
                  q("coinpaprika", "foc-foo-classic", 1.0, symbol="FOC", name="Foo Classic")], id="chain"),
    pytest.param([q("coinpaprika", "btc-bitcoin", 100.0), q("coinpaprika", "btc-bitcoin-2", 101.0), cg(100.0)],
                 id="name-held-twice-by-one-source"),
])
def test_unusual_input_matches_the_reference(quotes: list[SourceQuote]) -> None:
    kw: dict[str, Any] = {"observed_at": NOW, "trust": TRUST, "max_staleness": MAX_STALENESS,
                          "namespaces": ORACLE_NAMESPACES}
    got = reconcile(quotes, **kw)
    assert got
    assert repr(got) == repr(reference_reconcile.reconcile(quotes, **kw))
    assert repr(reconcile([replace(x) for x in reversed(quotes)], **kw)) == repr(got)
