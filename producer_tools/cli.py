"""The `ucs-tasks` command: thin wrappers; each command's work lives in its own module."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel

from producer_tools.tools.settings import ToolsConfig
from schemas.settings import SettingsError, load

app = typer.Typer(
    name="ucs-tasks",
    help="Genesys UCS 'Start Task' as an event-driven Kafka service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
schemas_app = typer.Typer(help="Generated JSON Schema files.", no_args_is_help=True)
topics_app = typer.Typer(
    help="The service topics, with the settings the guarantees need (docs/guarantees.md).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")
app.add_typer(schemas_app, name="schemas")
app.add_typer(topics_app, name="topics")


def _version(show: bool) -> None:
    if show:
        typer.echo(f"ucs-tasks {metadata.version('ucs-tasks')}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Genesys UCS Context Services tasks as an event-driven Kafka service.

    Exit codes of every command: 0 done; 1 rejected (send) or some input skipped; 2 bad usage or
    settings; 3 the Kafka broker cannot be reached; 4 the database cannot be reached; 5 no
    reply in time (send); 130 interrupted.
    """


EXIT_SETTINGS = 2
"""Exit code of a command whose settings cannot be used (as for other usage errors)."""
EXIT_DATABASE = 4
"""Exit code of a command whose database cannot be reached or refused (as the tools')."""

Config = TypeVar("Config", bound=BaseModel)


def _settings(root: type[Config]) -> Config:
    """The command's settings from `UCS_*`, or one line naming each bad variable and exit 2."""
    try:
        return load(root)
    except SettingsError as exc:
        typer.echo(f"ucs-tasks: invalid settings: {exc}", err=True)
        raise typer.Exit(EXIT_SETTINGS) from None


def _tools() -> ToolsConfig:
    return _settings(ToolsConfig)


@app.command()
def dev(
    bridge: Annotated[bool, typer.Option(help="Also run the HTTP bridge.")] = True,
) -> None:
    """Run the whole system on embedded defaults: broker, PostgreSQL, consumer (and bridge)."""
    from producer_tools.devstack import stack as devstack  # noqa: PLC0415 - each command imports what it uses
    from producer_tools.devstack.settings import DevConfig  # noqa: PLC0415

    raise typer.Exit(devstack.run_dev(_settings(DevConfig), with_bridge=bridge))


@app.command()
def consume() -> None:
    """Run the consumer (the same as `python -m consumer`)."""
    os.execv(sys.executable, [sys.executable, "-m", "consumer"])  # noqa: S606 - our own module


@app.command()
def send(
    service_id: Annotated[str, typer.Argument(help="The 64-bit service id.")],
    body: Annotated[
        str | None,
        typer.Argument(
            help="The body: a Task Start Event, a Task End Event (--end) or the extension's "
            "new value (--extension); read from stdin when omitted."
        ),
    ] = None,
    *,
    end: Annotated[
        str | None,
        typer.Option("--end", metavar="TASK_ID", help="Complete this task (Complete Task)."),
    ] = None,
    extension: Annotated[
        str | None,
        typer.Option(
            "--extension",
            metavar="NAME",
            help="Replace the value of this extension of --task (Update Task Extension).",
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", metavar="TASK_ID", help="The task whose extension to update."),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="The caller's tenant (ContactCenterId; multi-tenant mode)."),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="The caller's group (GroupId; multi-tenant mode).")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="Event id (idempotency key); random if omitted.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 10.0,
) -> None:
    """Publish one request (start a task, or --end one, or update an --extension of one) and
    print the reply as JSON.

    Exit 0 answered (task.created, task.completed, task.extension.updated), 1 rejected
    (task.rejected), 2 bad usage, 3 the broker cannot be reached, 5 no reply in time.
    """
    from producer_tools.tools import send as send_tool  # noqa: PLC0415

    data = body if body is not None else sys.stdin.read()
    args = send_tool.SendArgs(service_id, data.encode(), end, extension, task, tenant, group)
    raise typer.Exit(send_tool.run(_tools(), args, event_id, timeout))


@app.command()
def health(
    url: Annotated[
        list[str] | None,
        typer.Option(
            help="A /healthz URL to ask (default: the consumer's health port, then the "
            "bridge's, on 127.0.0.1)."
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 2.0,
) -> None:
    """Exit 0 when a local process answers its /healthz with 200 (the image's HEALTHCHECK)."""
    from producer_tools import healthcheck as tool  # noqa: PLC0415

    raise typer.Exit(tool.run(url or tool.default_urls(), timeout))


@app.command()
def bridge() -> None:
    """Run the HTTP bridge (UCS_BRIDGE_HOST:UCS_BRIDGE_PORT, default 127.0.0.1:8080)."""
    from producer_tools.bridge.app import serve  # noqa: PLC0415
    from producer_tools.bridge.settings import BridgeConfig  # noqa: PLC0415

    serve(_settings(BridgeConfig))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply the migrations to UCS_DATABASE_URL (exit 4 when the database cannot be reached
    or refuses a step)."""
    from consumer.admin import StorageUnavailableError, upgrade_database  # noqa: PLC0415

    database = _tools().database
    try:
        upgrade_database(database, revision)
    except ValueError as exc:
        typer.echo(f"ucs-tasks db upgrade: {exc}", err=True)
        raise typer.Exit(EXIT_SETTINGS) from None
    except StorageUnavailableError as exc:
        # The URL as shown everywhere: its password masked.
        typer.echo(f"ucs-tasks db upgrade: {database.display_url}: {exc}", err=True)
        raise typer.Exit(EXIT_DATABASE) from None


TopicsJsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object, for scripts.")]


@topics_app.command("create")
def topics_create(json: TopicsJsonOpt = False) -> None:
    """Create the missing topics, then check them all.

    Existing topics are never altered. Exit 0: every topic keeps what the guarantees need; 1: a
    topic breaks a promise (the fix is printed); 3: the broker cannot be reached or refused.
    """
    from producer_tools.tools import topics as tool  # noqa: PLC0415

    raise typer.Exit(tool.run(_tools(), "create", json, sys.stdout))


@topics_app.command("check")
def topics_check(json: TopicsJsonOpt = False) -> None:
    """Check the topics against the settings; alter nothing.

    Exit 0: every topic keeps what the guarantees need (warnings may be listed); 1: a topic is
    missing or breaks a promise (the fix is printed); 3: the broker cannot be reached.
    """
    from producer_tools.tools import topics as tool  # noqa: PLC0415

    raise typer.Exit(tool.run(_tools(), "check", json, sys.stdout))


@schemas_app.command("export")
def schemas_export(
    check: Annotated[bool, typer.Option(help="Fail if the files are stale.")] = False,
) -> None:
    """Regenerate schemas/jsonschema/*.json from the pydantic models."""
    from schemas import export  # noqa: PLC0415

    raise typer.Exit(export.main(check=check))


# --- event-log tools (produce, replay, export, tail, rebuild): see docs/replay.md -------------
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output, no progress bar.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Validate and report; send nothing.")]
RateOpt = Annotated[float | None, typer.Option(help="At most this many events per second.")]
DropReplyOpt = Annotated[bool, typer.Option(help="Remove replyto (the requester is gone).")]
TopicOpt = Annotated[str, typer.Option(help="Source topic: requests, created, or a topic name.")]
PartitionOpt = Annotated[
    list[int] | None, typer.Option("--partition", "-p", help="Only these partitions.")
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="First offset, or ISO time (2026-01-31T12:00:00Z).")
]
ToOpt = Annotated[str | None, typer.Option("--to", help="End offset or ISO time (excluded).")]
TargetOpt = Annotated[str | None, typer.Option(help="Publish here (default: requests).")]


@app.command()
def produce(
    files: Annotated[list[str], typer.Argument(help="JSON-lines files; - for stdin.")],
    *,
    json: JsonOpt = False,
    dry_run: DryRunOpt = False,
    rate: RateOpt = None,
    new_ids: Annotated[bool, typer.Option(help="Random ids: every run makes new tasks.")] = False,
    drop_reply_to: DropReplyOpt = False,
    target: TargetOpt = None,
) -> None:
    """Publish starts, ends and extension updates from JSON lines (exit 0 sent, 1 invalid lines
    skipped)."""
    from producer_tools.tools import produce as tool  # noqa: PLC0415
    from producer_tools.tools._progress import Reporter  # noqa: PLC0415

    options = tool.ProduceOptions(dry_run, rate, new_ids, drop_reply_to, target)
    raise typer.Exit(tool.run(_tools(), files, options, Reporter(json_mode=json)))


@app.command()
def replay(
    *,
    topic: TopicOpt = "requests",
    partition: PartitionOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    target: TargetOpt = None,
    json: JsonOpt = False,
    dry_run: DryRunOpt = False,
    rate: RateOpt = None,
    drop_reply_to: DropReplyOpt = False,
) -> None:
    """Re-drive a range of the requests or created topic, keeping event identities."""
    from producer_tools.tools import replay as tool  # noqa: PLC0415
    from producer_tools.tools._progress import Reporter  # noqa: PLC0415
    from producer_tools.tools._ranges import RangeSpec  # noqa: PLC0415

    spec = RangeSpec(topic, tuple(partition or ()), start, end)
    options = tool.ReplayOptions(spec, target, dry_run, rate, drop_reply_to)
    raise typer.Exit(tool.run(_tools(), options, Reporter(json_mode=json)))


@app.command()
def export(
    *,
    topic: TopicOpt = "requests",
    partition: PartitionOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    output: Annotated[str, typer.Option("--output", "-o", help="File; - for stdout.")] = "-",
    json: JsonOpt = False,
) -> None:
    """Dump a topic range as structured CloudEvents, one JSON line each (for produce)."""
    from producer_tools.tools import export as tool  # noqa: PLC0415
    from producer_tools.tools._progress import Reporter  # noqa: PLC0415
    from producer_tools.tools._ranges import RangeSpec  # noqa: PLC0415

    # When stdout carries the data, progress and summary go to stderr.
    reporter = Reporter.on_stderr(json_mode=json) if output == "-" else Reporter(json_mode=json)
    options = tool.ExportOptions(RangeSpec(topic, tuple(partition or ()), start, end), output)
    raise typer.Exit(tool.run(_tools(), options, reporter))


@app.command()
def tail(
    *,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    from_beginning: Annotated[bool, typer.Option(help="Start at the oldest reply.")] = False,
    dead_letters: Annotated[bool, typer.Option(help="Also follow the dead letters.")] = False,
    count: Annotated[int | None, typer.Option(help="Stop after this many records.")] = None,
) -> None:
    """Follow the replies: created, completed, extension updated, rejected (Ctrl-C stops)."""
    from rich.console import Console  # noqa: PLC0415

    from producer_tools.tools import tail as tool  # noqa: PLC0415

    out = sys.stdout if json else Console(highlight=False, soft_wrap=True)
    options = tool.TailOptions(json, from_beginning, dead_letters, count)
    raise typer.Exit(tool.run(_tools(), options, out))


@app.command()
def rebuild(
    *,
    force: Annotated[bool, typer.Option(help="Also into a database that holds tasks.")] = False,
    topic: Annotated[
        str | None, typer.Option(help="The task events log (default: the created-events topic).")
    ] = None,
    allow_partial_log: Annotated[
        bool,
        typer.Option(
            help="Also from a log that no longer starts at its beginning (tasks may be missing)."
        ),
    ] = False,
    json: JsonOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Restore every task's whole state from the task events log, with the same task ids."""
    from producer_tools.tools import rebuild as tool  # noqa: PLC0415
    from producer_tools.tools._progress import Reporter  # noqa: PLC0415

    options = tool.RebuildOptions(topic, force, dry_run, allow_partial_log)
    raise typer.Exit(tool.run(_tools(), options, Reporter(json_mode=json)))


def main() -> None:
    """Console-script entry point."""
    app()
