"""No secret reaches a terminal or a log at start-up: the dev stack's table, the consumer's and
the bridge's start-up output (also when the broker refuses their SASL credentials)."""

from __future__ import annotations

import asyncio
import signal
import sys

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from producer_tools.devstack.embedded import free_port
from tests.processes import ROOT, settings_env
from tests.servers import StackSettings

# Made-up secrets that must never show (S105: they are the point of the test).
DB_PASSWORD = "db-pw-5e1d0c"  # noqa: S105
SASL_PASSWORD = "sasl-pw-9a8b7c"  # noqa: S105
TOKEN = "bridge-token-4f4f4f"  # noqa: S105
SECRETS = (DB_PASSWORD, SASL_PASSWORD, TOKEN)


def with_secrets(settings: StackSettings, **overrides: object) -> StackSettings:
    """The same servers, reached with credentials (the test server trusts any password)."""
    url = make_url(settings.database_url).set(password=DB_PASSWORD)
    port = free_port()
    values: dict[str, object] = {
        "database_url": url.render_as_string(hide_password=False),
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "ucs",
        "kafka_sasl_password": SecretStr(SASL_PASSWORD),
        "bridge_auth_tokens": SecretStr(TOKEN),
        "bridge_port": port,
        "base_uri": f"http://127.0.0.1:{port}/genesys/1/cs",
    }
    return settings.with_(**values | overrides)


async def run_for(argv: list[str], env: dict[str, str], until: str, timeout_s: float) -> str:
    """Run a process until its output shows `until` (or the timeout), SIGINT it, its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *argv,
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    output = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            while until.encode() not in output and (line := await process.stdout.readline()):
                output += line
    except TimeoutError:
        pass
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(30):
            output += await process.stdout.read()
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return output.decode(errors="replace")


def assert_no_secret(output: str) -> None:
    for secret in SECRETS:
        assert secret not in output, f"{secret!r} printed:\n{output}"


async def test_the_dev_stack_prints_its_table_without_any_password_or_token(
    settings: StackSettings,
) -> None:
    configured = with_secrets(settings, kafka_security_protocol="PLAINTEXT")
    env = settings_env(configured)
    output = await run_for(["-m", "producer_tools", "dev"], env, "authentication on", 60)
    assert "ucs-tasks dev" in output, output  # the table was printed
    assert "***" in output  # the database URL, its password masked
    assert "authentication on" in output  # the bridge started with the tokens
    assert_no_secret(output)


async def test_refused_sasl_credentials_are_reported_without_the_password(
    settings: StackSettings,
) -> None:
    # The embedded broker speaks no SASL: both processes log failures while they retry.
    configured = with_secrets(settings, kafka_security_protocol="SASL_PLAINTEXT")
    env = settings_env(configured)
    consumer, bridge = await asyncio.gather(
        run_for(["-m", "consumer"], env, "not ready, retrying in 0.4", 30),
        run_for(["-m", "producer_tools", "bridge"], env, "Uvicorn running", 30),
    )
    assert "not ready" in consumer, consumer
    assert "cannot connect" in bridge, bridge
    assert_no_secret(consumer + bridge)
