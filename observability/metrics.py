"""What every process's Prometheus metrics share: a registry with the process and platform
collectors (memory, CPU, open fds, Python version) and the latency buckets."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

# No `*_created` series beside every counter and histogram: Prometheus does not use them, and
# they double what a scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]

SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Latency buckets, 1 ms to 10 s (the bridge's reply timeout and the consumer's batches)."""


def process_registry(registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """`registry` (or a new one) with this process's collectors registered in it."""
    registry = registry or CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
