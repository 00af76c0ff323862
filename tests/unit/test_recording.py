"""Recording and replay (cryptoviz.recording): what ``PageRecorder`` writes, ``read_recording`` gives back.

Round trips through real files: every body byte for byte, pages in their order (past the ninth), HTML next
to JSON, push frames with their own receive times (UTF-8 or not), and cycles grouped by their time.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cryptoviz.errors import CryptoVizError
from cryptoviz.recording import PageRecorder, file_name, read_frames, read_recording
from cryptoviz.sources.base import FRAME, RawPage

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=1)


def page(source: str, body: bytes, extension: str = "json", at: datetime = T0) -> RawPage:
    return RawPage(source, body, extension, at)


def frame(source: str, body: bytes, seconds: float) -> RawPage:
    return RawPage(source, body, FRAME, T0 + timedelta(seconds=seconds))


def test_pages_come_back_byte_for_byte_in_their_order_past_the_ninth(tmp_path: Path) -> None:
    recorder = PageRecorder(tmp_path)
    bodies = [f'{{"page": {n}, "data": ["\\u00e9", {n * 1.5}]}}'.encode() for n in range(1, 13)]
    for body in bodies:
        recorder(page("coingecko", body), T0)
    names = [p.name for p in recorder.files]
    assert names[:3] == ["2026-11-27T12-00-00Z.json", "2026-11-27T12-00-00Z-p2.json", "2026-11-27T12-00-00Z-p3.json"]
    assert names[-1] == "2026-11-27T12-00-00Z-p12.json"
    [(at, [outcome])] = read_recording(tmp_path)
    assert at == T0 and outcome.source == "coingecko" and not outcome.push
    assert [p.body for p in outcome.pages] == bodies  # -p10 after -p9, not after the first page
    assert all(p.extension == "json" and p.fetched_at == T0 for p in outcome.pages)


def test_html_pages_and_several_sources_share_one_cycle_and_cycles_keep_their_time(tmp_path: Path) -> None:
    recorder = PageRecorder(tmp_path)
    html = "<html><body><table><tr><td>Bitcoin</td><td>$91,234.50</td></tr></table>\u00a0</body></html>".encode()
    recorder(page("coinmarketcap-html", html, "html"), T0)
    recorder(page("coinmarketcap-html", html + b"<!-- 2 -->", "html"), T0)
    recorder(page("coinpaprika", b"[]"), T0)
    recorder(page("coinpaprika", b'[{"id": "btc-bitcoin"}]'), T1)
    cycles = read_recording(tmp_path)
    assert [at for at, _ in cycles] == [T0, T1]
    first = {o.source: o for o in cycles[0][1]}
    assert sorted(first) == ["coinmarketcap-html", "coinpaprika"]
    assert [(p.body, p.extension) for p in first["coinmarketcap-html"].pages] == [
        (html, "html"), (html + b"<!-- 2 -->", "html")]
    assert [p.body for p in first["coinpaprika"].pages] == [b"[]"]
    assert [(o.source, [p.body for p in o.pages]) for o in cycles[1][1]] == [
        ("coinpaprika", [b'[{"id": "btc-bitcoin"}]'])]


def test_push_frames_come_back_with_their_receive_times_text_or_not(tmp_path: Path) -> None:
    recorder = PageRecorder(tmp_path)
    sent = [frame("binance", b'{"stream": "!miniTicker@arr", "data": []}', 0.25),
            frame("binance", b'{"e": "24hrMiniTicker", "s": "\xe2\x82\xbfUSDT"}', 0.5),  # UTF-8 text
            frame("binance", b"\x00\xff\xfe binary \x80", 0.75),  # not UTF-8: kept as base64
            frame("binance", b"", 1.0)]
    for f in sent:
        recorder(f, T0)
    assert [p.name for p in recorder.files] == ["2026-11-27T12-00-00Z.jsonl"]  # one file a cycle, appended
    recorder(page("coingecko", b"[]"), T0)
    cycles = read_recording(tmp_path)
    [(at, outcomes)] = cycles
    pushed = {o.source: o for o in outcomes}["binance"]
    assert at == T0 and pushed.push and not {o.source: o for o in outcomes}["coingecko"].push
    assert [(p.body, p.fetched_at, p.extension) for p in pushed.pages] == [
        (f.body, f.fetched_at, FRAME) for f in sent]


def test_frames_received_out_of_order_are_replayed_in_time_order_and_a_broken_line_is_skipped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = PageRecorder(tmp_path)
    recorder(frame("kraken", b'{"late": 1}', 2.0), T0)
    recorder(frame("kraken", b'{"early": 1}', 1.0), T0)
    path = tmp_path / "kraken" / file_name(T0, 1, "jsonl")
    with path.open("ab") as out:
        out.write(b'{"received_at": "not a time", "frame": "x"}\n\n{"frame": "no time"}\n')
    naive = b'{"received_at": "2026-11-27T12:00:03", "frame": "naive"}\n'  # no offset: read as UTC
    with path.open("ab") as out:
        out.write(naive)
    with caplog.at_level(logging.WARNING):
        frames = read_frames(path, "kraken")
    assert [(f.body, f.fetched_at) for f in frames] == [
        (b'{"early": 1}', T0 + timedelta(seconds=1)), (b'{"late": 1}', T0 + timedelta(seconds=2)),
        (b"naive", T0 + timedelta(seconds=3))]
    assert caplog.text.count("is not a recorded frame") == 2


def test_unknown_folders_and_names_are_skipped_and_an_empty_recording_is_an_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "not-a-source").mkdir()
    (tmp_path / "not-a-source" / file_name(T0, 1, "json")).write_bytes(b"[]")
    (tmp_path / "coingecko").mkdir()
    (tmp_path / "coingecko" / "notes.txt").write_text("hello")
    with caplog.at_level(logging.WARNING), pytest.raises(CryptoVizError, match="no recorded files under"):
        read_recording(tmp_path)
    assert "not a known source" in caplog.text and "name is not" in caplog.text
    with pytest.raises(CryptoVizError, match="is not a directory"):
        read_recording(tmp_path / "missing")


def test_file_names_are_utc_whatever_the_zone_of_the_time() -> None:
    paris = datetime(2026, 11, 27, 13, 0, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=1)))
    assert file_name(paris, 1, "html") == "2026-11-27T13-00-00Z.html"
    assert file_name(paris, 3, "json") == "2026-11-27T13-00-00Z-p3.json"
