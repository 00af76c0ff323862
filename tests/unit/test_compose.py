"""The docker compose stack, checked statically (no Docker engine runs on the test machines)."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_stack_has_the_services_it_promises() -> None:
    assert {"kafka", "postgres", "grafana", "migrate", "collect", "consume"} <= set(SERVICES)
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert SERVICES["postgres"]["image"] == "postgres:16"
    assert SERVICES["grafana"]["image"].startswith("grafana/grafana-oss")


def test_infrastructure_has_healthchecks_and_apps_wait_for_them() -> None:
    for name in ("kafka", "postgres", "grafana"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert SERVICES["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("collect", "consume"):
        deps = SERVICES[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"  # migrations first
    assert SERVICES["consume"]["command"] == ["consume"]
    assert SERVICES["collect"]["command"] == ["collect"]


def test_apps_are_wired_to_kafka_and_postgres() -> None:
    for name in ("migrate", "collect", "consume"):
        env = SERVICES[name]["environment"]
        assert env["CRYPTOVIZ_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert "@postgres:5432/" in env["CRYPTOVIZ_DATABASE_URL"]
        assert SERVICES[name]["build"] == "."


def test_every_referenced_file_exists() -> None:
    assert (ROOT / "Dockerfile").is_file()
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), source


def test_credentials_come_from_env_and_env_example_names_them() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    variables = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = (ROOT / ".env.example").read_text()
    for var in variables:
        assert re.search(rf"^{var}=", example, re.M), f"{var} missing from .env.example"
    for line in example.splitlines():
        if "PASSWORD=" in line:
            assert line.endswith("="), f"no password value may be committed: {line}"
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), f"{name}.{key} must come from .env"


def test_image_runs_as_a_non_root_user_on_a_slim_base() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "python:3.11-slim" in dockerfile
    assert re.search(r"^USER cryptoviz$", dockerfile, re.M)


