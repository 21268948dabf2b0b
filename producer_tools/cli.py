"""The `ucs-tasks` command: thin wrappers; each command's work lives in its own module."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from schemas.settings import Settings

app = typer.Typer(
    name="ucs-tasks",
    help="Genesys UCS 'Start Task' as an event-driven Kafka service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
schemas_app = typer.Typer(help="Generated JSON Schema files.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(schemas_app, name="schemas")


@app.command()
def dev(
    bridge: Annotated[bool, typer.Option(help="Also run the HTTP bridge.")] = True,
) -> None:
    """Run the whole system on embedded defaults: broker, PostgreSQL, consumer (and bridge)."""
    from producer_tools import devstack  # noqa: PLC0415 - each command imports what it uses

    raise typer.Exit(devstack.run_dev(Settings(), with_bridge=bridge))


@app.command()
def consume() -> None:
    """Run the consumer (the same as `python -m consumer`)."""
    os.execv(sys.executable, [sys.executable, "-m", "consumer"])  # noqa: S606 - our own module


@app.command()
def send(
    service_id: Annotated[str, typer.Argument(help="The 64-bit service id.")],
    body: Annotated[
        str | None, typer.Argument(help="Task Start Event JSON; read from stdin when omitted.")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="Event id (idempotency key); random if omitted.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 10.0,
) -> None:
    """Publish one task-start event and print the reply as JSON."""
    from producer_tools import send as send_tool  # noqa: PLC0415

    data = body if body is not None else sys.stdin.read()
    raise typer.Exit(send_tool.run(Settings(), service_id, data.encode(), event_id, timeout))


@app.command()
def bridge() -> None:
    """Run the HTTP bridge (UCS_BRIDGE_HOST:UCS_BRIDGE_PORT, default 127.0.0.1:8080)."""
    from producer_tools.bridge.app import serve  # noqa: PLC0415

    serve(Settings())


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the migrations to UCS_DATABASE_URL."""
    from consumer.db import migrate  # noqa: PLC0415

    migrate.upgrade(Settings().database_url, revision)


@schemas_app.command("export")
def schemas_export(
    check: Annotated[bool, typer.Option(help="Fail if the files are stale.")] = False,
) -> None:
    """Regenerate schemas/jsonschema/*.json from the pydantic models."""
    from schemas import export  # noqa: PLC0415

    raise typer.Exit(export.main(check=check))


def main() -> None:
    """Console-script entry point."""
    app()
