"""`ucs-tasks export`: dump a topic range as JSON lines that `produce` replays faithfully.

Every line is one structured CloudEvent (`schemas.wire.record_to_structured`) with its original
identity, type, attributes (`taskid`, `extension`, `tenantid`, `groupid`, ...) and data; Kafka
headers a CloudEvent cannot carry are kept in its `kafkaheaders` attribute (a JSON string of
`[name, value]` pairs), which `produce` turns back into headers. Exporting the task events log
(the created-events topic) writes the request behind each record: the start behind a
task-created reply, the end behind a task-completed one, the extension update behind a
task-extension-updated one, each under its original identity and with the task's tenant.
Records that are neither requests nor records of the task events log are reported and skipped.

Exit codes: 0 all written, 1 some records skipped, 2 usage or I/O error, 3 broker unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from dataclasses import dataclass, field
from typing import BinaryIO

import orjson

from producer_tools.tools._events import InvalidInputError
from producer_tools.tools._log import export_event
from producer_tools.tools._progress import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Reporter,
    Summary,
    ToolError,
    run_summarised,
)
from producer_tools.tools._ranges import RangeSpec, open_range, position_of, read_ranges
from producer_tools.tools.settings import ToolsConfig

STDOUT = "-"


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What to export, and where to."""

    range: RangeSpec = field(default_factory=RangeSpec)
    """The topic range (default topic: the requests topic)."""
    output: str = STDOUT
    """A file path, or `-` for stdout."""


def _open_output(path: str) -> BinaryIO:
    if path == STDOUT:
        return sys.stdout.buffer
    try:
        return open(path, "wb")
    except OSError as exc:
        raise ToolError(f"cannot write {path}: {exc.strerror}", EXIT_USAGE) from exc


async def export(
    settings: ToolsConfig,
    options: ExportOptions,
    reporter: Reporter | None = None,
    stopping: asyncio.Event | None = None,
) -> Summary:
    """Write the range as JSON lines (see the module docstring); returns the summary."""
    reporter = reporter or Reporter(json_mode=True)
    summary = Summary("export")
    out: BinaryIO | None = None
    try:
        the_range = open_range(settings, options.range, settings.topics.requests)
        async with the_range as (reader, ranges):
            out = _open_output(options.output)
            summary.counts["topic"] = ranges[0].partition.topic if ranges else ""
            summary.counts["output"] = options.output
            total = sum(r.size for r in ranges)
            with reporter.track("exporting", total) as bar:
                async for chunk in read_ranges(reader, ranges, stopping):
                    lines = []
                    for record in chunk:
                        summary.read += 1
                        try:
                            event = export_event(record.value, record.headers)
                        except InvalidInputError as exc:
                            summary.skip(position_of(record), str(exc))
                            continue
                        lines.append(orjson.dumps(event))
                    if lines:
                        out.write(b"\n".join(lines) + b"\n")
                    summary.sent += len(lines)
                    bar.advance(len(chunk), f"written {summary.sent:,}")
            out.flush()
            if stopping is not None and stopping.is_set():
                summary.fail("interrupted", EXIT_INTERRUPTED)
    except ToolError as exc:
        summary.fail(str(exc), exc.exit_code)
    except OSError as exc:
        summary.fail(f"cannot write {options.output}: {exc}", EXIT_USAGE)
    finally:
        if out is not None and out is not sys.stdout.buffer:
            with contextlib.suppress(OSError):
                out.close()
    return summary


def run(settings: ToolsConfig, options: ExportOptions, reporter: Reporter) -> int:
    """The command: export, print the summary, return the exit code."""
    return run_summarised(functools.partial(export, settings, options, reporter), reporter)
