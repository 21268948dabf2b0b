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


def test_one_image_is_built_once_and_run_in_every_role() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    ours = ["topics", "migrate", "consumer", "bridge"]
    assert [name for name, s in services.items() if "build" in s] == ["topics"]
    assert {services[name]["image"] for name in ours} == {"ucs-tasks:local"}
    assert services["topics"]["command"] == ["topics", "create"]
    assert services["migrate"]["command"] == ["db", "upgrade"]


def test_kafka_keeps_its_data_and_listens_for_the_host_too() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kafka = compose["services"]["kafka"]
    data = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert any(v.endswith(f":{data}") for v in kafka["volumes"])
    assert "kafkadata" in compose["volumes"]
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    host_port = advertised.split("HOST://127.0.0.1:")[1]
    assert f"127.0.0.1:{host_port}:{host_port}" in kafka["ports"]


def test_the_consumer_and_the_bridge_have_healthchecks_on_their_own_ports() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    consumer_port = services["consumer"]["environment"]["UCS_CONSUMER_HEALTH_PORT"]
    bridge_port = services["bridge"]["environment"]["UCS_BRIDGE_PORT"]
    for name, port in (("consumer", consumer_port), ("bridge", bridge_port)):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "ucs-tasks", "health"]
        assert test[-1] == f"http://127.0.0.1:{port}/healthz"
