"""The database password never shows in what the tools print: a failing `db upgrade` or
`rebuild` names the server by its masked URL, and the settings' repr hides it.

Run as real processes, so a traceback or a log line would be caught too."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson
import pytest
from sqlalchemy.engine import make_url

from producer_tools.devstack.embedded import free_port
from producer_tools.tools.settings import ToolsConfig
from tests.integration.test_tools import env_of
from tests.processes import ROOT
from tests.servers import StackSettings

PASSWORD = "db-pw-7f3e21"  # noqa: S105 - made up: the point is that it never shows


def with_password(settings: StackSettings, *, port: int | None = None, database: str) -> str:
    url = make_url(settings.database_url).set(password=PASSWORD, database=database)
    if port is not None:
        url = url.set(port=port)
    return url.render_as_string(hide_password=False)


async def run_tool(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "producer_tools",
        *args,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@pytest.fixture(params=["closed port", "missing database"])
def failing_url(request: pytest.FixtureRequest, settings: StackSettings) -> str:
    """A database URL holding a password that cannot be used: nobody listens on its port, or
    the server has no such database."""
    if request.param == "closed port":
        return with_password(settings, port=free_port(), database="ucs_tasks")
    return with_password(settings, database="no_such_database_3c1d")


async def test_a_failing_migration_names_the_server_without_its_password(
    settings: StackSettings, failing_url: str
) -> None:
    env = env_of(settings) | {"UCS_DATABASE_URL": failing_url}
    code, output = await run_tool(env, "db", "upgrade")
    assert code == 4, output
    assert PASSWORD not in output
    shown = make_url(failing_url).render_as_string(hide_password=True)
    assert output.startswith(f"ucs-tasks db upgrade: {shown}: database error"), output
    assert "***" in shown
    assert "Traceback" not in output


async def test_a_failing_rebuild_names_the_server_without_its_password(
    settings: StackSettings, failing_url: str
) -> None:
    env = env_of(settings) | {"UCS_DATABASE_URL": failing_url}
    code, output = await run_tool(env, "rebuild", "--json")
    assert code == 4, output
    assert PASSWORD not in output
    summary = orjson.loads(output.strip().splitlines()[-1])
    assert summary["error"].startswith(make_url(failing_url).render_as_string(hide_password=True))


def test_the_tools_settings_never_show_the_database_password(settings: StackSettings) -> None:
    config = ToolsConfig.model_validate(
        {"database": {"url": with_password(settings, database="ucs_tasks")}}
    )
    for shown in (repr(config), str(config), repr(config.database), config.model_dump_json()):
        assert PASSWORD not in shown
    assert PASSWORD not in config.database.display_url
    assert PASSWORD in config.database.dsn  # the engine gets it, and only the engine
