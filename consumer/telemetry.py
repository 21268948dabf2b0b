"""What the consume loop reports as it goes: metrics, health, and per-record log lines.

One object, built by the composition root, handed to the loop's parts; the default is a private
registry nobody scrapes (the unit tests' loops).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from consumer.domain import Changed, ChangeKind, Outcome, Rejection, Task, Undecodable
from consumer.health import Health
from consumer.metrics import ConsumerMetrics
from consumer.ports import Inbound
from observability import tracing
from observability.logs import RateLimitedLog
from schemas.errors import BrokerUnavailableError, ServiceError, StorageUnavailableError

log = logging.getLogger("consumer.records")


def dependency_of(exc: ServiceError) -> str:
    """Which dependency a transient failure is about (`postgresql` or `kafka`)."""
    if isinstance(exc, StorageUnavailableError):
        return "postgresql"
    return "kafka" if isinstance(exc, BrokerUnavailableError) else "unknown"


class Telemetry:
    """Counts, times and reports the loop's work."""

    def __init__(
        self,
        metrics: ConsumerMetrics | None = None,
        health: Health | None = None,
        per_minute: int = 60,
    ) -> None:
        self.metrics = metrics or ConsumerMetrics()
        self.health = health or Health()
        self._reports = RateLimitedLog(log, per_minute)
        self.committed_offsets: dict[tuple[str, int], int] = {}
        """The last offset committed per partition (the lag is the log end minus it)."""

    @contextmanager
    def timed_database(self) -> Iterator[None]:
        """Time one lane's database work (a span too, when spans are exported)."""
        started = time.perf_counter()
        if tracing.enabled():
            with tracing.span("database", kind="client", attributes={"db.system": "postgresql"}):
                yield
        else:
            yield
        self.metrics.database_duration.observe(time.perf_counter() - started)

    @contextmanager
    def timed_publish(self) -> Iterator[None]:
        """Time one publish of a batch's answers, until every acknowledgement (and its span)."""
        started = time.perf_counter()
        if tracing.enabled():
            with tracing.span(
                "publish replies", kind="producer", attributes={"messaging.system": "kafka"}
            ):
                yield
        else:
            yield
        self.metrics.publish_duration.observe(time.perf_counter() - started)

    def batch(self, records: int, started: float) -> None:
        """A batch settled and committed (or dropped)."""
        self.metrics.batch_records.observe(records)
        self.metrics.batch_duration.observe(time.monotonic() - started)

    def outcomes(self, inbound: Sequence[Inbound], outcomes: Sequence[Outcome]) -> None:
        """Count each record's outcome; log rejections and dead letters (rate-limited)."""
        counted: Counter[str] = Counter()  # one labelled increment per outcome, not per record
        for item, outcome in zip(inbound, outcomes, strict=True):
            if isinstance(outcome, Task):
                counted["created" if outcome.position == item.position else "answered_again"] += 1
            elif isinstance(outcome, Changed):
                end = outcome.change.kind is ChangeKind.END
                counted["completed" if end else "extension_updated"] += 1
            elif isinstance(outcome, Rejection):
                counted["rejected"] += 1
                self.metrics.rejections.labels(outcome.code).inc()
                self._report_rejection(item, outcome)
            elif isinstance(outcome, Undecodable):
                self.dead_lettered(item, "undecodable", outcome.reason)
        for outcome_name, count in counted.items():
            self.metrics.events.labels(outcome_name).inc(count)

    def dead_lettered(self, item: Inbound | None, reason: str, detail: str) -> None:
        """A record went to the dead letters (`reason`: a short label, `detail`: the why)."""
        self.metrics.events.labels("dead_lettered").inc()
        self.metrics.dead_letters.labels(reason).inc()
        position = item.position if item is not None else None
        self._reports.log(
            logging.WARNING, "dead_letter", "dead-lettered: %s", detail,
            topic=position.topic if position else None,
            partition=position.partition if position else None,
            offset=position.offset if position else None,
        )  # fmt: skip

    def _report_rejection(self, item: Inbound, rejection: Rejection) -> None:
        self._reports.log(
            logging.INFO, "rejection", "rejected (%s %s): %s",
            rejection.status, rejection.code, rejection.body.get("message", ""),
            event_source=rejection.identity.source, event_id=rejection.identity.id,
            partition=item.position.partition, offset=item.position.offset,
            task_id=rejection.task_id, code=rejection.code,
        )  # fmt: skip

    def retry(self, exc: ServiceError) -> None:
        """A transient failure: the batch is retried after a back-off."""
        dependency = dependency_of(exc)
        self.metrics.retries.labels(dependency).inc()
        self.health.failing(dependency, str(exc).splitlines()[0][:200])

    def recovered(self, dependencies: Iterable[str]) -> None:
        """A step that had failed on these dependencies went through: they answer again."""
        for dependency in dependencies:
            self.health.recovered(dependency)

    def committed(self, result: str, offsets: dict[tuple[str, int], int] | None = None) -> None:
        """An offset commit's result (`committed`, `dropped`, `failed`) and what it stored."""
        self.metrics.commits.labels(result).inc()
        for (topic, partition), offset in (offsets or {}).items():
            self.committed_offsets[topic, partition] = offset
            self.metrics.committed_offset.labels(topic, str(partition)).set(offset)
