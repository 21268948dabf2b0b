"""A light HTTP/1.1 load generator for the bench scripts: keep-alive connections, no HTTP library.

A general-purpose client (httpx) costs more CPU per request than the FastAPI handler it measures:
on a 2-core machine the load generator would be the bottleneck and every server would look
alike. This one writes a pre-built request on an asyncio Protocol and reads back the status line,
Content-Length and body, nothing else (about 15 us of CPU per request on uvloop).

- `closed_loop(...)`: `clients` connections, each sending its next request when the previous one
  is answered (requests/s at a concurrency).
- `open_loop(...)`: requests sent on a fixed schedule whatever the answers (latency at a rate).
  Latency runs from the *scheduled* time, so a stalled server cannot hide its queue (no
  coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)", re.IGNORECASE)


def post_request(host: str, port: int, path: str, body: bytes) -> bytes:
    """The bytes of one keep-alive `POST path` with a JSON body."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request in flight at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.WriteTransport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.WriteTransport", transport)  # uvloop's: not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection closed: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buffer[:end])
        match = _CONTENT_LENGTH.search(head)
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(self._buffer) < total:
            return
        body = bytes(self._buffer[end + 4 : total])
        del self._buffer[:total]
        waiter.set_result((int(head[9:12]), body))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """Status and body of the answer to `request`."""
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No garbage collection during a run: a full one in the load generator (whose heap holds
    every latency measured so far) would stall the clock and show up as the server's latency."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def connect(host: str, port: int) -> _Connection:
    _, connection = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return connection


@dataclass
class Result:
    """What one load run measured: completions inside the window and their latencies (ms)."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    answered: int = 0
    """Every answer, warm-up included (for CPU per request over the whole run)."""
    bodies: list[bytes] = field(default_factory=list)
    """The first few bodies of answers that were not the expected status (for the report)."""
    sent_s: list[float] = field(default_factory=list)
    """Open loop only: when each measured request was due, in seconds from the window's start
    (in the order of `latencies_ms`), for a second-by-second view of the run."""
    window_start: float = 0.0
    """Open loop only: the `time.perf_counter()` at which the measured window began."""

    def record(self, status: int, body: bytes, latency_ms: float, expected: int) -> None:
        self.latencies_ms.append(latency_ms)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != expected and len(self.bodies) < 3:
            self.bodies.append(body[:300])

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)

    def by_second(self) -> list[list[float]]:
        """Open loop: the latencies of the requests due in each whole second of the window."""
        seconds: list[list[float]] = [[] for _ in range(max(1, round(self.seconds)))]
        for sent_s, latency_ms in zip(self.sent_s, self.latencies_ms, strict=True):
            seconds[min(len(seconds) - 1, int(sent_s))].append(latency_ms)
        return seconds


def percentile(latencies_ms: Sequence[float], fraction: float) -> float:
    """The `fraction` percentile of `latencies_ms` (nan when empty)."""
    if not latencies_ms:
        return float("nan")
    ordered = sorted(latencies_ms)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def closed_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    clients: int,
    seconds: float,
    warmup_s: float,
    max_requests: int,
    expected: int = 201,
) -> Result:
    """`clients` connections sending back to back; answers counted from `warmup_s` on.

    Connection i sends `requests[i % len(requests)]` every time. Ends after `seconds` of
    measuring or `max_requests` measured answers, whichever comes first.
    """
    connections = [await connect(host, port) for _ in range(clients)]
    began = time.perf_counter()  # not loop.time(): uvloop's counts whole milliseconds
    measure_from = began + warmup_s
    deadline = measure_from + seconds
    result = Result(seconds=0.0)
    done = asyncio.Event()

    async def one(connection: _Connection, request: bytes) -> None:
        while not done.is_set():
            sent = time.perf_counter()
            try:
                status, body = await connection.send(request)
            except ConnectionError:
                result.errors += 1
                return
            answered = time.perf_counter()
            if answered >= deadline:
                done.set()
                return
            result.answered += 1
            if sent >= measure_from:
                result.record(status, body, (answered - sent) * 1000, expected)
                if len(result.latencies_ms) >= max_requests:
                    done.set()

    try:
        with _no_collection():
            await asyncio.gather(
                *(one(c, requests[i % len(requests)]) for i, c in enumerate(connections))
            )
    finally:
        for connection in connections:
            connection.close()
    result.seconds = min(time.perf_counter(), deadline) - measure_from
    return result


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    seconds: float,
    warmup_s: float,
    max_connections: int = 256,
    expected: int = 201,
    timeout_s: float = 30.0,
) -> Result:
    """Requests at `rate` per second for `warmup_s + seconds`; latencies of those after warm-up.

    The requests sent are `requests` in turn. A request due goes into a queue that one worker
    per keep-alive connection drains; while requests wait there, connections are added (up to
    `max_connections`), and the wait counts in their latency.
    """
    due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    result = Result(seconds=seconds)
    workers: list[asyncio.Task[None]] = []
    measure_from = 0.0

    async def worker() -> None:
        connection = await connect(host, port)
        try:
            while True:
                scheduled, request = await due.get()
                try:
                    status, body = await connection.send(request)
                except ConnectionError:
                    result.errors += 1
                    due.task_done()
                    return
                answered = time.perf_counter()
                result.answered += 1
                if scheduled >= measure_from:
                    result.record(status, body, (answered - scheduled) * 1000, expected)
                    result.sent_s.append(scheduled - measure_from)
                due.task_done()
        finally:
            connection.close()

    workers += [asyncio.create_task(worker()) for _ in range(min(32, max_connections))]
    await asyncio.sleep(0.1)  # connected
    began = time.perf_counter()
    measure_from = result.window_start = began + warmup_s
    total = int(rate * (warmup_s + seconds))
    turns = itertools.cycle(requests)
    try:
        with _no_collection():
            sent = 0
            while sent < total:
                now = time.perf_counter()
                for _ in range(min(total, int((now - began) * rate) + 1) - sent):
                    due.put_nowait((began + sent / rate, next(turns)))
                    sent += 1
                if due.qsize() > 1 and len(workers) < max_connections:
                    workers.append(asyncio.create_task(worker()))
                await asyncio.sleep(max(0.0, began + sent / rate - time.perf_counter()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await due.join()
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return result
