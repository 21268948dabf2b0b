"""Secrets in settings: Kafka SASL/TLS options reach every client, and no secret shows in a repr."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from consumer.readside import DatabaseSettings
from tests.servers import StackSettings

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "sasl-pw-7f3c1b9e"  # noqa: S105 - a made-up secret that must never show
DB_PASSWORD = "db-pw-5e2d8a41"  # noqa: S105 - the same, for the database URL
TOKENS = "bridge-token-1a2b,bridge-key-3c4d"
KAFKA_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
NOT_CONFIGURED = {
    # The embedded broker's own readiness probe: a loopback tansu, plaintext by construction.
    ("producer_tools/devstack/embedded.py", "_metadata_ok"),
}


def sasl_ssl_settings() -> StackSettings:
    certifi = pytest.importorskip("certifi")  # a real CA bundle (httpx, a dev dependency, needs it)
    return StackSettings.of(
        kafka_bootstrap_servers="kafka-1:9093,kafka-2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="ucs-tasks",
        kafka_sasl_password=SecretStr(PASSWORD),
        kafka_ssl_cafile=certifi.where(),
        bridge_auth_tokens=SecretStr(TOKENS),
        database_url=f"postgresql+asyncpg://ucs_app:{DB_PASSWORD}@db:5432/ucs_tasks",
    )


def test_sasl_ssl_settings_reach_the_kafka_client_options() -> None:
    options = sasl_ssl_settings().kafka.client_options()
    assert options["bootstrap_servers"] == "kafka-1:9093,kafka-2:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "ucs-tasks"
    assert options["sasl_plain_password"] == PASSWORD
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_plaintext_settings_give_no_sasl_or_ssl_options() -> None:
    options = StackSettings().kafka.client_options()
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_no_secret_shows_in_the_repr_str_or_dump_of_settings() -> None:
    settings = sasl_ssl_settings()
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
        repr(settings.kafka.sasl_password),
        repr(settings.bridge.auth_tokens),
        repr(settings.database),
        settings.database.display_url,
    ]
    for text in shown:
        assert PASSWORD not in text
        assert DB_PASSWORD not in text
        for token in TOKENS.split(","):
            assert token not in text
    assert "**********" in repr(settings)


def test_the_bridge_auth_tokens_come_from_the_environment_as_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UCS_BRIDGE_AUTH_TOKENS", TOKENS)
    settings = StackSettings()
    assert settings.bridge.auth_tokens.get_secret_value() == TOKENS
    assert TOKENS not in repr(settings)
    monkeypatch.delenv("UCS_BRIDGE_AUTH_TOKENS")
    assert StackSettings().bridge.auth_tokens.get_secret_value() == ""  # off by default


@pytest.mark.parametrize(
    "url",
    [
        "postgres://ucs:pw@db:5432/tasks",
        "postgresql://ucs:pw@db:5432/tasks",
        "postgresql+asyncpg://ucs:pw@db:5432/tasks",
    ],
)
def test_postgres_and_postgresql_urls_are_accepted_and_use_asyncpg(url: str) -> None:
    assert DatabaseSettings(url=url).dsn == "postgresql+asyncpg://ucs:pw@db:5432/tasks"


def test_a_database_url_that_is_not_postgresql_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consumer.settings import ConsumerConfig
    from schemas.settings import SettingsError, load

    monkeypatch.setenv("UCS_DATABASE_URL", "mysql://root@db/tasks")
    with pytest.raises(SettingsError, match=r"^UCS_DATABASE_URL: must be a PostgreSQL URL"):
        load(ConsumerConfig)


def test_a_heartbeat_not_below_the_session_timeout_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consumer.settings import ConsumerConfig
    from schemas.settings import SettingsError, load

    monkeypatch.setenv("UCS_CONSUMER_SESSION_TIMEOUT_MS", "3000")
    monkeypatch.setenv("UCS_CONSUMER_HEARTBEAT_INTERVAL_MS", "3000")
    monkeypatch.setenv("UCS_RETRY_BACKOFF_INITIAL_MS", "20000")
    with pytest.raises(SettingsError) as caught:
        load(ConsumerConfig)
    message = str(caught.value)
    assert "\n" not in message
    assert "UCS_CONSUMER_HEARTBEAT_INTERVAL_MS (3000) must be below" in message
    assert "UCS_RETRY_BACKOFF_INITIAL_MS (20000) must not be above" in message


def _options_names(function: ast.AST) -> set[str]:
    """Names bound to `<x>.client_options()` (KafkaSettings) inside a function."""
    return {
        target.id
        for node in ast.walk(function)
        if isinstance(node, ast.Assign) and _is_options_call(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _is_options_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "client_options"
    )


def _forwarded(tree: ast.AST) -> dict[str, set[str]]:
    """Function name -> its parameters that some caller in the module passes the options to."""
    functions = {
        node.name: [a.arg for a in node.args.args if a.arg != "self"]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    forwarded: dict[str, set[str]] = {}
    for caller in ast.walk(tree):
        if not isinstance(caller, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        names = _options_names(caller)
        for call in ast.walk(caller):
            if not isinstance(call, ast.Call):
                continue
            callee = call.func
            name = callee.attr if isinstance(callee, ast.Attribute) else None
            name = callee.id if isinstance(callee, ast.Name) else name
            for index, arg in enumerate(call.args):
                if name in functions and isinstance(arg, ast.Name) and arg.id in names:
                    forwarded.setdefault(name, set()).add(functions[name][index])
    return forwarded


def _client_calls() -> list[tuple[str, str, ast.Call, set[str]]]:
    found = []
    for package in ("consumer", "producer_tools"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            forwarded = _forwarded(tree)
            for function in ast.walk(tree):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                names = _options_names(function) | forwarded.get(function.name, set())
                for node in ast.walk(function):
                    if not isinstance(node, ast.Call):
                        continue
                    callee = node.func
                    name = callee.attr if isinstance(callee, ast.Attribute) else None
                    name = callee.id if isinstance(callee, ast.Name) else name
                    if name in KAFKA_CLIENTS:
                        relative = str(path.relative_to(ROOT))
                        found.append((relative, function.name, node, names))
    return found


def test_every_kafka_client_is_built_from_the_settings_connection_options() -> None:
    calls = _client_calls()
    assert len(calls) >= 8  # the consumer's two, the bridge's three, the tools', the dev stack's
    unconfigured = []
    for path, function, call, names in calls:
        if (path, function) in NOT_CONFIGURED:
            continue
        spread = [k.value for k in call.keywords if k.arg is None]
        configured = any(
            _is_options_call(value) or (isinstance(value, ast.Name) and value.id in names)
            for value in spread
        )
        direct = {k.arg for k in call.keywords} & {"bootstrap_servers", "security_protocol"}
        if not configured or direct:
            unconfigured.append(f"{path}:{call.lineno} in {function}()")
    assert not unconfigured, (
        f"Kafka clients not built from KafkaSettings.client_options(): {unconfigured}"
    )


def test_the_default_location_base_follows_the_bridges_host_and_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from schemas.settings import ContractSettings

    monkeypatch.delenv("UCS_BASE_URI", raising=False)
    monkeypatch.setenv("UCS_BRIDGE_PORT", "18080")
    assert ContractSettings().base_uri == "http://127.0.0.1:18080/genesys/1/cs"
    monkeypatch.setenv("UCS_BRIDGE_HOST", "0.0.0.0")  # noqa: S104 - a setting, not a bind
    assert (
        ContractSettings().location(5, 7) == "http://127.0.0.1:18080/genesys/1/cs/service/5/tasks/7"
    )
    monkeypatch.setenv("UCS_BASE_URI", "https://tasks.example.com/genesys/1/cs/")
    assert ContractSettings().base_uri == "https://tasks.example.com/genesys/1/cs"
