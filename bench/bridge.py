"""Benchmark: the HTTP bridge end to end vs a bare FastAPI handler and a FastStream-style RPC peer.

    .venv/bin/python bench/bridge.py [--clients 1 16 64] [--seconds 4] [--latency-s 10]
                                     [--latency-rate N] [--prefill-batches N]
                                     [--set NAME=VALUE] [--py-spy DIR]

Needs the `bench` extra (`make bench` installs it): faststream[kafka], psutil.

For each measurement, starts a fresh embedded stack (tansu broker, PostgreSQL with fsync off,
migrations, topics), the consumer and the one HTTP server measured, each server on its own free
port with the bridge's uvicorn options (uvloop, httptools, one process, access log off):
- `bridge`: `python -m producer_tools bridge`, the system under test: POST -> validation ->
  Kafka -> consumer -> PostgreSQL -> reply -> 201;
- `bare-fastapi`: the same route returning a fixed 201 + Location + {"task_id": 1} (the ceiling
  of one uvicorn + FastAPI process);
- `faststream-rpc-peer`: the same route as FastStream's Kafka RPC how-to builds it (publish with
  a correlation id and a reply topic, a dict of futures, a subscriber on the reply topic),
  answered by the same consumer (bench/_http_apps.py);
- `python -m consumer`, which answers the bridge and the peer alike.

Per concurrency (`--clients`), each target in turn, on its own fresh stack, gets `--seconds` of
closed-loop load after `--warmup-s`, from a light keep-alive HTTP/1.1 client in this process
(bench/_http_load.py): requests/s, p50/p90/p99 latency and the CPU time each process spent per
request. Last, on a fresh stack with only the consumer and the bridge, an open-loop run at half
of the bridge's best requests/s for `--latency-s` (latency measured from the scheduled send
time), printed whole and second by second (each second's p50 and p99, and the cores each
process used in it), with how its last two seconds compare with its first two: the embedded
broker lists every record batch of a partition to answer a fetch, so its cost grows with the
requests log through the run (bench/README.md, bridge.py "session 7"; `--prefill-batches`
starts the run on a longer log). Every process shares this machine's cores, the load generator
too: compare the ratios, and the CPU per request, rather than the absolute rates. About 90 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench import _http_load as load
from bench._http_apps import PEER_REPLY_TOPIC, START
from bench._stack import BODY, embedded_stack, produce_alone, time_rows
from producer_tools.devstack.embedded import die_with_parent, free_port
from tests.processes import settings_env
from tests.servers import StackSettings

try:
    import psutil
except ImportError:  # pragma: no cover - a clear message instead of a traceback
    sys.exit("bench/bridge.py needs the bench extra: `make bench` (pip install -e '.[bench]')")

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
SERVICES = 50
"""Each client connection starts tasks of its own service (1000 + i % 50): keys spread over the
partitions, as a real load's would."""
BRIDGE, BARE, PEER = "bridge", "bare-fastapi", "faststream-rpc-peer"
TARGETS = (BARE, BRIDGE, PEER)
ROLES = ("server", "consumer", "broker", "db", "load")
PY_SPY = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.defpath}")


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes]


@dataclass
class Row:
    clients: int
    target: str
    result: load.Result
    cpu_ms: dict[str, float]
    """CPU milliseconds per answered request, by role."""


def spawn(args: list[str], settings: StackSettings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            env=settings_env(settings),
            cwd=ROOT,
            stdout=out,
            stderr=out,
            preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509 - no threads here yet
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def create_peer_reply_topic(settings: StackSettings) -> None:
    """The peer's reply topic, one partition like the bridge's own."""
    admin = AIOKafkaAdminClient(**settings.kafka.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(PEER_REPLY_TOPIC, 1, 1)])
    finally:
        await admin.close()


async def wait_answering(target: Target, request: bytes, timeout_s: float = 90) -> None:
    """Until a start request gets its 201 (the server, its Kafka clients and the consumer run)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if target.process.poll() is not None:
                raise RuntimeError(f"{target.name} exited while starting")
            with contextlib.suppress(OSError):
                connection = await load.connect(HOST, target.port)
                try:
                    status, _ = await connection.send(request)
                finally:
                    connection.close()
                if status == 201:
                    return
            await asyncio.sleep(0.2)


def _cpu_s(process: psutil.Process) -> float:
    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return float(times.user + times.system)
    return 0.0


class CpuMeter:
    """CPU seconds per role: the server under test, consumer, broker, database, load generator."""

    def __init__(self, consumer_pid: int) -> None:
        self._consumer = psutil.Process(consumer_pid)
        self._me = psutil.Process()

    def snapshot(self, server_pid: int) -> dict[str, float]:
        children = self._me.children(recursive=True)
        return {
            "server": _cpu_s(psutil.Process(server_pid)),
            "consumer": _cpu_s(self._consumer),
            "broker": sum(_cpu_s(p) for p in children if "tansu" in _name(p)),
            "db": sum(_cpu_s(p) for p in children if _name(p).startswith("postgres")),
            "load": time.process_time(),
        }


def _name(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return str(process.name())
    return ""


async def measure(
    target: Target, requests: list[bytes], meter: CpuMeter, clients: int, args: argparse.Namespace
) -> Row:
    before = meter.snapshot(target.process.pid)
    result = await load.closed_loop(
        HOST,
        target.port,
        requests,
        clients=clients,
        seconds=args.seconds,
        warmup_s=args.warmup_s,
        max_requests=args.max_requests,
    )
    after = meter.snapshot(target.process.pid)
    # The warm-up's CPU is in the difference too: spread over every answer, warm-up included.
    cpu = {role: (after[role] - before[role]) * 1000 / max(1, result.answered) for role in ROLES}
    return Row(clients, target.name, result, cpu)


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    cpu_head = "".join(f"{role:>9}" for role in ROLES)
    print(
        f"{'target':<21}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'answers':>9}"
        f"{'not 201':>8} | cpu ms/req:{cpu_head}{'total':>8}"
    )
    for row in rows:
        r = row.result
        bad = sum(n for status, n in r.statuses.items() if status != 201) + r.errors
        cpu = "".join(f"{row.cpu_ms[role]:>9.2f}" for role in ROLES)
        print(
            f"{row.target:<21}{r.rate:>8.0f}{r.percentile(0.5):>9.1f}{r.percentile(0.9):>9.1f}"
            f"{r.percentile(0.99):>9.1f}{len(r.latencies_ms):>9}{bad:>8} | {' ' * 11}{cpu}"
            f"{sum(row.cpu_ms.values()):>8.2f}"
        )
        for body in r.bodies:
            print(f"    e.g. {body!r}")


@contextlib.contextmanager
def py_spy(folder: Path | None, seconds: float, pids: dict[str, int]) -> Iterator[None]:
    """py-spy (if asked for) on each of `pids` for `seconds`: collapsed stacks in `folder`."""
    if folder is None:
        yield
        return
    if PY_SPY is None:
        sys.exit("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    options = ["--rate", "250", "--format", "raw", "--duration", str(math.ceil(seconds))]
    spies = [
        subprocess.Popen(
            [
                PY_SPY,
                "record",
                "--pid",
                str(pid),
                *options,
                "--output",
                str(folder / f"{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.wait(timeout=seconds + 30)
        print(f"py-spy collapsed stacks: {', '.join(str(folder / n) + '.txt' for n in pids)}")


@dataclass
class Servers:
    """The processes of one stack: the consumer and the HTTP servers, with their requests."""

    consumer: subprocess.Popen[bytes]
    targets: dict[str, Target]
    requests: dict[str, list[bytes]]
    meter: CpuMeter
    settings: StackSettings


@contextlib.asynccontextmanager
async def servers(
    names: tuple[str, ...], args: argparse.Namespace, logs: Path
) -> AsyncIterator[Servers]:
    """A fresh embedded stack, the consumer and the `names` servers, answering; stopped after.

    Their logs go to `<logs>-consumer.log`, `<logs>-bridge.log`, ...
    """
    commands = {
        BRIDGE: ["-m", "producer_tools", "bridge"],
        BARE: ["bench/_http_apps.py", "bare"],
        PEER: ["bench/_http_apps.py", "faststream-rpc"],
    }
    async with embedded_stack() as stack:
        await create_peer_reply_topic(stack)
        overrides = dict(item.split("=", 1) for item in args.set)
        base = stack.with_(bridge_access_log=False, **overrides)
        consumer = spawn(["-m", "consumer"], base, logs.with_name(f"{logs.name}-consumer.log"))
        targets: dict[str, Target] = {}
        try:
            for name in names:
                port = free_port()
                settings = base.with_(
                    bridge_port=port, base_uri=f"http://{HOST}:{port}/genesys/1/cs"
                )
                process = spawn(commands[name], settings, logs.with_name(f"{logs.name}-{name}.log"))
                targets[name] = Target(name, port, process)
            requests = {
                name: [
                    load.post_request(HOST, t.port, START.format(service_id=1000 + i), BODY)
                    for i in range(SERVICES)
                ]
                for name, t in targets.items()
            }
            for name in names:
                await wait_answering(targets[name], requests[name][0])
            yield Servers(consumer, targets, requests, CpuMeter(consumer.pid), base)
        finally:
            for target in targets.values():
                stop(target.process)
            stop(consumer)


async def closed_loops(args: argparse.Namespace, folder: Path) -> list[Row]:
    """Each concurrency in turn, each target in turn, each on a fresh stack: one table each.

    A fresh stack per measurement, because the embedded broker lists every record batch of a
    partition to answer a fetch (bench/README.md, soak.py "session 3"): on a shared stack each
    run paid for the batches every run before it left in the requests topic.
    """
    rows: list[Row] = []
    for clients in args.clients:
        batch = []
        for name in TARGETS:
            async with servers((name,), args, folder / f"closed-loop-{clients}-{name}") as up:
                target = up.targets[name]
                spied = args.py_spy if name == BRIDGE and clients == max(args.clients) else None
                pids = {"bridge": target.process.pid, "consumer": up.consumer.pid}
                with py_spy(spied, args.warmup_s + args.seconds, pids):
                    batch.append(await measure(target, up.requests[name], up.meter, clients, args))
        rows += batch
        print_table(f"{clients} concurrent client(s), closed loop", batch)
    return rows


@dataclass
class Paced:
    """The open-loop run: its row, and each process's CPU sampled through it."""

    row: Row
    cpu_samples: list[tuple[float, dict[str, float]]]
    """(`time.perf_counter()`, CPU seconds by role) every `CPU_SAMPLE_S`."""

    def seconds(self) -> list[tuple[list[float], dict[str, float]]]:
        """Each whole second of the measured window: the latencies of the requests due in it,
        and the cores each process used in it (CPU seconds over that second, interpolated)."""
        start = self.row.result.window_start
        by_second = self.row.result.by_second()
        bounds = [self._cpu_at(start + second) for second in range(len(by_second) + 1)]
        return [
            (latencies, {role: b[role] - a[role] for role in ROLES})
            for latencies, a, b in zip(by_second, bounds, bounds[1:], strict=False)
        ]

    def _cpu_at(self, when: float) -> dict[str, float]:
        samples = self.cpu_samples
        after = next((i for i, (t, _) in enumerate(samples) if t >= when), len(samples) - 1)
        (t0, c0), (t1, c1) = samples[max(0, after - 1)], samples[after]
        share = 0.0 if t1 == t0 else min(1.0, max(0.0, (when - t0) / (t1 - t0)))
        return {role: c0[role] + (c1[role] - c0[role]) * share for role in ROLES}


CPU_SAMPLE_S = 0.25
PREFILL_SOURCE = "urn:bench:prefill"


async def latency_run(args: argparse.Namespace, rate: float, folder: Path) -> Paced:
    """The bridge alone on a fresh stack, requests on a fixed schedule at `rate`, and every
    process's CPU sampled through the run (from a thread: the load generator's loop keeps time)."""
    async with servers((BRIDGE,), args, folder / "open-loop") as up:
        bridge = up.targets[BRIDGE]
        if args.prefill_batches:
            await produce_alone(up.settings, args.prefill_batches, source=PREFILL_SOURCE)
            where = f"event_source = '{PREFILL_SOURCE}'"
            await time_rows(up.settings.database_url, "tasks", args.prefill_batches, where=where)
            print(f"requests topic pre-filled: {args.prefill_batches} one-record batches, stored")
        samples: list[tuple[float, dict[str, float]]] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(CPU_SAMPLE_S):
                samples.append((time.perf_counter(), up.meter.snapshot(bridge.process.pid)))

        before = up.meter.snapshot(bridge.process.pid)
        samples.append((time.perf_counter(), before))
        sampler = threading.Thread(target=sample, name="cpu-sampler", daemon=True)
        sampler.start()
        spied = args.py_spy / "open-loop" if args.py_spy is not None else None
        pids = {"bridge": bridge.process.pid, "consumer": up.consumer.pid}
        try:
            with py_spy(spied, args.warmup_s + args.latency_s, pids):
                paced = await load.open_loop(
                    HOST,
                    bridge.port,
                    up.requests[BRIDGE],
                    rate=rate,
                    seconds=args.latency_s,
                    warmup_s=args.warmup_s,
                )
        finally:
            sampling.set()
            sampler.join()
        after = up.meter.snapshot(bridge.process.pid)
        samples.append((time.perf_counter(), after))
    cpu = {role: (after[role] - before[role]) * 1000 / max(1, paced.answered) for role in ROLES}
    return Paced(Row(0, BRIDGE, paced, cpu), samples)


def print_seconds(paced: Paced) -> None:
    """The open loop second by second, and how its last seconds compare with its first."""
    print("\nopen loop, second by second (requests by the second they were due; CPU in cores)")
    print(f"{'second':>6}{'p50 ms':>9}{'p99 ms':>9} | cores:{''.join(f'{r:>9}' for r in ROLES)}")
    seconds = paced.seconds()
    for number, (latencies, cores) in enumerate(seconds):
        p50, p99 = load.percentile(latencies, 0.5), load.percentile(latencies, 0.99)
        used = "".join(f"{cores[role]:>9.2f}" for role in ROLES)
        print(f"{number:>6}{p50:>9.1f}{p99:>9.1f} |       {used}")
    if len(seconds) < 4:  # two seconds at each end
        return

    def ends(part: list[tuple[list[float], dict[str, float]]]) -> tuple[float, float, float]:
        """p99 ms, the broker's cores, the bridge's and the consumer's cores, over `part`."""
        p99 = load.percentile([x for latencies, _ in part for x in latencies], 0.99)
        broker = sum(c["broker"] for _, c in part) / len(part)
        ours = sum(c["server"] + c["consumer"] for _, c in part) / len(part)
        return p99, broker, ours

    (p99_a, broker_a, ours_a), (p99_b, broker_b, ours_b) = ends(seconds[:2]), ends(seconds[-2:])
    print(
        f"ratio open loop, last 2 s / first 2 s: p99 {p99_b / p99_a:.2f}"
        f" ({p99_a:.1f} -> {p99_b:.1f} ms), the broker's CPU {broker_b / broker_a:.2f}"
        f" ({broker_a:.2f} -> {broker_b:.2f} cores), the bridge's and the consumer's"
        f" {ours_b / ours_a:.2f} ({ours_a:.2f} -> {ours_b:.2f})"
    )


async def main(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="ucs-bench-bridge-"))
    if args.set:
        print(f"settings: {dict(item.split('=', 1) for item in args.set)}")
    print(
        f"bridge benchmark: {os.cpu_count()} cores shared by every process (the load generator "
        f"too); {args.seconds:g} s per run after {args.warmup_s:g} s warm-up; logs in {folder}"
    )
    rows = await closed_loops(args, folder)
    best = max(r.result.rate for r in rows if r.target == BRIDGE)
    rate = args.latency_rate or max(1.0, round(best / 2))
    paced = await latency_run(args, rate, folder)
    print_table(
        f"open loop on a fresh stack, {rate:.0f} req/s offered (half the bridge's best: "
        f"{best / 2:.0f})",
        [paced.row],
    )
    print_seconds(paced)
    top = max(args.clients)
    at_top = {r.target: r.result.rate for r in rows if r.clients == top}
    print()
    print(f"ratio bridge/bare-fastapi @{top}: {at_top[BRIDGE] / at_top[BARE]:.2f}")
    print(f"ratio bridge/faststream-rpc-peer @{top}: {at_top[BRIDGE] / at_top[PEER]:.2f}")
    print(f"p99 @ half max ({rate:.0f} req/s): {paced.row.result.percentile(0.99):.1f} ms")
    cpu_top = {r.target: r.cpu_ms for r in rows if r.clients == top}
    server = ROLES[0]  # the target process's own CPU per request
    print(
        f"ratio bridge/bare-fastapi CPU per request @{top}:"
        f" {cpu_top[BRIDGE][server] / cpu_top[BARE][server]:.2f}"
        f" ({cpu_top[BRIDGE][server]:.2f} vs {cpu_top[BARE][server]:.2f} ms, the server process)"
    )
    half, full = sum(paced.row.cpu_ms.values()), sum(cpu_top[BRIDGE].values())
    print(
        f"ratio CPU per request @ half max / @{top} (every process): {half / full:.2f}"
        f" ({half:.2f} vs {full:.2f} ms)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients", type=int, nargs="+", default=[1, 16, 64], help="concurrencies to run"
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument("--warmup-s", type=float, default=1.0, help="unmeasured start of each run")
    parser.add_argument(
        "--max-requests", type=int, default=50_000, help="stop a run after this many answers"
    )
    parser.add_argument(
        "--latency-s", type=float, default=10.0, help="measured seconds of the open-loop run"
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="requests/s of the open-loop run (default: half of the bridge's best)",
    )
    parser.add_argument(
        "--prefill-batches",
        type=int,
        default=0,
        metavar="N",
        help="before the open loop, N start events in one-record batches, each its own produce,"
        " stored by the consumer before the load begins (what the broker's log length costs)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the consumer, bridge and peer, e.g. fetch_max_wait_ms=5 (repeatable)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the bridge and the consumer with py-spy during the bridge's top-concurrency "
        "run (collapsed stacks in DIR) and during the open loop (in DIR/open-loop)",
    )
    arguments = parser.parse_args()
    try:
        import uvloop  # the load generator's own CPU matters: every process shares the cores

        uvloop.run(main(arguments))
    except ImportError:
        asyncio.run(main(arguments))
