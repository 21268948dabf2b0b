"""Soak: the consumer (and the bridge) as real processes at half of max load, sampled over time.

    .venv/bin/python bench/soak.py [--minutes 10] [--load 0.5 | --rate N] [--sample-s 10] [--raw]

Needs the `bench` extra (`make soak` installs it): psutil, httpx.

1. Starts the embedded stack (tansu broker, PostgreSQL with fsync off, migrations, topics) and
   pre-produces `--calibrate-events` task-start events.
2. Starts the HTTP bridge (`python -m producer_tools bridge` on a free port, access log off) when
   `producer_tools.bridge.app` is importable, then the consumer (`python -m consumer`).
3. Calibrates: the consumer's max rate on the pre-produced backlog (rows per second from its
   first row, for at most `--calibrate-s`), then waits until the backlog is drained.
4. Loads for `--minutes` at `--load` x that rate (open loop, paced every 20 ms): `--bridge-rate`
   requests/s of it as `POST .../tasks/start` through the bridge (httpx, keep-alive; a fixed,
   modest rate: an HTTP request costs the shared cores far more than an event on Kafka), the
   rest produced straight to Kafka (`--rate N`: N events/s instead). Every `--sample-s` it
   samples each process (RSS, open file descriptors, open inet connections), the tasks stored,
   the backlog (sent - stored), the bridge's latency percentiles and non-201 answers of that
   interval, the CPU of ours, of the load generators, of the embedded broker and of PostgreSQL
   (with its backends), the broker's and PostgreSQL's RSS, the consumer's lag and task ids
   used from its /metrics, and two probes of the broker: `stored ms`, the median time from
   producing one probe event to Kafka (up to two a second, one at a time) to its row in the table,
   for ours and the raw loop alike; and `fetch ms`, the broker's answer to a fetch of the
   first batch of a requests partition and of a one-record control topic (`FetchProbe`).
5. Stops the load, waits for the backlog to drain, stops the processes (SIGTERM), prints the
   totals and the growth of RSS, fds and connections from the sample after warm-up
   (`--baseline-sample`, the 2nd by default) to the last, then the steady-state verdict: the
   last minute's bridge p99 within 2x of the first minute's, the backlog bounded, and each
   process's CPU and RSS from the first minute to the last (the largest CPU rise named), and
   the probes' first and last minute.

`--raw` runs the same Kafka load through bench/consumer.py's raw loop (in this process, no
bridge, no project code): whether the broker or PostgreSQL slows down on its own.

Exit code 1 if a process died, the tasks stored differ from the events sent, the backlog did not
drain, a process did not stop cleanly, an RSS grew by 10% or more, connections grew past the
first half's most, or the steady state failed. Both processes' logs are kept (the path is
printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaClient, AIOKafkaProducer
from aiokafka.protocol.fetch import FetchRequest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._http_load import percentile
from bench._stack import BODY, embedded_stack, fetch_client, produce_events
from bench.consumer import RAW_TABLE, raw_pipeline
from producer_tools.devstack.embedded import die_with_parent, free_port
from schemas import wire
from tests.servers import StackSettings, create_topic

try:
    import httpx
    import psutil
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit("bench/soak.py needs the bench extra: `make soak` (pip install -e '.[bench]')")

ROOT = Path(__file__).resolve().parent.parent
TICK_S = 0.02
MAX_BURST_S = 0.2
SERVICES = 50
MAX_BRIDGE_IN_FLIGHT = 256
DRAIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
MB = 1024 * 1024
PROBES = 3
PROBE_WAIT_MS = 1000
PROBE_EVERY_S = 0.5
PROBE_POLL_S = 0.002
SOURCE = "urn:soak"


# --- the processes ---------------------------------------------------------------------------


def child_env(settings: StackSettings) -> dict[str, str]:
    """The environment that makes a child process read exactly these settings."""
    return settings.env()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    listen_port: int | None = None
    stats: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.stats = psutil.Process(self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def sample(self) -> tuple[float, int, int, int]:
        """RSS in MiB, open file descriptors, outbound connections (broker, database), and
        inbound HTTP connections (those depend on the load generator's keep-alive pool)."""
        with self.stats.oneshot():
            rss = self.stats.memory_info().rss / MB
            fds = self.stats.num_fds()
        connected = [c for c in self.stats.net_connections(kind="inet") if c.raddr]
        inbound = sum(1 for c in connected if c.laddr.port == self.listen_port)
        return rss, fds, len(connected) - inbound, inbound

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after a grace period; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_problems(self) -> int:
        text = self.log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if " WARNING " in line or " ERROR " in line)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class CpuMeter:
    """CPU use of a process (and its children: PostgreSQL's backends) between two readings,
    in % of one core."""

    def __init__(self, process: psutil.Process, *, tree: bool = False) -> None:
        self.process, self.tree = process, tree
        self._last = (time.perf_counter(), self._seconds())

    def _members(self) -> list[psutil.Process]:
        return [self.process, *(self.process.children(recursive=True) if self.tree else [])]

    def _seconds(self) -> float:
        total = 0.0
        for member in self._members():
            with contextlib.suppress(psutil.Error):  # a backend that just exited
                times = member.cpu_times()
                total += times.user + times.system
        return total

    def rss_mb(self) -> float:
        total = 0
        for member in self._members():
            with contextlib.suppress(psutil.Error):
                total += member.memory_info().rss
        return total / MB

    def percent(self) -> float:
        now, seconds = time.perf_counter(), self._seconds()
        then, before = self._last
        self._last = (now, seconds)
        # A child's CPU counts once it exits into the parent's; a backend that comes and goes
        # can make the sum dip: never below zero.
        return max(0.0, (seconds - before) / (now - then) * 100)


def find_servers() -> dict[str, CpuMeter]:
    """The embedded broker and PostgreSQL (children of this process): what no Python change in
    ours removes, sampled beside ours so a slowdown names its cause."""
    servers: dict[str, CpuMeter] = {}
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if "tansu" in command:
                servers["broker"] = CpuMeter(child)
            elif child.name() == "postgres":
                servers["postgres"] = CpuMeter(child, tree=True)
    return servers


async def consumer_gauges(client: httpx.AsyncClient, port: int) -> tuple[float, float] | None:
    """(records of lag over its partitions, task ids used) from the consumer's /metrics."""
    try:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=2)).text
    except httpx.HTTPError:
        return None
    lag = ids = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "ucs_consumer_lag_records":
            lag = sum(sample.value for sample in family.samples)
        elif family.name == "ucs_task_ids_used":
            ids = sum(sample.value for sample in family.samples)
    return lag, ids


def spawn(
    name: str, args: list[str], settings: StackSettings, logs: Path, listen_port: int | None = None
) -> Child:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, *args],
            env=child_env(settings),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - one prctl call
        )
    return Child(name, process, log, listen_port)


def bridge_available() -> bool:
    try:
        return importlib.util.find_spec("producer_tools.bridge.app") is not None
    except ImportError:
        return False


async def wait_bridge_ready(client: httpx.AsyncClient, bridge: Child) -> None:
    async with asyncio.timeout(60):
        while True:
            if not bridge.alive:
                raise RuntimeError(f"the bridge exited while starting:\n{bridge.tail()}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)


# --- counting stored tasks -------------------------------------------------------------------


async def stored(db: asyncpg.Connection, table: str = "tasks") -> int:
    """Tasks stored so far. The highest task id: an index lookup, where count(*) would scan a
    table of millions of rows every sample; equal to the count because our consumer never burns
    an id (checked once with count(*) at the end)."""
    return await db.fetchval(f"SELECT coalesce(max(task_id), 0) FROM {table}")  # noqa: S608


async def calibrate(
    db: asyncpg.Connection, target: int, seconds: float, table: str = "tasks"
) -> tuple[int, float]:
    """(rows, seconds) from the first row until `target` rows or `seconds`, polled every 50 ms."""
    async with asyncio.timeout(120):
        while not (first := await stored(db, table)):
            await asyncio.sleep(0.01)
    began = time.perf_counter()
    while True:
        await asyncio.sleep(0.05)
        rows, elapsed = await stored(db, table), time.perf_counter() - began
        if rows >= target or elapsed >= seconds:
            return rows - first, elapsed


async def drain(
    db: asyncpg.Connection, target: int, timeout_s: float, table: str = "tasks"
) -> float | None:
    """Seconds until `target` tasks are stored, None after `timeout_s`."""
    began = time.perf_counter()
    while await stored(db, table) < target:
        if time.perf_counter() - began > timeout_s:
            return None
        await asyncio.sleep(0.1)
    return time.perf_counter() - began


# --- the load --------------------------------------------------------------------------------


@dataclass
class Load:
    """What the load generators sent and saw; the bridge's figures are per sample interval."""

    produced: int = 0
    bridge_sent: int = 0
    bridge_accepted: int = 0  # 2xx: the event was published (201, or 202 on a reply timeout)
    bridge_unknown: int = 0  # no answer: the event may or may not have been published
    bridge_failed: int = 0
    owed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    stored_ms: list[float] = field(default_factory=list)
    """The interval's probe events: produced to Kafka -> their row stored (`stored_probe`)."""
    probe_lost: str | None = None
    """The probe event not stored within `DRAIN_TIMEOUT_S`, and when it was produced: the
    pipeline stalled, probing stopped there and the run went on to its report."""

    def take_interval(self) -> tuple[list[float], int]:
        latencies, self.latencies_ms = self.latencies_ms, []
        failed, self.bridge_failed = self.bridge_failed, 0
        return latencies, failed

    def take_stored(self) -> list[float]:
        stored, self.stored_ms = self.stored_ms, []
        return stored


async def paced(rate: float, stop_at: float, send_due: Callable[[int], Awaitable[None]]) -> int:
    """Call `send_due(n)` every tick with the sends due since the start (open loop) until
    `stop_at`; the sends still owed then (a load generator that could not keep up)."""
    began = time.perf_counter()
    burst = max(1, int(rate * MAX_BURST_S))
    done = 0
    while (now := time.perf_counter()) < stop_at:
        due = int(rate * (now - began))
        if due > done:
            n = min(due - done, burst)  # catch up gradually, never long past stop_at
            await send_due(n)
            done += n
        await asyncio.sleep(TICK_S)
    return max(0, int(rate * (stop_at - began)) - done)


async def kafka_load(settings: StackSettings, rate: float, stop_at: float, load: Load) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_idempotence=False,  # the embedded broker does not support it
        linger_ms=5,
    )
    await producer.start()
    ids = itertools.count()
    try:

        async def send(n: int) -> None:
            pending = []
            for _ in range(n):
                i = next(ids)
                key, value, headers = wire.encode_request_binary(
                    service_id=1000 + i % SERVICES,
                    body=BODY,
                    event_id=f"soak-{i}",
                    source=SOURCE,
                )
                pending.append(
                    await producer.send(settings.topics.requests, value, key, headers=headers)
                )
            await asyncio.gather(*pending)
            load.produced += n

        load.owed += await paced(rate, stop_at, send)
    finally:
        await producer.stop()


async def stored_probe(settings: StackSettings, table: str, stop_at: float, load: Load) -> None:
    """Every `PROBE_EVERY_S`, one more event produced to Kafka on its own, and the time until its
    row is in `table` (polled every `PROBE_POLL_S`, or a twentieth of the time taken so far when
    that is longer): the same figure for our consumer and for the raw loop, so a latency that
    grows with both is not ours."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=False
    )
    db = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
    # On each table's unique index: (event_source, event_id) for ours, event_id for the raw loop.
    source = f"event_source = '{SOURCE}' AND " if table == "tasks" else ""
    query = f"SELECT 1 FROM {table} WHERE {source}event_id = $1"  # noqa: S608 - our own names
    await producer.start()
    try:
        for n in itertools.count():
            started = time.perf_counter()
            if started >= stop_at:
                return
            event_id = f"probe-{n}"
            key, value, headers = wire.encode_request_binary(
                service_id=1000 + n % SERVICES, body=BODY, event_id=event_id, source=SOURCE
            )
            await producer.send_and_wait(settings.topics.requests, value, key, headers=headers)
            load.produced += 1
            while await db.fetchval(query, event_id) is None:
                waited = time.perf_counter() - started
                if waited > DRAIN_TIMEOUT_S:  # stalled: say so in the report, not a traceback
                    load.probe_lost = (
                        f"{event_id}, produced {stop_at - started:.0f} s before the end"
                    )
                    return
                # Within 5% of the time taken, without polling a slow stack 500 times a second.
                await asyncio.sleep(max(PROBE_POLL_S, waited / 20))
            load.stored_ms.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(max(0.0, started + PROBE_EVERY_S - time.perf_counter()))
    finally:
        await producer.stop()
        await db.close()


async def bridge_load(client: httpx.AsyncClient, rate: float, stop_at: float, load: Load) -> None:
    slots = asyncio.Semaphore(MAX_BRIDGE_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    services = itertools.cycle(range(2000, 2000 + SERVICES))

    async def post() -> None:
        async with slots:
            path = f"/genesys/1/cs/services/{next(services)}/tasks/start"
            began = time.perf_counter()
            try:
                response = await client.post(
                    path, content=BODY, headers={"Content-Type": "application/json"}
                )
                status = str(response.status_code)
                load.bridge_accepted += response.is_success
            except httpx.HTTPError as exc:
                status = type(exc).__name__
                load.bridge_unknown += 1
            load.latencies_ms.append((time.perf_counter() - began) * 1000)
            load.statuses[status] = load.statuses.get(status, 0) + 1
            load.bridge_failed += status != "201"

    async def send(n: int) -> None:
        for _ in range(n):
            task = asyncio.create_task(post())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        load.bridge_sent += n

    load.owed += await paced(rate, stop_at, send)
    if tasks:
        await asyncio.wait(tasks, timeout=30)


# --- sampling and the report -----------------------------------------------------------------


@dataclass
class Sample:
    at_s: float
    sent: int
    stored: int
    rate: float
    processes: dict[str, tuple[float, int, int, int]]
    p50_ms: float | None
    p99_ms: float | None
    failed: int
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU % of one core over the interval: ours, then the broker's and PostgreSQL's."""
    servers: dict[str, float] = field(default_factory=dict)
    """RSS in MiB of the broker and PostgreSQL (its backends included)."""
    lag: float | None = None
    ids: float | None = None
    latencies: list[float] = field(default_factory=list)
    stored_ms: list[float] = field(default_factory=list)
    """The interval's probe events, produced -> stored (`stored_probe`)."""
    fetch_ms: dict[str, float] = field(default_factory=dict)
    """The broker's answer time to one fetch of a partition's first batch, per topic probed."""


@dataclass
class Watch:
    """What the sampler reads besides the tasks table: CPU meters (ours and the servers'),
    the servers' memory, and the consumer's own gauges (lag, ids) from its /metrics."""

    meters: dict[str, CpuMeter]
    servers: dict[str, CpuMeter]
    gauges: Callable[[], Awaitable[tuple[float, float] | None]] | None = None
    table: str = "tasks"
    probe: FetchProbe | None = None


class FetchProbe:
    """Times the broker's answer to a fetch of the first batch of partition 0 of each topic
    (one byte asked: the broker returns that one batch, at once as it is there; tansu returns
    nothing to a fetch of no wait at all), the median of `PROBES`.

    tansu's memory store lists every batch object of a partition to answer a fetch that finds
    records (`fetch` in `tansu-storage/src/dynostore.rs`, tansu 510f3e2), so there this time
    follows the partition's length: probed on the requests topic, which the load grows, and on
    a control topic of one record, which it does not. Apache Kafka finds a fetch's offset
    through its segment index.
    """

    def __init__(
        self, client: AIOKafkaClient, leaders: dict[str, int], names: dict[str, str]
    ) -> None:
        self._client = client
        self._leaders = leaders  # topic -> its partition 0's leader
        self._topics = names  # shown name -> topic

    @classmethod
    async def start(cls, bootstrap: str, topics: dict[str, str]) -> FetchProbe:
        client, leaders = await fetch_client(bootstrap, list(topics.values()))
        return cls(client, leaders, topics)

    async def close(self) -> None:
        await self._client.close()

    async def measure(self) -> dict[str, float]:
        times = {}
        for name, topic in self._topics.items():
            request = FetchRequest(PROBE_WAIT_MS, 1, 1, 0, [(topic, [(0, 0, 1)])])
            taken = []
            for _ in range(PROBES):
                started = time.perf_counter()
                response = await self._client.send(self._leaders[topic], request)
                taken.append(time.perf_counter() - started)
                found = response.topics[0][1][0] if response.topics else None
                if found is None or found[1]:  # (partition, error code, ...)
                    raise RuntimeError(f"probe fetch of {topic} failed: {response}")
            times[name] = statistics.median(taken) * 1000
        return times


async def sampler(
    db: asyncpg.Connection,
    children: list[Child],
    load: Load,
    watch: Watch,
    *,
    base: int,
    began: float,
    count: int,
    every_s: float,
) -> list[Sample]:
    """`count` samples, one every `every_s` from `began`; raises if a process died."""
    samples: list[Sample] = []
    previous, previous_at = await stored(db, watch.table), began
    for meter in (*watch.meters.values(), *watch.servers.values()):
        meter.percent()  # the first interval starts now
    for n in range(1, count + 1):
        await asyncio.sleep(max(0.0, began + n * every_s - time.perf_counter()))
        for child in children:
            if not child.alive:
                raise RuntimeError(
                    f"the {child.name} died (code {child.process.returncode}):\n{child.tail()}"
                )
        rows, now = await stored(db, watch.table), time.perf_counter()
        latencies, failed = load.take_interval()
        gauges = await watch.gauges() if watch.gauges is not None else None
        fetch_ms = await watch.probe.measure() if watch.probe is not None else {}
        every = {**watch.meters, **watch.servers}
        samples.append(
            Sample(
                at_s=now - began,
                sent=load.produced + load.bridge_accepted,
                stored=rows - base,
                rate=(rows - previous) / (now - previous_at),
                processes={child.name: child.sample() for child in children},
                p50_ms=statistics.median(latencies) if latencies else None,
                p99_ms=percentile(latencies, 0.99) if latencies else None,
                failed=failed,
                cpu={name: meter.percent() for name, meter in every.items()},
                servers={name: meter.rss_mb() for name, meter in watch.servers.items()},
                lag=gauges[0] if gauges else None,
                ids=gauges[1] if gauges else None,
                latencies=latencies,
                stored_ms=load.take_stored(),
                fetch_ms=fetch_ms,
            )
        )
        previous, previous_at = rows, now
        print_sample(samples[-1], header=n == 1)
    return samples


def print_sample(sample: Sample, *, header: bool) -> None:
    names = list(sample.processes)
    if header:
        cols = [
            f"{'t s':>6}",
            f"{'sent':>9}",
            f"{'stored':>9}",
            f"{'backlog':>8}",
            f"{'tasks/s':>8}",
        ]
        for name in names:
            cols += [f"{name + ' RSS MB':>17}", f"{'fds':>5}", f"{'conns':>5}"]
        if "bridge" in names:
            cols += [f"{'http':>5}", f"{'p50 ms':>7}", f"{'p99 ms':>7}", f"{'non-201':>7}"]
        cols += [f"{name + ' cpu%':>12}" for name in sample.cpu]
        cols += [f"{name + ' MB':>11}" for name in sample.servers]
        cols += [f"{'lag':>7}", f"{'ids used':>9}", f"{'stored ms':>9}"]
        cols += [f"{name + ' fetch ms':>14}" for name in sample.fetch_ms]
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("-" * (len(c) + 2) for c in cols) + "|")
    cols = [
        f"{sample.at_s:>6.0f}",
        f"{sample.sent:>9}",
        f"{sample.stored:>9}",
        f"{sample.sent - sample.stored:>8}",
        f"{sample.rate:>8.0f}",
    ]
    for name in names:
        rss, fds, conns, _ = sample.processes[name]
        cols += [f"{rss:>17.1f}", f"{fds:>5}", f"{conns:>5}"]
    if "bridge" in names:
        cols.append(f"{sample.processes['bridge'][3]:>5}")
        p50 = f"{sample.p50_ms:>7.1f}" if sample.p50_ms is not None else f"{'-':>7}"
        p99 = f"{sample.p99_ms:>7.1f}" if sample.p99_ms is not None else f"{'-':>7}"
        cols += [p50, p99, f"{sample.failed:>7}"]
    cols += [f"{value:>12.0f}" for value in sample.cpu.values()]
    cols += [f"{value:>11.1f}" for value in sample.servers.values()]
    cols.append(f"{sample.lag:>7.0f}" if sample.lag is not None else f"{'-':>7}")
    cols.append(f"{sample.ids:>9.0f}" if sample.ids is not None else f"{'-':>9}")
    stored = statistics.median(sample.stored_ms) if sample.stored_ms else None
    cols.append(f"{stored:>9.1f}" if stored is not None else f"{'-':>9}")
    cols += [f"{value:>14.2f}" for value in sample.fetch_ms.values()]
    print("| " + " | ".join(cols) + " |", flush=True)


def _minute(samples: list[Sample], *, last: bool) -> list[Sample]:
    """The samples of the first (or the last) minute of the load."""
    end = samples[-1].at_s
    if last:
        return [s for s in samples if s.at_s > end - 60]
    return [s for s in samples if s.at_s <= min(60.0, end / 2)]


def steady_state(samples: list[Sample], rate: float) -> tuple[bool, list[str]]:
    """Did the run hold its rate? The last minute's bridge p99 within 2x of the first minute's,
    the backlog bounded (the last sample's at most 2 s of load or no more than the first
    half's worst), and what changed between the first and last minute in every process's CPU
    and memory (so a slowdown names its cause)."""
    first, last = _minute(samples, last=False), _minute(samples, last=True)
    lines: list[str] = []
    ok = True
    early = [v for s in first for v in s.latencies]
    late = [v for s in last for v in s.latencies]
    if early and late:
        p99_first, p99_last = percentile(early, 0.99), percentile(late, 0.99)
        held = p99_last <= 2 * p99_first
        ok &= held
        lines.append(
            f"bridge p99: first minute {p99_first:.1f} ms, last minute {p99_last:.1f} ms"
            f" ({p99_last / p99_first:.2f}x; {'within' if held else 'NOT within'} 2x)"
        )
    half = samples[: max(1, len(samples) // 2)]
    worst_first = max(s.sent - s.stored for s in half)
    backlog = samples[-1].sent - samples[-1].stored
    bounded = backlog <= max(2 * rate, worst_first)
    ok &= bounded
    lines.append(
        f"backlog: {backlog} at the end, worst {max(s.sent - s.stored for s in samples)},"
        f" worst of the first half {worst_first} ({'bounded' if bounded else 'NOT bounded'}:"
        f" at most 2 s of load ({2 * rate:.0f}) or the first half's worst)"
    )
    rate_first = statistics.mean(s.rate for s in first)
    rate_last = statistics.mean(s.rate for s in last)
    lines.append(f"stored rate: first minute {rate_first:.0f}/s, last minute {rate_last:.0f}/s")
    growth = []
    for name in samples[-1].cpu:
        cpu_first = statistics.mean(s.cpu[name] for s in first)
        cpu_last = statistics.mean(s.cpu[name] for s in last)
        growth.append((cpu_last - cpu_first, f"{name} CPU {cpu_first:.0f}% -> {cpu_last:.0f}%"))
    for name in samples[-1].servers:
        mb_first, mb_last = first[0].servers[name], samples[-1].servers[name]
        growth.append((0.0, f"{name} RSS {mb_first:.0f} -> {mb_last:.0f} MB"))
    stored_first = [v for s in first for v in s.stored_ms]
    stored_last = [v for s in last for v in s.stored_ms]
    if stored_first and stored_last:
        growth.append(
            (
                0.0,
                f"a probe event produced -> stored (median) {statistics.median(stored_first):.1f}"
                f" -> {statistics.median(stored_last):.1f} ms",
            )
        )
    for name in samples[-1].fetch_ms:
        ms_first = statistics.median(s.fetch_ms[name] for s in first)
        ms_last = statistics.median(s.fetch_ms[name] for s in last)
        growth.append((0.0, f"broker fetch of {name} {ms_first:.2f} -> {ms_last:.2f} ms"))
    lines.append("first minute -> last minute: " + ", ".join(text for _, text in growth))
    grew = max(growth, key=lambda g: g[0])
    if grew[0] > 10:
        lines.append(f"the largest CPU growth: {grew[1]}")
    return ok, lines


def growth_lines(samples: list[Sample], baseline: int) -> list[str]:
    first, last = samples[min(baseline, len(samples)) - 1], samples[-1]
    lines = []
    for name in last.processes:
        # Inbound HTTP sockets follow the load generator's keep-alive pool: not counted.
        rss0, fds0, conns0, http0 = first.processes[name]
        rss1, fds1, conns1, http1 = last.processes[name]
        fds0, fds1 = fds0 - http0, fds1 - http1
        besides = " besides HTTP" if name == "bridge" else ""
        peak = max(s.processes[name][0] for s in samples)
        lines.append(
            f"{name}: RSS growth {(rss1 - rss0) / rss0 * 100:+.1f}% ({rss0:.1f} -> {rss1:.1f} MB,"
            f" peak {peak:.1f}), connection growth {conns1 - conns0:+d} ({conns0} -> {conns1}"
            " to the broker and database),"
            f" fd growth {fds1 - fds0:+d} ({fds0} -> {fds1}{besides})"
            f"   [sample {min(baseline, len(samples))} at {first.at_s:.0f} s -> last at"
            f" {last.at_s:.0f} s]"
        )
    return lines


# --- main ------------------------------------------------------------------------------------


@dataclass
class Outcome:
    samples: list[Sample]
    load: Load
    stored: int
    drained_s: float | None
    rate: float = 0.0


async def start_processes(
    settings: StackSettings, client: httpx.AsyncClient, logs: Path, children: list[Child]
) -> bool:
    """The bridge (when available and wanted), then the consumer; True if the bridge runs."""
    with_bridge = settings.bridge.port > 0 and bridge_available()
    if with_bridge:
        args = ["-m", "producer_tools", "bridge"]
        children.append(spawn("bridge", args, settings, logs, settings.bridge.port))
        await wait_bridge_ready(client, children[-1])
    else:
        print("bridge: not available or --bridge-rate 0; soaking the consumer alone")
    children.insert(0, spawn("consumer", ["-m", "consumer"], settings, logs))
    return with_bridge


async def run_load(
    args: argparse.Namespace,
    settings: StackSettings,
    db: asyncpg.Connection,
    client: httpx.AsyncClient,
    children: list[Child],
    *,
    watch: Watch,
    bridge_rate: float,
    kafka_rate: float,
) -> Outcome:
    """The paced load for `--minutes`, sampled; then the drain."""
    load = Load()
    base = args.calibrate_events
    began = time.perf_counter()
    stop_at = began + args.minutes * 60
    generators = [
        asyncio.create_task(kafka_load(settings, kafka_rate, stop_at, load)),
        asyncio.create_task(stored_probe(settings, watch.table, stop_at, load)),
    ]
    if bridge_rate > 0:
        generators.append(asyncio.create_task(bridge_load(client, bridge_rate, stop_at, load)))
    try:
        samples = await sampler(
            db,
            children,
            load,
            watch,
            base=base,
            began=began,
            count=max(1, int(args.minutes * 60 / args.sample_s)),
            every_s=args.sample_s,
        )
    except BaseException:
        for task in generators:
            task.cancel()
        await asyncio.gather(*generators, return_exceptions=True)
        raise
    await asyncio.gather(*generators)  # they stop at stop_at; their own errors surface here
    sent = load.produced + load.bridge_accepted
    drained = await drain(db, base + sent, DRAIN_TIMEOUT_S, watch.table)
    total = await db.fetchval(f"SELECT count(*) FROM {watch.table}")  # noqa: S608
    return Outcome(samples, load, total - base, drained, kafka_rate + bridge_rate)


async def start_probe(settings: StackSettings) -> FetchProbe:
    """A FetchProbe of the requests topic and of a control topic holding one record."""
    control = f"{settings.topics.requests}.probe"
    await create_topic(settings, control)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers, enable_idempotence=False
    )
    await producer.start()
    try:
        await producer.send_and_wait(control, BODY)
    finally:
        await producer.stop()
    return await FetchProbe.start(
        settings.kafka.bootstrap_servers, {"requests": settings.topics.requests, "control": control}
    )


def stopped_cleanly(child: Child, code: int) -> bool:
    # uvicorn re-raises the signal it caught once its graceful shutdown is complete.
    return code == 0 or (child.name == "bridge" and code == -signal.SIGTERM)


async def soak(args: argparse.Namespace) -> int:
    logs = Path(tempfile.mkdtemp(prefix="ucs-soak-logs-"))
    children: list[Child] = []
    raw: asyncio.Task[None] | None = None
    probe: FetchProbe | None = None
    stopping = asyncio.Event()
    async with embedded_stack() as stack:
        port = free_port() if args.bridge_rate > 0 and not args.raw else 0
        health = free_port()
        settings = stack.with_(
            **{
                "bridge_port": port,
                "bridge_access_log": False,
                "base_uri": f"http://127.0.0.1:{port}/genesys/1/cs",
                "consumer_health_port": health,
            }
        )
        db = await asyncpg.connect(settings.database_url.replace("+asyncpg", ""))
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30)
        table = "raw_tasks" if args.raw else "tasks"
        try:
            await produce_events(settings, args.calibrate_events)
            with_bridge = False
            if args.raw:  # the same load through the raw loop, in this process
                await db.execute(RAW_TABLE)
                # Fetches wait what our consumer's do under load (UCS_FETCH_BUSY_WAIT_MS): tansu
                # hands a waiting fetch its records after half of the wait, which sets the latency.
                busy_wait_ms = settings.consumer.fetch_busy_wait_ms
                raw = asyncio.create_task(raw_pipeline(settings, stopping, busy_wait_ms))
                print(
                    "raw mode: the raw loop of bench/consumer.py (no project code) in this process"
                )
            else:
                with_bridge = await start_processes(settings, client, logs, children)
            rows, seconds = await calibrate(db, args.calibrate_events, args.calibrate_s, table)
            if await drain(db, args.calibrate_events, DRAIN_TIMEOUT_S, table) is None:
                print("the consumer did not drain the calibration backlog")
                return 1
            max_rate = rows / seconds
            target = args.rate or max_rate * args.load
            bridge_rate = min(args.bridge_rate, target / 2) if with_bridge else 0.0
            print(
                f"max rate {max_rate:,.0f} tasks/s ({rows} events in {seconds:.1f} s);"
                f" load {target:,.0f}/s ({'--rate' if args.rate else f'{args.load:.0%}'}):"
                f" {target - bridge_rate:,.0f}/s to Kafka + {bridge_rate:,.0f}/s through the"
                f" bridge, for {args.minutes:g} min, sampled every {args.sample_s:g} s"
            )
            meters = {child.name: CpuMeter(child.stats) for child in children}
            # This process: the load generators (and the raw loop in --raw mode).
            meters["raw loop + load" if args.raw else "load"] = CpuMeter(psutil.Process())
            watch = Watch(meters, find_servers(), table=table)
            if not args.raw:
                watch.gauges = lambda: consumer_gauges(client, health)
            watch.probe = probe = await start_probe(settings)
            outcome = await run_load(
                args,
                settings,
                db,
                client,
                children,
                watch=watch,
                bridge_rate=bridge_rate,
                kafka_rate=target - bridge_rate,
            )
        finally:
            if probe is not None:
                await probe.close()
            await client.aclose()
            codes = {child.name: child.stop() for child in reversed(children)}
            if raw is not None:
                stopping.set()
                await raw
            await db.close()
    return report(outcome, children, codes, logs, args.baseline_sample)


def report(
    outcome: Outcome, children: list[Child], codes: dict[str, int], logs: Path, baseline: int
) -> int:
    load = outcome.load
    sent = load.produced + load.bridge_accepted
    print(
        f"sent {sent} ({load.produced} to Kafka, {load.bridge_accepted} accepted by the bridge of"
        f" {load.bridge_sent} posted: {dict(sorted(load.statuses.items()))}); the load generators"
        f" fell {load.owed} sends short of the schedule"
    )
    drained = (
        f"backlog drained {outcome.drained_s:.1f} s after the load stopped"
        if outcome.drained_s is not None
        else f"backlog NOT drained within {DRAIN_TIMEOUT_S:.0f} s"
    )
    print(f"stored {outcome.stored} tasks (count(*)); {drained}")
    if load.probe_lost is not None:
        print(
            f"probe event NOT stored within {DRAIN_TIMEOUT_S:.0f} s: {load.probe_lost}"
            " (probing stopped there)"
        )
    clean = all(stopped_cleanly(child, codes[child.name]) for child in children)
    print(
        f"exit codes after SIGTERM: {codes} ({'clean' if clean else 'NOT clean'});"
        f" logs in {logs}: "
        + ", ".join(f"{c.name} {c.log_problems()} warning/error lines" for c in children)
    )
    growth = growth_lines(outcome.samples, baseline)
    for line in growth:
        print(line)
    kept = _kept(outcome.samples, baseline)
    steady, verdict = steady_state(outcome.samples, outcome.rate)
    for line in verdict:
        print(line)
    complete = sent <= outcome.stored <= sent + load.bridge_unknown
    ok = outcome.drained_s is not None and complete and clean and kept and steady
    print(
        f"verdict: {'PASS' if ok else 'FAIL'} (every event stored: {complete}, drained:"
        f" {outcome.drained_s is not None}, clean stops: {clean}, RSS growth < 10% and no"
        f" connection growth past the first half's most: {kept}, steady state: {steady})"
    )
    return 0 if ok else 1


def _kept(samples: list[Sample], baseline: int) -> bool:
    """RSS growth under 10% from the baseline sample to the last, and no connection growth: the
    last sample's connections no more than the most seen in the first half (a pool's count
    moves by one as connections are taken and given back; growth is a rise past that)."""
    first, last = samples[min(baseline, len(samples)) - 1], samples[-1]
    half = samples[: max(1, len(samples) // 2)]
    for name, (rss, _, conns, _) in last.processes.items():
        if rss >= 1.1 * first.processes[name][0]:
            return False
        if conns > max(s.processes[name][2] for s in half):
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (default 10)")
    parser.add_argument("--load", type=float, default=0.5, help="fraction of the max rate (0.5)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="sampling period (10 s)")
    parser.add_argument(
        "--baseline-sample", type=int, default=2, help="growth is measured from this sample (2)"
    )
    parser.add_argument(
        "--calibrate-events", type=int, default=60_000, help="backlog for the max rate (60,000)"
    )
    parser.add_argument(
        "--calibrate-s", type=float, default=10.0, help="longest calibration (10 s)"
    )
    parser.add_argument(
        "--bridge-rate",
        type=float,
        default=20.0,
        help="requests/s of the load sent through the HTTP bridge (20; 0: no bridge)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="load in events/s instead of --load x the calibrated max (to run --raw at the rate"
        " our processes were soaked at)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="the same Kafka load through bench/consumer.py's raw loop (no project code, no"
        " bridge): does the embedded broker or PostgreSQL slow down on its own?",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
