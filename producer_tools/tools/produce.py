"""`ucs-tasks produce FILE...`: publish requests from JSON-lines files (`-` is stdin).

Each line is a structured CloudEvent of any request type (as `export` writes them) or a plain
line that says what it asks for: `{"service_id": ..., "event": {...}}` (start a task),
`{"service_id": ..., "task_id": ..., "end": {...}}` (complete it) or `{"service_id": ...,
"task_id": ..., "extension": "Name", "value": ...}` (replace an extension's value), each with
an optional `tenant` and `group` (see `producer_tools.tools._events`). Plain lines get a
deterministic identity from their content (see `plain_identity`), so producing the same file
twice never changes anything twice; `--new-ids` gives every line a fresh random id instead.

Invalid lines are reported with their line numbers and skipped; the run goes on. Exit codes:
0 all sent, 1 some lines invalid (skipped), 2 usage or I/O error, 3 broker unreachable or
refusing, 130 interrupted. Blank lines are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
import stat
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

from producer_tools.tools._events import InvalidInputError, LinePreparer, Prepared
from producer_tools.tools._progress import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Reporter,
    Summary,
    ToolError,
    ToolRun,
    Tracker,
    run_summarised,
)
from producer_tools.tools._ranges import topic_named
from producer_tools.tools._sending import BatchSender, RateLimiter, open_sender
from producer_tools.tools.settings import ToolsConfig

STDIN = "-"
_CHUNK_BYTES = 1 << 20
_REPORT_EVERY = 512  # lines between progress updates
_DRY_RUN_SHOWN = 10


@dataclass(frozen=True, slots=True)
class ProduceOptions:
    """What `produce` does besides reading its inputs."""

    dry_run: bool = False
    """Validate and report only; publish nothing."""
    rate: float | None = None
    """At most this many events per second (None: as fast as the broker takes them)."""
    new_ids: bool = False
    """Fresh random event ids instead of the deterministic ones (every run makes new tasks)."""
    drop_reply_to: bool = False
    """Remove `replyto` from structured events (their requester is gone)."""
    topic: str | None = None
    """Where to publish: a topic name or `requests` (the default: the settings' requests topic)."""


@dataclass
class _Input:
    name: str
    handle: BinaryIO
    regular: bool


def _open_inputs(paths: Sequence[str]) -> list[_Input]:
    inputs: list[_Input] = []
    try:
        for path in paths:
            if path == STDIN:
                inputs.append(_Input("<stdin>", sys.stdin.buffer, regular=False))
                continue
            handle = open(path, "rb")  # noqa: SIM115 - _close() closes it
            inputs.append(_Input(path, handle, stat.S_ISREG(os.fstat(handle.fileno()).st_mode)))
    except OSError as exc:
        for opened in inputs:
            _close(opened)
        raise ToolError(f"cannot read {exc.filename}: {exc.strerror}", EXIT_USAGE) from exc
    return inputs


def _close(source: _Input) -> None:
    if source.handle is not sys.stdin.buffer:
        source.handle.close()


def _count_lines(inputs: Sequence[_Input]) -> int | None:
    """Lines in all inputs, for the ETA (None when one is a pipe or a terminal)."""
    if not all(i.regular for i in inputs):
        return None
    total = 0
    for source in inputs:
        ends_with_newline = True
        while chunk := source.handle.read(_CHUNK_BYTES):
            total += chunk.count(b"\n")
            ends_with_newline = chunk.endswith(b"\n")
        total += 0 if ends_with_newline else 1
        source.handle.seek(0)
    return total


async def _chunks(source: _Input) -> AsyncIterator[list[bytes]]:
    """The lines of an input, in chunks; pipes are read in a thread (they may be slow)."""
    rest = b""
    while True:
        if source.regular:
            chunk = source.handle.read(_CHUNK_BYTES)
        else:
            reader = source.handle.read1 if isinstance(source.handle, io.BufferedReader) else None
            read = reader or source.handle.read
            chunk = await asyncio.to_thread(read, 1 << 16)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        if lines:
            yield lines
    if rest:
        yield [rest]


@dataclass
class _Run(ToolRun[ProduceOptions]):
    """One produce run: validates lines, dedupes identities, sends, counts."""

    tool: ClassVar[str] = "produce"

    paths: Sequence[str] = ()
    """The inputs, in order (`-` is stdin)."""
    sender: BatchSender | None = None
    first_seen: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)
    """Where each identity was first read: (input name, line number)."""
    services: set[int] = field(default_factory=set)
    topic: str = field(init=False)
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.topic = topic_named(self.settings, self.options.topic, self.settings.topics.requests)
        self.summary.counts["topic"] = self.topic
        self.limiter = RateLimiter(self.options.rate)

    def _status(self) -> str:
        s = self.summary
        done = f"would send {s.would_send:,}" if s.dry_run else f"acked {self._acked():,}"
        return f"{done}  invalid {s.invalid_count:,}  duplicates {s.duplicate_count:,}"

    def _acked(self) -> int:
        return self.sender.acked if self.sender is not None else 0

    def _admit(self, prepared: Prepared, name: str, number: int) -> bool:
        """Whether to send this record, line `number` of input `name`: not a duplicate (unless
        --new-ids), not a dry run (which counts and shows it instead)."""
        if not self.options.new_ids:
            identity = (prepared.source, prepared.id)  # prepared.identity, without a call
            first = self.first_seen.get(identity)
            if first is not None:
                self.summary.duplicate(f"{name}:{number}", f"{first[0]}:{first[1]}")
                return False
            self.first_seen[identity] = (name, number)
        if self.sender is None:
            self.summary.would_send += 1
            self.services.add(prepared.service_id)
            if self.summary.would_send <= _DRY_RUN_SHOWN:
                self.reporter.note(
                    f"would send {name}:{number}: service {prepared.service_id}, "
                    f"source {prepared.source}, id {prepared.id}"
                )
            return False
        return True

    async def _one_input(self, source: _Input, bar: Tracker) -> None:
        preparer = LinePreparer(
            self.settings.contract.limits,
            new_ids=self.options.new_ids,
            drop_reply_to=self.options.drop_reply_to,
            tenancy=self.settings.contract.tenancy,
        )
        number = unreported = 0
        report_every = 1 if self.options.rate else _REPORT_EVERY
        sender, limiter, stopping = self.sender, self.limiter, self.stopping
        limited = limiter.limited
        async for lines in _chunks(source):
            # `stopping` is set by a signal handler, which runs only while this awaits: looked
            # at after each await (here, and below a paced or a full batch), not every line.
            if stopping.is_set():
                return
            for raw in lines:
                number += 1
                unreported += 1
                if unreported >= report_every:
                    bar.advance(unreported, self._status())
                    unreported = 0
                line = raw.strip()
                if not line:
                    continue
                self.summary.read += 1
                try:
                    prepared = preparer.prepare(line)
                except InvalidInputError as exc:
                    self.summary.skip(f"{source.name}:{number}", str(exc))
                    continue
                if not self._admit(prepared, source.name, number) or sender is None:
                    continue
                # No coroutine per line: only a rate, or a full batch, is awaited.
                if limited:
                    await limiter.pace(sender.submit_all, stopping)
                full = sender.append(prepared.key, prepared.value, prepared.headers)
                if full is not None:
                    await sender.submit(full)
                if (limited or full is not None) and stopping.is_set():
                    return
            if not source.regular and sender is not None:
                await sender.submit_all()  # the next read may wait on a slow writer
        bar.advance(unreported, self._status())

    async def run(self) -> Summary:
        inputs: list[_Input] = []
        producer = None
        try:
            inputs = _open_inputs(self.paths)
            total = _count_lines(inputs)
            if not self.options.dry_run:
                producer, self.sender = await open_sender(self.settings, self.topic)
            verb = "validating" if self.options.dry_run else "producing"
            with self.reporter.track(verb, total) as bar:
                for source in inputs:
                    await self._one_input(source, bar)
                    if self.stopping.is_set():
                        self.summary.fail("interrupted", EXIT_INTERRUPTED)
                        break
                if self.sender is not None:
                    await self.sender.flush()
                bar.advance(0, self._status())
        except ToolError as exc:
            self.summary.fail(str(exc), exc.exit_code)
        finally:
            for source in inputs:
                _close(source)
            self.summary.sent = self._acked()
            if producer is not None:
                with contextlib.suppress(Exception):  # already failing or done: stop quietly
                    await producer.stop()
        if self.options.dry_run:
            self.summary.counts["services"] = len(self.services)
        return self.summary


async def produce(
    settings: ToolsConfig,
    paths: Sequence[str],
    options: ProduceOptions = ProduceOptions(),
    reporter: Reporter | None = None,
    stopping: asyncio.Event | None = None,
) -> Summary:
    """Publish the events of `paths` (see the module docstring); returns the summary."""
    return await _Run.summarise(settings, options, reporter, stopping, paths=paths)


def run(
    settings: ToolsConfig, paths: Sequence[str], options: ProduceOptions, reporter: Reporter
) -> int:
    """The command: produce, print the summary, return the exit code."""
    return run_summarised(functools.partial(produce, settings, paths, options, reporter), reporter)
