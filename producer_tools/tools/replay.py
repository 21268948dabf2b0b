"""`ucs-tasks replay`: re-drive requests already in Kafka into the requests topic.

The source is a range of the requests topic (records go out again unchanged, byte for byte:
starts, ends and extension updates alike) or of the task events log, the created-events topic
(each record becomes the request it answers, under the original identity: see
`producer_tools.tools._log.request_from_log`). Event identities are kept, so a replay is
idempotent: requests already applied are answered as before and change nothing, only missing
ones take effect. Identities met twice in the range are sent once.

Exit codes: 0 all sent, 1 some records skipped (invalid or not replayable), 2 usage error,
3 broker unreachable or refusing, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiokafka import AIOKafkaProducer

from producer_tools.tools._events import InvalidInputError
from producer_tools.tools._log import replay_record
from producer_tools.tools._progress import (
    EXIT_INTERRUPTED,
    Reporter,
    Summary,
    ToolError,
    ToolRun,
    run_summarised,
)
from producer_tools.tools._ranges import (
    RangeSpec,
    open_range,
    position_of,
    read_ranges,
    topic_named,
)
from producer_tools.tools._sending import BatchSender, RateLimiter, open_sender
from producer_tools.tools.settings import ToolsConfig
from schemas.limits import Limits
from schemas.tenants import Tenancy


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What to replay, where to, and how."""

    range: RangeSpec = field(default_factory=RangeSpec)
    """The source range (default topic: the requests topic)."""
    target: str | None = None
    """Where to publish (default: the requests topic)."""
    dry_run: bool = False
    rate: float | None = None
    drop_reply_to: bool = False
    """Remove `replyto` from requests (their requester is gone)."""


@dataclass
class _Run(ToolRun[ReplayOptions]):
    """One replay: reads the range, validates and dedupes, sends (or counts, in a dry run)."""

    tool: ClassVar[str] = "replay"

    first_seen: dict[tuple[str, str], str] = field(default_factory=dict)
    sender: BatchSender | None = None
    target: str = field(init=False)
    limits: Limits = field(init=False)
    tenancy: Tenancy = field(init=False)
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        settings = self.settings
        self.target = topic_named(settings, self.options.target, settings.topics.requests)
        self.summary.counts["target"] = self.target
        self.limits = settings.contract.limits
        self.tenancy = settings.contract.tenancy
        self.limiter = RateLimiter(self.options.rate)

    async def _one(self, record: Any) -> None:
        self.summary.read += 1
        where = position_of(record)
        try:
            prepared = replay_record(
                record.key,
                record.value,
                record.headers,
                self.limits,
                drop_reply_to=self.options.drop_reply_to,
                tenancy=self.tenancy,
            )
        except InvalidInputError as exc:
            self.summary.skip(where, str(exc))
            return
        first = self.first_seen.setdefault(prepared.identity, where)
        if first != where:
            self.summary.duplicate(where, first)
        elif self.sender is None:
            self.summary.would_send += 1
        else:
            await self.limiter.pace(self.sender.submit_all, self.stopping)
            await self.sender.send(prepared.key, prepared.value, prepared.headers)

    def _status(self) -> str:
        done = self.sender.acked if self.sender is not None else self.summary.would_send
        verb = "would send" if self.sender is None else "acked"
        return f"{verb} {done:,}  invalid {self.summary.invalid_count:,}"

    async def run(self) -> Summary:
        producer: AIOKafkaProducer | None = None
        try:
            async with open_range(
                self.settings, self.options.range, self.settings.topics.requests
            ) as (reader, ranges):
                self.summary.counts["source"] = ranges[0].partition.topic if ranges else ""
                if not self.options.dry_run:
                    producer, self.sender = await open_sender(self.settings, self.target)
                with self.reporter.track("replaying", sum(r.size for r in ranges)) as bar:
                    async for chunk in read_ranges(reader, ranges, self.stopping):
                        for record in chunk:
                            if self.stopping.is_set():
                                break
                            await self._one(record)
                        bar.advance(len(chunk), self._status())
                    if self.sender is not None:
                        await self.sender.flush()
                    bar.advance(0, self._status())
                if self.stopping.is_set():
                    self.summary.fail("interrupted", EXIT_INTERRUPTED)
        except ToolError as exc:
            self.summary.fail(str(exc), exc.exit_code)
        finally:
            if self.sender is not None:
                self.summary.sent = self.sender.acked
            if producer is not None:
                with contextlib.suppress(Exception):  # already failing or done: stop quietly
                    await producer.stop()
        return self.summary


async def replay(
    settings: ToolsConfig,
    options: ReplayOptions,
    reporter: Reporter | None = None,
    stopping: asyncio.Event | None = None,
) -> Summary:
    """Replay the range into the target topic (see the module docstring); returns the summary."""
    return await _Run.summarise(settings, options, reporter, stopping)


def run(settings: ToolsConfig, options: ReplayOptions, reporter: Reporter) -> int:
    """The command: replay, print the summary, return the exit code."""
    return run_summarised(functools.partial(replay, settings, options, reporter), reporter)
