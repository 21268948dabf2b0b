"""Apply Alembic migrations programmatically (`ucs-tasks db upgrade`, the dev stack, tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for our migrations folder and this database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database to `revision`; safe to call from inside a running event loop."""
    _run(command.upgrade, alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Migrate the database back to `revision` (tests, and an operator undoing a release)."""
    _run(command.downgrade, alembic_config(database_url), revision)


def _run(step: Callable[[Config, str], None], config: Config, revision: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        step(config, revision)
        return
    # env.py runs its own event loop: give it a thread of its own.
    errors: list[BaseException] = []

    def run() -> None:
        try:
            step(config, revision)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=run, name="alembic-migrate")
    worker.start()
    worker.join()
    if errors:
        raise errors[0]
