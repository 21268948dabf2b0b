"""`ucs-tasks tail`: follow the replies and optionally dead letters.

The replies are those of the task events log (task created, completed, extension updated) and
the rejections. One line per record, as they arrive: human-readable by default (time, kind,
service, task id, extension, tenant, event identity, error message), or one JSON object per
line with `--json`. Starts at the end of the topics unless `--from-beginning`; runs until
Ctrl-C (exit 0) or `--count` records.
Exit codes: 0 stopped, 2 usage error (a topic is missing), 3 broker unreachable.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.markup import escape

from producer_tools.tools._progress import EXIT_OK, ToolError, run_until_interrupted
from producer_tools.tools._ranges import close_reader, end_offsets, open_reader, partitions_of
from producer_tools.tools.settings import ToolsConfig
from schemas import wire

_POLL_MS = 200
_KIND_STYLE = {
    "created": "green",
    "completed": "blue",
    "extension-updated": "cyan",
    "rejected": "yellow",
    "dead-letter": "red",
}
_KINDS = {
    wire.TYPE_TASK_CREATED: "created",
    wire.TYPE_TASK_COMPLETED: "completed",
    wire.TYPE_TASK_EXTENSION_UPDATED: "extension-updated",
    wire.TYPE_TASK_REJECTED: "rejected",
}


@dataclass(frozen=True, slots=True)
class TailOptions:
    """What to follow and how to print it."""

    json: bool = False
    from_beginning: bool = False
    dead_letters: bool = False
    count: int | None = None
    """Stop after this many records (None: until Ctrl-C)."""


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, raw in headers:
        if key.lower() == name:
            return raw.decode("utf-8", "replace")
    return None


def _time(record: Any) -> str:
    stamp = _header(record.headers, "ce_time")
    if stamp is not None:
        return stamp
    when = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(raw: bytes | None) -> str | dict[str, str] | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def describe(record: Any, dead_letter_topic: str) -> dict[str, Any]:
    """One reply or dead letter as a JSON-ready dict (what `--json` prints)."""
    where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    if record.topic == dead_letter_topic:
        return {
            "time": _time(record),
            "kind": "dead-letter",
            **where,
            "service_id": _header(record.headers, "ce_serviceid") or _text(record.key),
            "event": {
                "source": _header(record.headers, "ce_source"),
                "id": _header(record.headers, "ce_id"),
            },
            "error": _header(record.headers, wire.DLQ_ERROR),
            "origin": {
                "topic": _header(record.headers, wire.DLQ_TOPIC),
                "partition": _header(record.headers, wire.DLQ_PARTITION),
                "offset": _header(record.headers, wire.DLQ_OFFSET),
            },
            "value": _text(record.value),
        }
    try:
        payload = orjson.loads(record.value or b"")
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        payload = {"unreadable": _text(record.value)}
    kind = wire.reply_type(record.headers) or ""
    task = payload.get("task")
    return {
        "time": _time(record),
        "kind": _KINDS.get(kind, kind or "unknown"),
        **where,
        "service_id": payload.get("service_id"),
        "task_id": payload.get("task_id"),
        "extension": payload.get("extension"),
        "tenant": task.get("tenant") if isinstance(task, dict) else None,
        "event": payload.get("event"),
        "error": (payload.get("error") or {}).get("message"),
        "reply": payload,
    }


def human_line(item: dict[str, Any]) -> str:
    """One line for a person: time, kind, service, task id, the extension and tenant when
    there are some, event identity, error (markup)."""
    event = item.get("event") or {}
    task = item.get("task_id")
    parts = [
        item["time"],
        f"[{_KIND_STYLE.get(item['kind'], 'white')}]{item['kind']:<17}[/]",
        f"service {escape(str(item.get('service_id') or '-'))}",
        f"task {task if task is not None else '-'}",
    ]
    parts.extend(
        f"{name} {escape(str(item[name]))}"
        for name in ("extension", "tenant")
        if item.get(name) is not None
    )
    parts.append(
        f"event {escape(str(event.get('source') or '-'))} {escape(str(event.get('id') or '-'))}"
    )
    if item.get("error"):
        parts.append(f"[{_KIND_STYLE.get(item['kind'], 'white')}]{escape(item['error'])}[/]")
    return "  ".join(parts)


class _Printer:
    """Human lines on a rich Console, or JSON lines on a text stream."""

    def __init__(self, out: Console | TextIO) -> None:
        self._out = out

    def emit(self, item: dict[str, Any]) -> None:
        if isinstance(self._out, Console):
            self._out.print(human_line(item), soft_wrap=True, highlight=False)
        else:
            self._out.write(orjson.dumps(item).decode() + "\n")

    def flush(self) -> None:
        if not isinstance(self._out, Console):
            self._out.flush()


async def _follow(reader: AIOKafkaConsumer, partitions: list[Any], from_beginning: bool) -> None:
    ends = None if from_beginning else await end_offsets(reader, partitions)
    reader.assign(partitions)
    if ends is None:
        await reader.seek_to_beginning(*partitions)
    else:  # the checked end: some brokers' "latest" lands inside the last batch
        for tp in partitions:
            reader.seek(tp, ends[tp])
    for tp in partitions:  # fix the positions now: what arrives from here on is shown
        await reader.position(tp)


async def tail(
    settings: ToolsConfig,
    options: TailOptions,
    out: Console | TextIO,
    stopping: asyncio.Event | None = None,
) -> int:
    """Print replies as they arrive until `stopping` is set or `count` records; returns the
    number printed. `out` is a rich Console (human lines) or a text stream (JSON lines)."""
    topics = [settings.topics.created, settings.topics.rejected]
    if options.dead_letters:
        topics.append(settings.topics.dead_letter)
    printer = _Printer(out)
    reader = await open_reader(settings)
    printed = 0
    try:
        partitions = [tp for topic in topics for tp in await partitions_of(reader, topic)]
        await _follow(reader, partitions, options.from_beginning)
        while not (stopping is not None and stopping.is_set()):
            batch = await reader.getmany(timeout_ms=_POLL_MS)
            for record in (r for records in batch.values() for r in records):
                printer.emit(describe(record, settings.topics.dead_letter))
                printed += 1
                if options.count is not None and printed >= options.count:
                    return printed
            printer.flush()
    finally:
        printer.flush()
        await close_reader(reader)
    return printed


def run(settings: ToolsConfig, options: TailOptions, out: Console | TextIO) -> int:
    """The command: tail until Ctrl-C; returns the exit code."""

    async def main(stopping: asyncio.Event) -> int:
        try:
            await tail(settings, options, out, stopping)
        except ToolError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        return EXIT_OK

    return run_until_interrupted(main)
