"""The embedded broker's own CPU per Kafka request: the floor under the bridge's half-load figures.

    .venv/bin/python bench/broker_floor.py [--requests 2000]

No project code runs: one aiokafka client talks to a fresh embedded broker (tansu) and the
broker process's CPU time is read around each step (psutil), so its cost is per *request*:

- produce: record batches of 1, 10 and 100 records (500-byte values, the size of a bridged
  request), one request at a time, each awaited (acks=all), as a lone HTTP request is sent;
- offset commit: one per request (the consumer commits once per batch);
- an empty fetch: a consumer on an empty topic, for a few seconds at fetch waits of 10 and 50 ms
  (the consumer's busy wait and its idle wait; the bridge's reply listener uses 10);
- a waiting fetch: when the broker answers a fetch (100 ms wait) that found no record, for a
  record landing 5, 30 and 60 ms into its wait. Kafka answers as soon as it lands; tansu looks
  again only after half of the wait left (at 0, 50, 75, 87.5... ms), which sets the latency
  every fetch wait setting here is about.

What it shows: whether the broker's cost follows records or requests. Where a request is a
produce request of its own (the bridge at moderate load: each HTTP request arrives alone), the
broker's CPU per HTTP request is at least one produce request's; under saturation records share
requests and the figure falls. Apache Kafka's costs differ (and it answers a waiting fetch as soon
as a record arrives), so these figures hold for the embedded broker only.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.fetch import FetchRequest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import fetch_client
from producer_tools.devstack.embedded import EmbeddedBroker

VALUE = b"x" * 500
TOPIC = "floor"
PARTITIONS = 6
WAIT_MS = 100
LANDS_AT_MS = (5, 30, 60)


async def broker_cpu_s(broker: psutil.Process, step: Callable[[], Awaitable[None]]) -> float:
    """The broker's CPU seconds while `step` runs."""
    before = broker.cpu_times()
    await step()
    after = broker.cpu_times()
    return (after.user + after.system) - (before.user + before.system)


async def produce(producer: AIOKafkaProducer, requests: int, records: int) -> None:
    for i in range(requests):
        batch = producer.create_batch()
        for _ in range(records):
            batch.append(key=b"1001", value=VALUE, timestamp=None)
        await (await producer.send_batch(batch, TOPIC, partition=i % PARTITIONS))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000, help="requests per produce step")
    parser.add_argument("--fetch-s", type=float, default=4.0, help="seconds per fetch-wait step")
    args = parser.parse_args()
    async with EmbeddedBroker(log_path=Path(tempfile.mkdtemp(prefix="ucs-floor-")) / "b.log") as b:
        servers = b.bootstrap_servers
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(TOPIC, PARTITIONS, 1),
                    NewTopic(f"{TOPIC}.empty", PARTITIONS, 1),
                    NewTopic(f"{TOPIC}.wait", 1, 1),
                ]
            )
        finally:
            await admin.close()
        assert b.pid is not None
        broker = psutil.Process(b.pid)
        print(f"embedded broker (tansu), one client, {PARTITIONS}-partition topics")
        print(f"| {'request':<40} | {'requests':>8} | {'broker ms/request':>17} |")
        print(f"|{'-' * 42}|{'-' * 10}|{'-' * 19}|")
        producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=False)
        await producer.start()
        per_request: dict[int, float] = {}
        try:
            await produce(producer, 200, 1)  # warm: metadata, connections
            for step, records in enumerate((1, 10, 100, 1)):
                count = args.requests if records < 100 else args.requests // 4
                cpu = await broker_cpu_s(broker, lambda c=count, r=records: produce(producer, c, r))
                per_request[records] = cpu / count * 1000  # the second 1-record step counts
                again = " (again)" if step == 3 else ""
                name = f"produce, {records} record(s) of 500 B{again}"
                print(f"| {name:<40} | {count:>8} | {per_request[records]:>17.3f} |")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=servers, group_id="floor", enable_auto_commit=False
        )
        await consumer.start()
        try:
            tp = TopicPartition(TOPIC, 0)
            consumer.assign([tp])

            async def commits() -> None:
                for offset in range(args.requests):
                    await consumer.commit({tp: offset + 1})

            cpu = await broker_cpu_s(broker, commits)
            name = "offset commit"
            print(f"| {name:<40} | {args.requests:>8} | {cpu / args.requests * 1000:>17.3f} |")
        finally:
            await consumer.stop()
        for wait_ms in (10, 50):
            fetches = args.fetch_s * 1000 / wait_ms
            cpu = await empty_fetches(broker, servers, wait_ms, args.fetch_s)
            name = f"empty fetch, {wait_ms} ms wait ({PARTITIONS} partitions)"
            print(f"| {name:<40} | {fetches:>8.0f} | {cpu / fetches * 1000:>17.3f} |")
        answered = await waiting_fetches(servers)
        print(
            f"a fetch waiting up to {WAIT_MS} ms, record landing at -> answered at (ms): "
            + ", ".join(f"{lands:.1f} -> {at:.1f}" for lands, at in answered)
        )
        ratio = per_request[100] / per_request[1]
        print(
            f"ratio broker CPU per produce request, 100 records / 1 record: {ratio:.2f}"
            f" ({per_request[1]:.3f} ms for one record)"
        )


async def empty_fetches(
    broker: psutil.Process, servers: str, wait_ms: int, seconds: float
) -> float:
    """The broker's CPU seconds while a consumer long-polls an empty topic for `seconds`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers, fetch_max_wait_ms=wait_ms, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(f"{TOPIC}.empty", p) for p in range(PARTITIONS)])
        await consumer.getmany(timeout_ms=500)  # positions known, fetching under way

        async def polling() -> None:
            await consumer.getmany(timeout_ms=int(seconds * 1000))

        return await broker_cpu_s(broker, polling)
    finally:
        await consumer.stop()


async def waiting_fetches(servers: str) -> list[tuple[float, float]]:
    """(ms into the wait the record landed, ms into it the fetch was answered), per LANDS_AT_MS."""
    topic = f"{TOPIC}.wait"
    client, leaders = await fetch_client(servers, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=False)
    await producer.start()
    try:
        found = []
        for offset, lands_at_ms in enumerate(LANDS_AT_MS):
            request = FetchRequest(WAIT_MS, 1, 1 << 20, 0, [(topic, [(0, offset, 1 << 20)])])
            began = time.perf_counter()
            fetch = asyncio.ensure_future(client.send(leaders[topic], request))
            answered: list[float] = []
            fetch.add_done_callback(lambda _, stamps=answered: stamps.append(time.perf_counter()))
            await asyncio.sleep(lands_at_ms / 1000)
            await producer.send_and_wait(topic, VALUE, partition=0)
            landed = time.perf_counter()
            response = await fetch
            assert response.topics, "the fetch found no topic"
            assert response.topics[0][1][0][-1], "the fetch got no record"
            found.append(((landed - began) * 1000, (answered[0] - began) * 1000))
        return found
    finally:
        await client.close()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main())
