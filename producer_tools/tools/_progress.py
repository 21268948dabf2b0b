"""How the tools report a run: a progress bar on a terminal, a final summary, an exit code.

Human mode (the report stream is a terminal and `--json` is off): a rich progress bar with counts,
rate and ETA while the run goes, then a summary table. Machine mode (`--json`, or output
redirected): nothing while the run goes, then the summary as one JSON object on one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from producer_tools.tools.settings import ToolsConfig

EXIT_OK: Final = 0
"""Everything read was sent (or written)."""
EXIT_SKIPPED: Final = 1
"""The run finished, but some lines or records were invalid and skipped."""
EXIT_USAGE: Final = 2
"""Bad options, unreadable input or output, missing topic, or a non-empty database (rebuild)."""
EXIT_BROKER: Final = 3
"""The broker could not be reached or refused the records."""
EXIT_DATABASE: Final = 4
"""The database could not be reached or refused the rows (rebuild)."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (SIGINT) before the end."""

MAX_LISTED: Final = 1000
"""At most this many invalid or duplicate entries are listed in a summary (all are counted)."""
_HUMAN_LISTED = 20


class ToolError(Exception):
    """A run that cannot go on: the message is for a person, `exit_code` for the shell."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Problem:
    """One skipped line or record: where it is (`file:line` or `topic:partition:offset`), why."""

    where: str
    reason: str


@dataclass
class Summary:
    """What a run did; rendered as a table or as one JSON object."""

    tool: str
    dry_run: bool = False
    read: int = 0
    """Lines or records read (blank lines not counted)."""
    sent: int = 0
    """Records acknowledged by the broker, lines written (export), or rows restored (rebuild)."""
    would_send: int = 0
    """Valid records that a dry run would have sent."""
    invalid: list[Problem] = field(default_factory=list)
    invalid_count: int = 0
    duplicates: list[Problem] = field(default_factory=list)
    duplicate_count: int = 0
    counts: dict[str, int | str] = field(default_factory=dict)
    """Tool-specific figures (topic, conflicts, next task id, ...)."""
    error: str | None = None
    exit_code: int | None = None
    """Set when the run stopped early (error or interrupt)."""
    started: float = field(default_factory=time.monotonic)
    elapsed_s: float = 0.0

    def skip(self, where: str, reason: str) -> None:
        """Record an invalid line or record (the run goes on)."""
        self.invalid_count += 1
        if len(self.invalid) < MAX_LISTED:
            self.invalid.append(Problem(where, reason))

    def duplicate(self, where: str, first: str) -> None:
        """Record a line or record whose event identity was already seen at `first`."""
        self.duplicate_count += 1
        if len(self.duplicates) < MAX_LISTED:
            self.duplicates.append(Problem(where, f"same event identity as {first}"))

    def fail(self, error: str, exit_code: int) -> None:
        """Record why the run stopped early."""
        self.error = error
        self.exit_code = exit_code

    def finish(self) -> int:
        """Stop the clock; the process exit code (see the EXIT_* constants)."""
        self.elapsed_s = time.monotonic() - self.started
        if self.exit_code is None:
            self.exit_code = EXIT_SKIPPED if self.invalid_count else EXIT_OK
        return self.exit_code

    def rate(self) -> float:
        """Records per second over the run."""
        done = self.would_send if self.dry_run else self.sent
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """The machine-readable summary."""
        return {
            "tool": self.tool,
            "dry_run": self.dry_run,
            "read": self.read,
            "sent": self.sent,
            "would_send": self.would_send,
            "invalid_count": self.invalid_count,
            "invalid": [{"where": p.where, "reason": p.reason} for p in self.invalid],
            "duplicate_count": self.duplicate_count,
            "duplicates": [{"where": p.where, "reason": p.reason} for p in self.duplicates],
            **self.counts,
            "elapsed_s": round(self.elapsed_s, 3),
            "rate_per_s": round(self.rate(), 1),
            "error": self.error,
            "exit_code": self.exit_code,
        }


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class Tracker:
    """A live progress bar (or nothing, in machine mode): `advance()` as records are handled."""

    def __init__(self, progress: Progress | None, task_id: Any) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, count: int, status: str = "") -> None:
        """Count `count` more records handled; `status` is shown beside the bar."""
        if self._progress is not None:
            self._progress.update(self._task_id, advance=count, status=status)


class Reporter:
    """Chooses human or machine output once, then renders progress and the summary."""

    def __init__(self, *, json_mode: bool = False, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(highlight=False)
        self.human = not json_mode and self.console.is_terminal

    @classmethod
    def on_stderr(cls, *, json_mode: bool = False) -> Reporter:
        """A reporter on stderr, for tools whose stdout carries data."""
        return cls(json_mode=json_mode, console=Console(stderr=True, highlight=False))

    @contextlib.contextmanager
    def track(self, description: str, total: int | None) -> Iterator[Tracker]:
        """A progress bar for the duration of the block (human mode only)."""
        if not self.human:
            yield Tracker(None, None)
            return
        progress = Progress(
            SpinnerColumn(),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            refresh_per_second=8,
        )
        with progress:
            task_id = progress.add_task(description, total=total, status="")
            yield Tracker(progress, task_id)

    def note(self, message: str) -> None:
        """A remark for a person (human mode only)."""
        if self.human:
            self.console.print(message)

    def summary(self, summary: Summary) -> int:
        """Print the summary; returns the exit code."""
        code = summary.finish()
        if not self.human:
            self.console.file.write(orjson.dumps(summary.as_json()).decode() + "\n")
            self.console.file.flush()
            return code
        title = f"ucs-tasks {summary.tool}" + (" (dry run)" if summary.dry_run else "")
        table = Table(title=title, show_header=False)
        table.add_column("figure")
        table.add_column("value", justify="right")
        figures: list[tuple[str, object]] = [("read", summary.read)]
        if summary.dry_run:
            figures.append(("would send", summary.would_send))
        else:
            figures.append(
                (
                    {"export": "written", "rebuild": "restored"}.get(summary.tool, "sent"),
                    summary.sent,
                )
            )
        figures += [("invalid (skipped)", summary.invalid_count)]
        figures += [("duplicates (skipped)", summary.duplicate_count)]
        figures += list(summary.counts.items())
        figures += [("elapsed", f"{summary.elapsed_s:.2f} s"), ("rate", f"{summary.rate():,.0f}/s")]
        for name, value in figures:
            shown = f"{value:,}" if isinstance(value, int) else str(value)
            table.add_row(name.replace("_", " "), shown)
        self.console.print(table)
        for title, problems, total in (
            ("invalid", summary.invalid, summary.invalid_count),
            ("duplicate", summary.duplicates, summary.duplicate_count),
        ):
            for problem in problems[:_HUMAN_LISTED]:
                self.console.print(f"[yellow]{title}[/] {problem.where}: {problem.reason}")
            if total > _HUMAN_LISTED:
                self.console.print(f"... and {total - _HUMAN_LISTED:,} more {title} (see --json)")
        if summary.error:
            self.console.print(f"[red]error:[/] {summary.error}")
        return code


def run_until_interrupted(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run `main(stopping)` in a new event loop: the first Ctrl-C sets `stopping` (the tool
    finishes cleanly and reports), a second one cancels it. Returns its exit code."""

    # aiokafka logs connection failures itself; the tools report them once, in their summary.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        task = asyncio.ensure_future(main(stopping))

        def on_sigint() -> None:
            if stopping.is_set():
                task.cancel()
            stopping.set()

        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            return await task
        except asyncio.CancelledError:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)

    return asyncio.run(runner())


def run_summarised(tool: Callable[[asyncio.Event], Awaitable[Summary]], reporter: Reporter) -> int:
    """A tool's command: run `tool(stopping)` until it ends or is interrupted (see
    `run_until_interrupted`), print its summary and return the exit code."""

    async def main(stopping: asyncio.Event) -> int:
        return reporter.summary(await tool(stopping))

    return run_until_interrupted(main)


class RunOptions(Protocol):
    """What every tool that can run dry has among its options."""

    @property
    def dry_run(self) -> bool:
        """Read and check, count what would be done, do nothing."""
        ...


OptionsT = TypeVar("OptionsT", bound=RunOptions)


@dataclass
class ToolRun(Generic[OptionsT]):
    """One run of a tool (`tool` names it in its summary): its settings and options, the
    reporter it talks through, the event that stops it early (Ctrl-C), its summary. A tool's
    run adds the state it keeps as fields of its own."""

    tool: ClassVar[str]

    settings: ToolsConfig
    options: OptionsT
    reporter: Reporter
    stopping: asyncio.Event
    summary: Summary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = Summary(self.tool, dry_run=self.options.dry_run)

    async def run(self) -> Summary:
        """Do the work; the summary says what was done (and why the run stopped early)."""
        raise NotImplementedError

    @classmethod
    async def summarise(
        cls,
        settings: ToolsConfig,
        options: OptionsT,
        reporter: Reporter | None = None,
        stopping: asyncio.Event | None = None,
        **state: Any,
    ) -> Summary:
        """One run (with the run's own `state`, by field name): its summary, or the summary of
        why it could not start (ToolError: its options cannot be used). Without a reporter it
        reports in machine mode; without `stopping` nothing stops it early."""
        reporter = reporter or Reporter(json_mode=True)
        try:
            one_run = cls(settings, options, reporter, stopping or asyncio.Event(), **state)
        except ToolError as exc:
            summary = Summary(cls.tool, dry_run=options.dry_run)
            summary.fail(str(exc), exc.exit_code)
            return summary
        return await one_run.run()
