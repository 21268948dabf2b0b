"""The `ucs-tasks` command for operators: a version, one line (never a traceback) and a
documented exit code when a server cannot be reached or a setting is wrong, a health probe."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from producer_tools.cli import app
from producer_tools.devstack.embedded import free_port

runner = CliRunner()


def test_the_version_is_printed() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("ucs-tasks ")


def test_send_with_the_broker_down_says_so_in_one_line_and_exits_3() -> None:
    where = f"127.0.0.1:{free_port()}"
    result = runner.invoke(
        app, ["send", "21456878", "{}"], env={"UCS_KAFKA_BOOTSTRAP_SERVERS": where}
    )
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"cannot reach the Kafka broker at {where}" in lines[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [("UCS_TOPIC_PARTITIONS", "zero"), ("UCS_DATABASE_URL", "mysql://db/tasks")],
)
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(
    variable: str, value: str
) -> None:
    result = runner.invoke(app, ["send", "21456878", "{}"], env={variable: value})
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"ucs-tasks: invalid settings: {variable}: ")


@pytest.fixture
def healthz() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()


async def test_health_exits_0_when_a_process_answers_and_1_when_none_does(healthz: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}/healthz"
    ok = await asyncio.to_thread(runner.invoke, app, ["health", "--url", closed, "--url", healthz])
    assert ok.exit_code == 0, ok.output
    down = await asyncio.to_thread(runner.invoke, app, ["health", "--url", closed])
    assert down.exit_code == 1
    assert closed in down.stderr
