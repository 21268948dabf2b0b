"""Benchmark: the HTTP bridge end to end (HTTP -> Kafka -> consumer -> PostgreSQL -> reply -> HTTP).

    .venv/bin/python bench/bridge.py [--requests 500] [--clients 64] [--seconds 10]

Starts the embedded stack (tansu broker, PostgreSQL with fsync off, migrations, topics), then the
real processes: a consumer (`python -m consumer`) and a bridge (`python -m producer_tools bridge`,
uvicorn + uvloop + httptools, access log off) on a free port. Measures with httpx:
- round-trip latency of `POST .../tasks/start` (the corrected reference body) at 1 client, and of
  `GET` on the Location it returns;
- requests/s and latency with `--clients` concurrent clients for `--seconds`.
Everything shares this machine's cores (load generator included): read the figures as a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._stack import BODY, embedded_stack
from producer_tools.embedded import free_port
from schemas.settings import Settings
from tests.processes import settings_env

ROOT = Path(__file__).resolve().parent.parent
START = "/genesys/1/cs/services/21456878/tasks/start"
HEADERS = {"Content-Type": "application/json"}


def spawn(args: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args], env=settings_env(settings), cwd=ROOT, stdout=out, stderr=out
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def wait_ready(client: httpx.AsyncClient, bridge: subprocess.Popen[bytes]) -> None:
    """Until /readyz answers 200 and a start request gets its 201 (the consumer joined)."""
    async with asyncio.timeout(60):
        while True:
            if bridge.poll() is not None:
                raise RuntimeError("the bridge exited while starting")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    created = await client.post(START, content=BODY, headers=HEADERS)
                    if created.status_code == 201:
                        return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def one_client(client: httpx.AsyncClient, count: int) -> tuple[list[float], list[float]]:
    """Sequential POSTs, then a GET of each Location: their latencies in ms."""
    posts, gets, locations = [], [], []
    for _ in range(count):
        began = time.perf_counter()
        response = await client.post(START, content=BODY, headers=HEADERS)
        posts.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 201, response.text
        locations.append(response.headers["location"])
    for location in locations:
        began = time.perf_counter()
        response = await client.get(location, params={"extensions": "*"})
        gets.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, response.text
    return posts, gets


async def many_clients(
    base_url: str, clients: int, seconds: float
) -> tuple[int, float, list[float], dict[int, int]]:
    """`clients` loops posting for `seconds`: answered count, elapsed, latencies, statuses.

    One httpx client (one connection) per loop, made before the clock starts: a single client
    pooling 64 connections spends most of its time in its own pool (~65 req/s on this machine
    against a bare FastAPI /healthz, where one client per loop does ~500).
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pool = [httpx.AsyncClient(base_url=base_url, timeout=30) for _ in range(clients)]
    for client in pool:
        assert (await client.get("/healthz")).status_code == 200
    deadline = time.perf_counter() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            response = await client.post(START, content=BODY, headers=HEADERS)
            latencies.append((time.perf_counter() - began) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    began = time.perf_counter()
    try:
        await asyncio.gather(*(loop(client) for client in pool))
    finally:
        await asyncio.gather(*(client.aclose() for client in pool))
    return len(latencies), time.perf_counter() - began, latencies, statuses


async def main(requests: int, clients: int, seconds: float) -> None:
    folder = Path(tempfile.mkdtemp(prefix="ucs-bench-bridge-"))
    async with embedded_stack() as stack:
        port = free_port()
        settings = stack.model_copy(
            update={
                "bridge_port": port,
                "bridge_access_log": False,
                "base_uri": f"http://127.0.0.1:{port}/genesys/1/cs",
            }
        )
        consumer = spawn(["-m", "consumer"], settings, folder / "consumer.log")
        bridge = spawn(["-m", "producer_tools", "bridge"], settings, folder / "bridge.log")
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                await wait_ready(client, bridge)
                posts, gets = await one_client(client, requests)
            answered, elapsed, loaded, statuses = await many_clients(base_url, clients, seconds)
        finally:
            stop(bridge)
            stop(consumer)
    rows = [
        ("POST start, 1 client", len(posts), posts, f"{len(posts) / (sum(posts) / 1000):.0f}"),
        ("GET task, 1 client", len(gets), gets, f"{len(gets) / (sum(gets) / 1000):.0f}"),
        (f"POST start, {clients} clients", answered, loaded, f"{answered / elapsed:.0f}"),
    ]
    print(f"\nbridge benchmark ({os.cpu_count()} cores shared by every process; logs in {folder})")
    print(f"{'measure':<26}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'req/s':>8}")
    for name, count, samples, rate in rows:
        p50, p99 = statistics.median(samples), percentile(samples, 0.99)
        print(f"{name:<26}{count:>9}{p50:>9.1f}{p99:>9.1f}{max(samples):>9.1f}{rate:>8}")
    print(f"statuses under load: {dict(sorted(statuses.items()))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests at 1 client")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of the load phase")
    arguments = parser.parse_args()
    try:
        import uvloop  # the load generator's own CPU matters: every process shares the cores

        uvloop.run(main(arguments.requests, arguments.clients, arguments.seconds))
    except ImportError:
        asyncio.run(main(arguments.requests, arguments.clients, arguments.seconds))
