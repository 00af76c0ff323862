"""The Grafana provisioning and dashboards, checked statically (no Grafana runs on the test machines).

``tests/integration/test_grafana_panels.py`` runs every panel's SQL against PostgreSQL.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

GRAFANA = ROOT / "grafana"
DASHBOARD_DIR = GRAFANA / "dashboards"
DATASOURCES_YAML = GRAFANA / "provisioning" / "datasources" / "cryptoviz.yml"
PROVIDER_YAML = GRAFANA / "provisioning" / "dashboards" / "cryptoviz.yml"
DASHBOARD_FILES = ("market-overview.json", "coin-detail.json", "data-quality.json", "pipeline-health.json")
PG_TYPE = "grafana-postgresql-datasource"

# $name, ${name}, ${name:format}, [[name]]: Grafana's template variable syntaxes.
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]")


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARD_DIR / name).read_text(encoding="utf-8"))


DASHBOARDS = {name: load(name) for name in DASHBOARD_FILES}


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels nested in (collapsed) rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def query_panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in all_panels(board["panels"]) if p.get("type") != "row"]


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def grafana_volumes() -> dict[str, tuple[str, str]]:
    """Container path -> (host path, mode) of the grafana service's bind mounts."""
    mounts = {}
    for volume in compose()["services"]["grafana"].get("volumes", []):
        host, container, *mode = volume.split(":")
        mounts[container] = (host, mode[0] if mode else "rw")
    return mounts


def datasources() -> list[dict[str, Any]]:
    return yaml.safe_load(DATASOURCES_YAML.read_text(encoding="utf-8"))["datasources"]


def test_the_four_dashboards_exist_and_nothing_else() -> None:
    assert sorted(p.name for p in DASHBOARD_DIR.glob("*.json")) == sorted(DASHBOARD_FILES)


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_dashboard_is_a_provisionable_grafana_11_model(name: str) -> None:
    board = DASHBOARDS[name]
    assert board["id"] is None  # provisioned: Grafana assigns the id
    assert re.fullmatch(r"cryptoviz-[a-z-]+", board["uid"]) and len(board["uid"]) <= 40
    assert board["title"].startswith("CryptoViz / ")
    assert 39 <= board["schemaVersion"] < 45
    assert "cryptoviz" in board["tags"]
    assert query_panels(board), "a dashboard without panels"
    for panel in all_panels(board["panels"]):
        pos = panel["gridPos"]
        assert pos["w"] <= 24 and pos["x"] + pos["w"] <= 24 and pos["h"] >= 1, panel["title"]


def test_dashboard_uids_and_titles_are_unique() -> None:
    uids = Counter(b["uid"] for b in DASHBOARDS.values())
    titles = Counter(b["title"] for b in DASHBOARDS.values())
    assert max(uids.values()) == 1, uids
    assert max(titles.values()) == 1, titles


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_ids_are_unique_including_nested_panels(name: str) -> None:
    ids = Counter(p["id"] for p in all_panels(DASHBOARDS[name]["panels"]))
    assert all(isinstance(i, int) for i in ids)
    assert [i for i, n in ids.items() if n > 1] == []


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_panel_titles_are_unique(name: str) -> None:
    # tests/integration/test_grafana_panels.py names the expected columns by dashboard and panel title
    titles = Counter(p["title"] for p in query_panels(DASHBOARDS[name]))
    assert [t for t, n in titles.items() if n > 1] == []


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_panel_and_target_uses_a_provisioned_datasource(name: str) -> None:
    provisioned = {d["uid"]: d["type"] for d in datasources()}
    board = DASHBOARDS[name]
    refs = []
    for panel in query_panels(board):
        refs.append((panel["title"], panel["datasource"]))
        assert panel["targets"], f"{panel['title']}: no query"
        refs += [(f"{panel['title']}/{t['refId']}", t["datasource"]) for t in panel["targets"]]
    refs += [(f"${v['name']}", v["datasource"]) for v in board["templating"]["list"] if "datasource" in v]
    for where, ref in refs:
        assert ref["uid"] in provisioned, f"{name} {where}: unknown datasource uid {ref['uid']!r}"
        assert ref["type"] == provisioned[ref["uid"]], f"{name} {where}: datasource type mismatch"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_targets_are_raw_sql_in_table_or_time_series_format(name: str) -> None:
    for panel in query_panels(DASHBOARDS[name]):
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            where = f"{name} {panel['title']}/{target['refId']}"
            assert target["format"] in {"table", "time_series"}, where
            assert target["rawQuery"] is True and target["editorMode"] == "code", where
            assert target["rawSql"].lstrip().upper().startswith(("SELECT", "WITH")), where
            if target["format"] == "time_series":
                assert re.search(r'"time"|\$__timeGroupAlias\(|\$__time\(', target["rawSql"]), \
                    f"{where}: a time series needs a time column"
                assert re.search(r"ORDER BY (1|bucket)\b", target["rawSql"]), f"{where}: sort by time"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_time_series_never_draw_a_line_across_missing_time(name: str) -> None:
    # The queries end a stretch of data with a NULL row where data is missing; Grafana must not bridge it.
    for panel in query_panels(DASHBOARDS[name]):
        if panel["type"] in {"timeseries", "candlestick"}:
            custom = panel["fieldConfig"]["defaults"].get("custom", {})
            assert custom.get("spanNulls", False) is False, f"{name} {panel['title']}"
            assert custom.get("insertNulls", False) is False, f"{name} {panel['title']}"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_history_queries_choose_their_tier_in_sql(name: str) -> None:
    # A query over the candle tiers reads one of them, chosen from $__interval_ms and $__range_s in its tier
    # CTE; the integration test runs them (tests/integration/test_grafana_panels.py).
    tiered = 0
    for panel in query_panels(DASHBOARDS[name]):
        for target in panel["targets"]:
            sql = target["rawSql"]
            if len(set(re.findall(r"\bcandles_(5m|1h|1d)\b", sql))) < 3:
                continue
            tiered += 1
            where = f"{name} {panel['title']}/{target['refId']}"
            assert sql.startswith("WITH tier AS (") and "$__interval_ms" in sql and "$__range_s" in sql, where
            for tier in ("5m", "1h", "1d"):
                assert f"(SELECT name FROM tier) = '{tier}'" in sql, where
    assert tiered >= 1, f"{name}: no query over the candle tiers"


def sql_texts(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in query_panels(board):
        for target in panel["targets"]:
            yield f"{panel['title']}/{target['refId']}", target["rawSql"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            yield f"${variable['name']}", query if isinstance(query, str) else query["rawSql"]


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_every_variable_used_in_sql_is_defined(name: str) -> None:
    board = DASHBOARDS[name]
    defined = {v["name"] for v in board["templating"]["list"]}
    for where, text in sql_texts(board):
        for match in VARIABLE.finditer(text):
            variable = next(g for g in match.groups() if g)
            if variable.startswith("__"):  # Grafana macros ($__timeFilter...) and globals ($__interval...)
                continue
            assert variable in defined, f"{name} {where}: ${variable} is not defined in templating"


@pytest.mark.parametrize("name", DASHBOARD_FILES)
def test_macro_arguments_hold_no_parenthesis(name: str) -> None:
    # Grafana's macro pattern is \$(\w+)\(([^)]*)\): a ')' inside an argument would end the call early.
    for where, text in sql_texts(DASHBOARDS[name]):
        for call in re.finditer(r"\$__\w+\(", text):
            closing = text.index(")", call.end())
            assert "(" not in text[call.end():closing], f"{name} {where}: nested call in a macro argument"


def test_query_variables_have_a_valid_default() -> None:
    board = DASHBOARDS["coin-detail.json"]
    coin = next(v for v in board["templating"]["list"] if v["name"] == "coin")
    assert coin["type"] == "query" and coin["current"]["value"] == "bitcoin"
    assert "__value" in coin["query"] and "__text" in coin["query"]


def test_datasource_is_the_read_only_postgres_role() -> None:
    config = yaml.safe_load(DATASOURCES_YAML.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    (ds,) = config["datasources"]
    assert ds["type"] == PG_TYPE and ds["uid"] == "cryptoviz-pg"
    assert ds["url"] == "postgres:5432"  # the compose service
    assert ds["user"] == "cryptoviz_reader"
    assert ds["jsonData"]["database"] == "${POSTGRES_DB}"
    assert ds["jsonData"]["sslmode"] == "disable"
    assert ds["jsonData"]["timescaledb"] is False
    assert ds["jsonData"]["postgresVersion"] == 1500
    assert ds["secureJsonData"]["password"] == "${CRYPTOVIZ_READER_PASSWORD}"
    assert "password" not in ds and "password" not in ds["jsonData"]


def test_grafana_gets_the_variables_the_datasource_expands() -> None:
    expanded = set(re.findall(r"\$\{?(\w+)", DATASOURCES_YAML.read_text(encoding="utf-8")))
    assert expanded == {"POSTGRES_DB", "CRYPTOVIZ_READER_PASSWORD"}
    environment = compose()["services"]["grafana"]["environment"]
    assert expanded <= set(environment), expanded - set(environment)
    assert "GF_SECURITY_ADMIN_PASSWORD" in environment


def test_provider_reads_the_directory_compose_mounts() -> None:
    config = yaml.safe_load(PROVIDER_YAML.read_text(encoding="utf-8"))
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    mounts = grafana_volumes()
    path = provider["options"]["path"]
    assert path in mounts, f"{path} is not mounted into the grafana service"
    host, mode = mounts[path]
    assert (ROOT / host).resolve() == DASHBOARD_DIR.resolve()
    assert mode == "ro"


def test_provisioning_directory_is_mounted_where_grafana_reads_it() -> None:
    host, _mode = grafana_volumes()["/etc/grafana/provisioning"]
    assert (ROOT / host).resolve() == (GRAFANA / "provisioning").resolve()
    # Grafana reads <provisioning>/datasources and <provisioning>/dashboards
    assert DATASOURCES_YAML.parent.name == "datasources" and PROVIDER_YAML.parent.name == "dashboards"


def test_compose_mounts_exist_on_disk() -> None:
    for container, (host, _mode) in grafana_volumes().items():
        assert host.startswith("./"), f"{container}: bind mount expected"
        assert (ROOT / host).is_dir(), f"{host} (mounted at {container}) does not exist"


def test_provisioning_files_are_the_only_ones_in_their_directories() -> None:
    # Grafana would load any other YAML there too
    for directory in (DATASOURCES_YAML.parent, PROVIDER_YAML.parent):
        assert sorted(p.name for p in Path(directory).iterdir()) == ["cryptoviz.yml"]
