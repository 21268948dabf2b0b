"""The consumer's Prometheus metrics (names and units by Prometheus conventions).

Defined in a registry of their own, built by the composition root; the health server exposes
them on `/metrics` beside the process collectors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from observability.metrics import SECONDS_BUCKETS, process_registry

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 4000, 8000)


class ConsumerMetrics:
    """Every metric the consumer exports, in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = process_registry(registry)
        r = self.registry
        self.events = Counter(
            "ucs_consumer_events",
            "Records settled, by outcome: created, answered_again (a known identity), completed, "
            "extension_updated, rejected, dead_lettered.",
            ["outcome"],
            registry=r,
        )
        self.rejections = Counter(
            "ucs_consumer_rejections", "Events rejected, by error code.", ["code"], registry=r
        )
        self.dead_letters = Counter(
            "ucs_consumer_dead_letters", "Records dead-lettered, by reason.", ["reason"], registry=r
        )
        self.batch_records = Histogram(
            "ucs_consumer_batch_records", "Records per settled batch.", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.batch_duration = Histogram(
            "ucs_consumer_batch_duration_seconds",
            "From a batch's poll to its commit.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.database_duration = Histogram(
            "ucs_consumer_database_duration_seconds",
            "One lane's database transaction.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.publish_duration = Histogram(
            "ucs_consumer_publish_duration_seconds",
            "Publishing one lane's replies until every acknowledgement.",
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "ucs_consumer_retries",
            "Batches retried after a transient failure, by dependency (database, broker).",
            ["dependency"],
            registry=r,
        )
        self.commits = Counter(
            "ucs_consumer_commits",
            "Offset commits, by result: committed, dropped (the group moved on), failed.",
            ["result"],
            registry=r,
        )
        self.client_replacements = Counter(
            "ucs_consumer_client_replacements",
            "Kafka consumer clients replaced because their group coordination made no progress"
            " (commits stuck again after a rejoin).",
            registry=r,
        )
        self.lag = Gauge(
            "ucs_consumer_lag_records",
            "Records of a partition not yet settled (log end minus position).",
            ["topic", "partition"],
            registry=r,
        )
        self.committed_offset = Gauge(
            "ucs_consumer_committed_offset",
            "The last offset this member committed for a partition (next record to read).",
            ["topic", "partition"],
            registry=r,
        )
        self.task_ids_used = Gauge(
            "ucs_task_ids_used", "Task ids handed out so far (of 2147483647).", registry=r
        )
        self.task_ids_remaining = Gauge(
            "ucs_task_ids_remaining", "Task ids left before the id space is exhausted.", registry=r
        )
        self.ready = Gauge(
            "ucs_consumer_ready",
            "1 while the consumer is a group member with its database reachable, else 0.",
            registry=r,
        )
