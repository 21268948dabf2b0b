"""docker-compose.yml stays consistent with the code (no Docker engine is needed to check it)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.servers import StackSettings

ROOT = Path(__file__).resolve().parents[2]


def test_the_compose_file_runs_kafka_postgres_migrations_consumer_and_bridge() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "postgres", "topics", "migrate", "consumer", "bridge"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["consumer"]["command"] == ["consume"]
    assert services["bridge"]["command"] == ["bridge"]


def test_every_ucs_variable_in_the_compose_file_is_a_real_setting() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = StackSettings.env_names()
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        unknown = {key for key in env if key.startswith("UCS_")} - known
        assert not unknown, f"{name}: unknown settings {unknown}"
