from __future__ import annotations

import gc
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptoviz import reconcile as reconcile_module
from cryptoviz.models import CoinSnapshot, SourceQuote, SourceValue
from cryptoviz.reconcile import DISAGREEMENT, OUTLIER, identity_keys, normalise_name, reconcile
from cryptoviz.validate import STALE

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


def run(quotes: list[SourceQuote], previous: dict[str, float] | None = None, **kw: Any) -> list[CoinSnapshot]:
    kw.setdefault("trust", TRUST)
    return reconcile(quotes, observed_at=NOW, max_staleness=MAX_STALENESS, disagreement_tolerance=TOL,
                     previous=previous, **kw)


def agreeing(t_max: float, combined: float, spread: float) -> float:
    """The documented confidence of sources that agree within the tolerance."""
    return t_max + (combined - t_max) * (1 - spread / TOL)


SPREAD_1 = 1 / 101  # 100 vs 101
SPREAD_20 = 20 / 120  # 100 vs 120
CG_CMC = 1 - (1 - 0.8) * (1 - 0.9)

# (quotes, previous, {coin_id: (price, confidence, {source: dropped_reason or None})})
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
    snapshots = run(quotes, previous)
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


def test_single_source_confidence_is_exactly_its_trust() -> None:
    for source, trust in TRUST.items():
        sid = "1" if "coinmarketcap" in source else "bitcoin"
        [snap] = run([q(source, sid, 100.0, slug="bitcoin", age=300)])
        assert snap.confidence == trust


def test_confidence_rewards_agreement_and_punishes_disagreement() -> None:
    best_alone = max(run([cg(100.0)])[0].confidence, run([cmc(100.0)])[0].confidence)
    assert run([cg(100.0), cmc(100.5)])[0].confidence > best_alone
    assert run([cg(100.0), cmc(110.0)])[0].confidence < best_alone
    assert run([cg(100.0), cmc(110.0)], {"bitcoin": 100.0})[0].confidence < best_alone
    two = run([cg(100.0), cmc(100.0)])[0].confidence
    three = run([cg(100.0), cmc(100.0), cgh(100.0)])[0].confidence
    assert three > two > best_alone
    # at the tolerance edge, agreement is worth exactly the best single trust
    assert run([cg(95.0), cmc(100.0)])[0].confidence == pytest.approx(0.9, rel=1e-12)


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
    [snap] = run([cg(100.0), cmc(101.0)], trust=lambda source: 0.5)
    assert snap.price == 100.5
    assert snap.confidence == pytest.approx(agreeing(0.5, 0.75, SPREAD_1), rel=1e-12)


def test_unknown_source_in_a_mapping_gets_default_trust() -> None:
    [snap] = run([q("simulator", "x1", 5.0, slug="x")], trust={})
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
        ("cmc", "usd", "1"), ("slug", "usd", "bitcoin"), ("ns", "usd", "bitcoin", "BTC")]
    assert identity_keys(q("coingecko", "bitcoin", 1.0, slug=None, name="!!", symbol="BTC")) == [
        ("cg", "usd", "bitcoin"), ("slug", "usd", "bitcoin")]


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


# --- fast paths ---------------------------------------------------------------------------------
# The usual input takes a one-pass grouping (_gather_fast, _snapshots_fast) and consensus shortcuts for two
# or three agreeing sources (_snapshot2, _snapshot3); each must give exactly what the general code gives.

FAST_TRUST = {"coinmarketcap": 0.9, "coingecko": 0.8, "coinmarketcap-html": 0.7, "coingecko-html": 0.6}
KNOWN = ("coingecko", "coingecko-html", "coinmarketcap", "coinmarketcap-html")


def both_paths(quotes: list[SourceQuote], trust: Any, previous: dict[str, float] | None = None,
               tol: float = TOL, max_staleness: float = MAX_STALENESS) -> list[CoinSnapshot]:
    lookup = reconcile_module._trust_lookup(trust)
    fast = reconcile_module._reconcile(quotes, NOW, lookup, max_staleness, tol, previous)
    general = reconcile_module._reconcile(quotes, NOW, lookup, max_staleness, tol, previous, fast=False)
    # repr, not ==: it tells -0.0 from 0.0 and 5 from 5.0, and a NaN from the walk equals no other NaN
    assert repr(fast) == repr(general)
    return fast


def fast_groups(quotes: list[SourceQuote], trust: Any = FAST_TRUST) -> set[frozenset[tuple[str, str]]] | None:
    coins = reconcile_module._gather_fast(quotes, NOW.timestamp(), reconcile_module._trust_lookup(trust), {},
                                          MAX_STALENESS)
    if coins is None:
        return None
    return {frozenset((r[0], r[1].source_id) for r in slots if r is not None) for slots in coins if slots}


def general_groups(quotes: list[SourceQuote], trust: Any = FAST_TRUST) -> set[frozenset[tuple[str, str]]]:
    groups = reconcile_module._gather(quotes, NOW.timestamp(), reconcile_module._trust_lookup(trust), {},
                                      MAX_STALENESS)
    return {frozenset((r[0], r[1].source_id) for r in rows) for rows in groups}


def test_usual_input_takes_the_fast_path() -> None:
    quotes = [q(source, "bitcoin" if source.startswith("coingecko") else "1", 100.0 + i, slug="bitcoin")
              for i, source in enumerate(KNOWN)]
    quotes += [q("coingecko", "ether", 10.0, name="Ether", symbol="ETH"),
               q("coinmarketcap", "2", 10.1, name="Ether", symbol="eth", slug="ethereum")]
    assert fast_groups(quotes) == general_groups(quotes) == {
        frozenset({("coingecko", "bitcoin"), ("coingecko-html", "bitcoin"), ("coinmarketcap", "1"),
                   ("coinmarketcap-html", "1")}),
        frozenset({("coingecko", "ether"), ("coinmarketcap", "2")})}
    both_paths(quotes, FAST_TRUST)


@pytest.mark.parametrize("quotes", [
    pytest.param([cg(1.0), cg(2.0, age=10)], id="repeated-source-id"),
    pytest.param([cg(1.0), cmc(1.0, currency="eur")], id="two-currencies"),
    pytest.param([cg(1.0), q("binance", "BTC", 1.0)], id="unknown-source"),
    pytest.param([q("coinmarketcap", "1", 1.0, slug="weth", name="WETH", symbol="WETH"),
                  q("coinmarketcap", "2", 1.0, slug="weth-bridged", name="WETH", symbol="WETH")],
                 id="ambiguous-key"),
])
def test_unusual_input_takes_the_general_path(quotes: list[SourceQuote]) -> None:
    assert fast_groups(quotes) is None
    both_paths(quotes, FAST_TRUST)


def test_fast_grouping_merges_coins_found_apart() -> None:
    # In this order the first two quotes start two coins; the third joins both (by id and by name).
    quotes = [q("coinmarketcap", "7", 1.0, slug="bar", name="Bar", symbol="B"),
              q("coingecko", "foo", 1.0, name="Foo", symbol="F"),
              q("coinmarketcap-html", "7", 1.0, name="Foo", symbol="F")]
    assert fast_groups(quotes) == general_groups(quotes) == {
        frozenset({("coinmarketcap", "7"), ("coingecko", "foo"), ("coinmarketcap-html", "7")})}
    # ... unless the merged coin would hold one source twice: then the general rules decide.
    quotes.append(q("coingecko", "bar", 1.0, name="Bar", symbol="B"))
    assert fast_groups(quotes) is None
    both_paths(quotes, FAST_TRUST)


def test_coins_claiming_one_id_come_out_in_a_fixed_order() -> None:
    # A CoinGecko id that looks like a fallback id: both coins end up with it, ordered by their sources.
    quotes = [q("coingecko", "coinmarketcap:5", 1.0, name="A", symbol="A"),
              q("coinmarketcap", "5", 2.0, name="B", symbol="B")]
    snapshots = both_paths(quotes, FAST_TRUST)
    assert [(s.coin_id, s.sources[0].source) for s in snapshots] == [
        ("coinmarketcap:5", "coingecko"), ("coinmarketcap:5", "coinmarketcap")]
    assert run(list(reversed(quotes))) == snapshots


# Coins built from a few shared names, symbols and slugs, so that keys collide and chain.
FAST_COINS = (
    ("bitcoin", "1", "bitcoin", "Bitcoin", "BTC"),
    ("uniswap", "7083", "uniswap", "Uniswap", "UNI"),
    ("unicorn", "8000", "unicorn-token", "Unicorn Token", "UNI"),
    ("bittorrent", "16086", "bittorrent-new", "BitTorrent", "BTT"),
    ("bittorrent-old", "3718", "bittorrent", "BitTorrent", "BTT"),
    ("Weth", "2396", " WETH ", "WETH", "weth"),
    ("x:1", "coingecko:x", "coinmarketcap:9", "", "X"),
    ("foo", "42", "foo-token", "Foo", "F"),  # named "Foo Token" by the CoinMarketCap API: joined by other keys
)
numbers = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 5.0, 7.0, 5, math.nan, math.inf]), st.floats(0, 1e12))


@st.composite
def usual_quotes(draw: st.DrawFn) -> list[SourceQuote]:
    """Mostly fast-path input: one currency, known sources; prices within a few percent, ties included."""
    base = draw(st.sampled_from([1.0, 100.0, 3e-7]))
    out = []
    for source, coin in draw(st.lists(st.tuples(st.sampled_from(KNOWN), st.integers(0, len(FAST_COINS) - 1)),
                                      max_size=24, unique=True)):
        cg_id, cmc_id, slug, name, symbol = FAST_COINS[coin]
        variant = draw(st.integers(0, 3))
        if cg_id == "foo" and source == "coinmarketcap":
            name = "Foo Token"
        out.append(q(
            source, cg_id if source.startswith("coingecko") else cmc_id,
            base * (1 + coin) * (1 + draw(st.sampled_from([0.0, 0.0, 0.001, -0.002, 0.02, -0.03, 0.049, 0.5]))),
            name=name.upper() if variant == 1 else name, symbol=symbol.lower() if variant == 2 else symbol,
            slug=None if source == "coingecko" or variant == 3 else slug,
            age=draw(st.sampled_from([0.0, -5.0, 30.0, 30.0, 60.0, 899.0, 901.0])),
            market_cap=draw(numbers), volume_24h=draw(numbers), rank=draw(st.one_of(st.none(), st.integers(1, 9))),
            change_1h=draw(st.one_of(st.none(), st.floats(-5, 5))), total_supply=draw(numbers),
            circulating_supply=draw(numbers), max_supply=draw(st.none() | st.just(1e9)),
        ))
    return out


trusts = st.one_of(st.just(FAST_TRUST), st.fixed_dictionaries({s: st.floats(0.4, 1.0) for s in KNOWN}),
                   st.fixed_dictionaries({s: st.sampled_from([0.0, 0.5, 0.8, 1.0, 2.0, math.nan]) for s in KNOWN}))


@settings(max_examples=300, deadline=None)
@given(quotes=usual_quotes(), trust=trusts,
       previous=st.dictionaries(st.sampled_from(["bitcoin", "uniswap", "unicorn", "bittorrent", "x:1", "weth"]),
                                st.sampled_from([1.0, 100.0, 250.0, 1000.0]), max_size=3),
       tol=st.sampled_from([0.05, 0.05, 0.0, 0.01, 0.3]))
def test_fast_path_matches_general_path(quotes: list[SourceQuote], trust: dict[str, float],
                                        previous: dict[str, float], tol: float) -> None:
    groups = fast_groups(quotes, trust)
    if groups is not None:
        assert groups == general_groups(quotes, trust)
    both_paths(quotes, trust, previous, tol)


def row_specs(offsets: list[float], trust_values: list[float], freshness: list[float]) -> Any:
    """Two or three rows (one per source, in source order) of one coin, for the consensus shortcuts."""
    return st.lists(
        st.tuples(
            st.sampled_from(offsets),  # price offset
            st.sampled_from(trust_values),
            st.sampled_from(freshness),  # -1: stale
            numbers, numbers,  # market cap, volume
            st.one_of(st.none(), st.integers(1, 3)),  # rank
            st.sampled_from(["", "BTC", "btc"]), st.sampled_from(["", "Bitcoin"]),  # symbol, name
            st.one_of(st.none(), st.floats(-5, 5)),  # a change, a supply
        ),
        min_size=2, max_size=3,
    )


any_rows = row_specs([0.0, 0.001, -0.002, 0.01, 0.049, -0.06, 0.5], [0.3, 0.6, 0.8, 0.9, 1.0, 0.0],
                     [1.0, 0.9, 0.5, 0.05, -1.0])
agreeing_rows = row_specs([0.0, 0.001, -0.001, 0.002, 0.01, -0.02], [0.6, 0.7, 0.8, 0.9, 1.0], [1.0, 0.95, 0.9, 0.5])


def check_shortcut(specs: list[tuple[Any, ...]], base: float, tol: float, previous: dict[str, float] | None) -> None:
    rows = []
    for source, (offset, trust, freshness, cap, volume, rank, symbol, name, extra) in zip(KNOWN, specs, strict=False):
        price = base * (1 + offset) if offset else base
        quote = q(source, "bitcoin", price, symbol=symbol, name=name, market_cap=cap, volume_24h=volume, rank=rank,
                  change_24h=extra, total_supply=extra)
        rows.append((source, quote, trust, trust * freshness if freshness > 0 else -1.0, price))
    ids = ("bitcoin", "bitcoin", "bitcoin", None)
    if len(rows) == 3:
        shortcut = reconcile_module._snapshot3(rows, *ids, NOW, tol)
    else:
        shortcut = reconcile_module._snapshot2(rows, *ids, NOW, tol, previous)
    general = reconcile_module._snapshot_general(rows, *ids, NOW, tol, previous)
    if shortcut is not None:
        assert general is not None
        assert repr(shortcut) == repr(general)


@settings(max_examples=300, deadline=None)
@given(specs=any_rows, base=st.sampled_from([1.0, 100.0, 3e-7, 5]), tol=st.sampled_from([0.05, 0.0, 0.01]),
       previous=st.one_of(st.none(), st.just({"bitcoin": 100.0})))
def test_consensus_shortcuts_match_the_general_rules(specs: list[tuple[Any, ...]], base: float, tol: float,
                                                     previous: dict[str, float] | None) -> None:
    check_shortcut(specs, base, tol, previous)


@settings(max_examples=300, deadline=None)
@given(specs=agreeing_rows, base=st.sampled_from([1.0, 100.0, 3e-7, 5]), tol=st.sampled_from([0.05, 0.3]))
def test_consensus_shortcuts_match_the_general_rules_when_sources_agree(specs: list[tuple[Any, ...]], base: float,
                                                                        tol: float) -> None:
    check_shortcut(specs, base, tol, None)
