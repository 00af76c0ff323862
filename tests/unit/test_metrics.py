"""Prometheus metrics: what one cycle and one stored batch add, and what never becomes a label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from cryptoviz import metrics
from cryptoviz.store.runs import RunReport, SourceReport

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
SECRET = "cmc-key-0123456789abcdef"


def value(name: str, **labels: str) -> float:
    got = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if got is None else got


def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def run_report(seconds: float = 2.5) -> RunReport:
    run = RunReport(started_at=T0, finished_at=T0 + timedelta(seconds=seconds), status="partial")
    run.sources["m-coingecko"] = SourceReport("m-coingecko", fetched=250, rejected=3, used=240,
                                              reasons={"price_not_positive": 2, "stale": 1})
    run.sources["m-coinmarketcap"] = SourceReport(
        "m-coinmarketcap", fetched=0, rejected=0,
        error=f"m-coinmarketcap: HTTP 401 invalid key {SECRET} at https://pro-api.example/?key={SECRET}")
    return run


def test_observe_run_counts_per_source_reason_status_and_duration() -> None:
    before_ok = value("cryptoviz_cycles_total", status="partial")
    before_count = value("cryptoviz_cycle_duration_seconds_count")
    before_sum = value("cryptoviz_cycle_duration_seconds_sum")
    before_fetched = value("cryptoviz_quotes_fetched_total", source="m-coingecko")
    before_stale = value("cryptoviz_quotes_rejected_total", source="m-coingecko", reason="stale")

    metrics.observe_run(run_report(2.5))

    assert value("cryptoviz_quotes_fetched_total", source="m-coingecko") - before_fetched == 250
    assert value("cryptoviz_quotes_rejected_total", source="m-coingecko", reason="stale") - before_stale == 1
    assert value("cryptoviz_quotes_rejected_total", source="m-coingecko", reason="price_not_positive") >= 2
    assert value("cryptoviz_cycles_total", status="partial") - before_ok == 1
    assert value("cryptoviz_cycle_duration_seconds_count") - before_count == 1
    assert abs(value("cryptoviz_cycle_duration_seconds_sum") - before_sum - 2.5) < 1e-9
    assert value("cryptoviz_cycle_duration_seconds_bucket", le="5.0") >= 1
    assert value("cryptoviz_source_up", source="m-coingecko") == 1
    assert value("cryptoviz_source_up", source="m-coinmarketcap") == 0


def test_rejections_without_reason_are_counted_as_unknown() -> None:
    run = RunReport(started_at=T0, finished_at=T0)
    run.sources["m-nameless"] = SourceReport("m-nameless", fetched=5, rejected=4, reasons={"stale": 1})
    metrics.observe_run(run)
    assert value("cryptoviz_quotes_rejected_total", source="m-nameless", reason="stale") == 1
    assert value("cryptoviz_quotes_rejected_total", source="m-nameless", reason="unknown") == 3


def test_a_source_that_recovers_is_up_again() -> None:
    run = run_report()
    metrics.observe_run(run)
    assert value("cryptoviz_source_up", source="m-coinmarketcap") == 0
    run.sources["m-coinmarketcap"].error = None
    metrics.observe_run(run)
    assert value("cryptoviz_source_up", source="m-coinmarketcap") == 1


def test_no_secret_or_message_reaches_the_metrics() -> None:
    metrics.observe_run(run_report())
    text = metrics.render().decode()
    assert SECRET not in text
    assert "invalid key" not in text
    assert "pro-api" not in text
    labels = {v for (_name, lbls) in samples() for _k, v in lbls}
    assert all(len(v) <= 64 for v in labels)


def test_label_values_are_sanitised() -> None:
    run = RunReport(started_at=T0, finished_at=T0)
    run.sources["Weird Source\n{x=\"1\"}"] = SourceReport("weird", fetched=1, rejected=1,
                                                          reasons={"Bad Reason/\"quoted\"": 1})
    metrics.observe_run(run)
    assert value("cryptoviz_quotes_fetched_total", source="weird_source__x__1__") == 1
    assert value("cryptoviz_quotes_rejected_total", source="weird_source__x__1__", reason="bad_reason__quoted_") == 1


def test_observe_stored_counts_snapshots() -> None:
    before = value("cryptoviz_snapshots_stored_total")
    metrics.observe_stored(120)
    metrics.observe_stored(0)
    metrics.observe_stored(-5)  # never decrements
    assert value("cryptoviz_snapshots_stored_total") - before == 120


def test_gauges_and_database_state() -> None:
    metrics.set_bus_lag(42)
    metrics.set_dlq_messages(3)
    assert value("cryptoviz_bus_lag") == 42
    assert value("cryptoviz_dlq_messages") == 3
    metrics.set_database_state(up=True, rows={"currency_data_history": 1234}, last_observation=T0,
                               last_run=T0 + timedelta(seconds=5), sources_up={"m-db-source": False},
                               dlq_messages=7)
    assert value("cryptoviz_database_up") == 1
    assert value("cryptoviz_database_rows", table="currency_data_history") == 1234
    assert value("cryptoviz_last_observation_timestamp_seconds") == T0.timestamp()
    assert value("cryptoviz_last_run_timestamp_seconds") == T0.timestamp() + 5
    assert value("cryptoviz_source_up", source="m-db-source") == 0
    assert value("cryptoviz_dlq_messages") == 7
    metrics.set_database_state(up=False)
    assert value("cryptoviz_database_up") == 0
    assert value("cryptoviz_database_rows", table="currency_data_history") == 1234  # kept until the next read


def test_every_documented_metric_is_exposed() -> None:
    metrics.observe_run(run_report())
    text = metrics.render().decode()
    for name in ("cryptoviz_quotes_fetched_total", "cryptoviz_quotes_rejected_total",
                 "cryptoviz_cycle_duration_seconds_bucket", "cryptoviz_cycles_total",
                 "cryptoviz_snapshots_stored_total", "cryptoviz_bus_lag", "cryptoviz_dlq_messages",
                 "cryptoviz_source_up"):
        assert f"\n{name}" in text, name
    assert metrics.CONTENT_TYPE_LATEST.startswith("text/plain")
