"""`ucs-tasks send`: publish one request and print the reply it gets, as JSON.

A request starts a task (the body is a Task Start Event), completes one (`--end TASK_ID`, the
body a Task End Event) or replaces the value of one of its extensions (`--extension NAME
--task TASK_ID`, the body the new value), in binary mode, with the caller's tenant and group
(`--tenant`, `--group`) when given. The reply is the task-created, task-completed,
task-extension-updated or task-rejected reply that carries the request's correlation id.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from producer_tools.tools._progress import ToolError
from producer_tools.tools.settings import ToolsConfig
from schemas import wire
from schemas.errors import EventValidationError
from schemas.ids import parse_service_id, parse_task_id
from schemas.requests import TaskRequest
from schemas.validation import EventKind

EXIT_ANSWERED, EXIT_REJECTED, EXIT_USAGE, EXIT_BROKER, EXIT_TIMEOUT = 0, 1, 2, 3, 5


def source_uri() -> str:
    """The CloudEvents source of events this host's tools publish."""
    return f"urn:ucs-tasks:cli:{socket.gethostname()}"


async def _reply_listener(settings: ToolsConfig) -> AIOKafkaConsumer:
    """A group-less consumer positioned at the end of both reply topics."""
    listener = AIOKafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    await listener.start()
    partitions = [
        TopicPartition(topic, p)
        for topic in (settings.topics.created, settings.topics.rejected)
        for p in (listener.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        await listener.stop()
        raise ToolError(
            f"the reply topics {settings.topics.created!r} and {settings.topics.rejected!r} do "
            "not exist (create the topics: `ucs-tasks topics create`)",
            EXIT_USAGE,
        )
    listener.assign(partitions)
    await listener.seek_to_end(*partitions)
    for tp in partitions:  # resolve positions now, before the request can be answered
        await listener.position(tp)
    return listener


async def send_one(
    settings: ToolsConfig, request: TaskRequest, event_id: str, timeout_s: float
) -> dict[str, Any] | None:
    """Publish one binary-mode request and wait for the reply that carries its correlation
    id; None when none came within `timeout_s`."""
    correlation_id = uuid.uuid4().hex
    listener = await _reply_listener(settings)
    producer = AIOKafkaProducer(**settings.kafka.client_options(), enable_idempotence=False)
    try:
        await producer.start()
        key, value, headers = request.record(
            event_id=event_id, source=source_uri(), correlation_id=correlation_id
        )
        await producer.send_and_wait(
            settings.topics.requests, value=value, key=key, headers=headers
        )
        async with asyncio.timeout(timeout_s):
            while True:
                batch = await listener.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        if wire.reply_correlation(record.headers) == correlation_id:
                            reply: dict[str, Any] = orjson.loads(record.value)
                            return reply
    except TimeoutError:
        return None
    finally:
        await producer.stop()
        await listener.stop()


@dataclass(frozen=True, slots=True)
class SendArgs:
    """The command line of `send`, as given (checked by `request_of`)."""

    service_id: str
    body: bytes
    end: str | None = None
    """`--end TASK_ID`: complete this task."""
    extension: str | None = None
    """`--extension NAME`: replace this extension's value (with `--task`)."""
    task: str | None = None
    """`--task TASK_ID`: the task whose extension `--extension` replaces."""
    tenant: str | None = None
    group: str | None = None


def request_of(args: SendArgs) -> TaskRequest:
    """The request the command line asks for, or ToolError (exit 2) saying what is wrong.

    Ids are read as the consumer reads them; a bad one is refused here with the message the
    consumer would answer, since the request would be refused anyway.
    """
    if args.end is not None and (args.extension is not None or args.task is not None):
        raise ToolError(
            "--end TASK_ID completes a task; --extension NAME --task TASK_ID updates one: "
            "give one of them"
        )
    if (args.extension is None) != (args.task is None):
        raise ToolError("--extension NAME and --task TASK_ID go together")
    kind = EventKind.START
    if args.end is not None:
        kind = EventKind.END
    elif args.extension is not None:
        kind = EventKind.EXTENSION
    try:
        service_id = parse_service_id(args.service_id)
        task_id = None if kind is EventKind.START else parse_task_id(args.end or args.task)
    except EventValidationError as exc:
        raise ToolError(exc.message) from None
    return TaskRequest(
        kind, service_id, args.body, task_id, args.extension, args.tenant, args.group
    )


_ANSWERS = ("task.created", "task.completed", "task.extension.updated")


def run(settings: ToolsConfig, args: SendArgs, event_id: str | None, timeout: float) -> int:
    """The command: prints the reply JSON on stdout; exit 0 answered (created, completed,
    updated), 1 rejected, 2 usage, 3 the broker cannot be reached, 5 no reply in time."""
    try:
        request = request_of(args)
    except ToolError as exc:
        print(f"ucs-tasks send: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        reply = asyncio.run(send_one(settings, request, event_id or uuid.uuid4().hex, timeout))
    except ToolError as exc:
        print(f"ucs-tasks send: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KafkaError, OSError) as exc:
        where = settings.kafka.bootstrap_servers
        print(f"ucs-tasks send: cannot reach the Kafka broker at {where}: {exc}", file=sys.stderr)
        return EXIT_BROKER
    if reply is None:
        print(
            f"ucs-tasks send: no reply within {timeout:g}s (is the consumer running?)",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    sys.stdout.write(orjson.dumps(reply, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_ANSWERED if reply.get("kind") in _ANSWERS else EXIT_REJECTED
