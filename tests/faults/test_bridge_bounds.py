"""The bridge stays bounded, proven against a real bridge process (`python -m producer_tools
bridge`) with small bounds and no consumer, over raw sockets:

- 3,000 connections that never finish their header fields (and 200 that send nothing) are all
  closed after the header deadline (408 for the first, nothing for the others) while a normal
  request is answered;
- a connection beyond the connection cap is closed at once, and served once another went;
- with the pending-request cap reached, one more request is a 503 with Retry-After and the
  error body (health checks excepted), and requests are taken again once some finished;
- too many or too large header fields are a 431, a long request target a 414, a body that does
  not arrive in time a 408, each with the error body and `connection: close`.
(The default bounds meet hostile input in test_bridge_hostile.py.)
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from schemas.replies import EXCEPTION_CLASS
from tests import servers
from tests.faults.bridge_harness import START, BridgeProcess, bridge_overrides
from tests.faults.harness import Report
from tests.integration.test_bridge import published_ids, published_requests
from tests.servers import StackSettings, create_topics

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

HEADER_TIMEOUT_S = 10.0
"""The production default: the flood opens well within it, so it is on while a request runs."""
BODY_TIMEOUT_S = 2.0
MAX_PENDING = 5
MAX_HEADERS = 20
MAX_HEADER_BYTES = 4096
MAX_URL_BYTES = 1024
REPLY_TIMEOUT_MS = 10_000
FLOOD = 3000
SILENT = 200
SLACK_S = 30.0
"""How long past a deadline the tests wait for it to take effect (a loaded two-core machine)."""

BOUNDS = {
    "bridge_header_timeout_ms": int(HEADER_TIMEOUT_S * 1000),
    "bridge_body_timeout_ms": int(BODY_TIMEOUT_S * 1000),
    "bridge_max_pending_requests": MAX_PENDING,
    "bridge_max_connections": FLOOD + SILENT + 500,
    "bridge_max_headers": MAX_HEADERS,
    "bridge_max_header_bytes": MAX_HEADER_BYTES,
    "bridge_max_url_bytes": MAX_URL_BYTES,
    "bridge_reply_timeout_ms": REPLY_TIMEOUT_MS,  # no consumer: every POST waits this long
}


@dataclass
class Served:
    settings: StackSettings
    bridge: BridgeProcess

    @property
    def port(self) -> int:
        return self.settings.bridge.port


@asynccontextmanager
async def _bridge(settings: StackSettings, log: Path) -> AsyncIterator[Served]:
    bridge = BridgeProcess(settings, log)
    bridge.start()
    try:
        await bridge.wait_ready()
        yield Served(settings, bridge)
        assert bridge.alive, bridge.log_tail()
        assert "Exception in ASGI application" not in bridge.log_text()
        assert "unexpected error" not in bridge.log_text()
    finally:
        bridge.kill()


@pytest.fixture(scope="module")
async def served(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    base = servers.make_settings(kafka_bootstrap, database_url)
    await create_topics(base)
    settings = base.with_(**bridge_overrides(base, **BOUNDS))
    async with _bridge(settings, tmp_path_factory.mktemp("bounds") / "bridge.log") as served:
        yield served


# --- raw HTTP/1.1 over asyncio streams ---------------------------------------------------------


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := await reader.read(65_536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def _error(answer: bytes, status: int) -> dict[str, Any]:
    """The answer's error body, once its status, type and `connection: close` are checked."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), answer[:300]
    lowered = head.lower()
    assert b"content-type: application/json\r\n" in lowered, head
    assert b"connection: close" in lowered, head
    error: dict[str, Any] = orjson.loads(body)
    assert set(error) == {"message", "exception", "errors"}, error
    assert error["exception"] == EXCEPTION_CLASS
    assert error["message"]
    return error


def _json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """`_error` for an httpx response."""
    head = b"HTTP/1.1 %d -\r\n" % response.status_code + b"".join(
        b"%s: %s\r\n" % (name, value) for name, value in response.headers.raw
    )
    return _error(head + b"\r\n" + response.content, status)


async def _exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection; everything the server sends until it closes
    (nothing when it closes before reading the request)."""
    reader, writer = await _open(port)
    try:
        writer.write(request)
        await writer.drain()
        return await _until_closed(reader)
    except (ConnectionResetError, BrokenPipeError):
        return b""
    finally:
        writer.close()


def _request(target: bytes = b"/healthz", headers: list[bytes] | None = None) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: bridge", b"Connection: close"]
    return b"\r\n".join([*lines, *(headers or []), b"", b""])


# --- the header deadline under a flood ---------------------------------------------------------


@dataclass
class Stalled:
    """One connection of the flood: when it opened, what it got, when the server closed it."""

    partial: bool
    opened_s: float
    answer: bytes = b""
    closed_s: float | None = None


async def _stall(
    port: int, partial: bool, opening: asyncio.Semaphore, opened: list[int]
) -> Stalled:
    async with opening:  # paced while opening; the connections stay open after
        reader, writer = await _open(port)
        stalled = Stalled(partial, time.monotonic())
        if partial:
            writer.write(b"POST " + START.encode() + b" HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
            await writer.drain()
    opened.append(1)
    try:
        stalled.answer = await _until_closed(reader)
        stalled.closed_s = time.monotonic()
    finally:
        writer.close()
    return stalled


async def test_3000_connections_that_never_finish_their_headers_are_closed_after_the_deadline(
    served: Served, report: Report
) -> None:
    opening, opened = asyncio.Semaphore(100), []
    flood = [
        asyncio.create_task(_stall(served.port, i >= SILENT, opening, opened))
        for i in range(FLOOD + SILENT)
    ]
    async with asyncio.timeout(HEADER_TIMEOUT_S):
        while len(opened) < len(flood):
            await asyncio.sleep(0.05)
    async with httpx.AsyncClient(base_url=served.bridge.base_url, timeout=10) as client:
        began = time.monotonic()
        health = await client.get("/healthz")
        read = await client.get("/genesys/1/cs/service/1/tasks/1")  # through the database
        latency_s = time.monotonic() - began
    assert (health.status_code, read.status_code) == (200, 404), (health.text, read.text)
    assert not any(task.done() for task in flood)  # answered while all of them were open

    async with asyncio.timeout(HEADER_TIMEOUT_S + SLACK_S):
        stalled = await asyncio.gather(*flood)
    partial = [s for s in stalled if s.partial]
    assert len(partial) == FLOOD
    for connection in partial:
        assert "header fields did not arrive" in _error(connection.answer, 408)["message"]
    assert all(s.answer == b"" for s in stalled if not s.partial)  # sent nothing, got nothing
    held = [s.closed_s - s.opened_s for s in stalled if s.closed_s is not None]
    assert len(held) == len(stalled)
    # Closed by the deadline, not at once (the server's loop clock may lag a busy iteration).
    assert min(held) >= HEADER_TIMEOUT_S / 2
    report.add(
        f"faults: bridge-header-flood connections={len(stalled)} (partial={FLOOD}"
        f" silent={SILENT}) deadline={HEADER_TIMEOUT_S:g}s held-max={max(held):.1f}s"
        f" two-requests-during-the-flood={latency_s * 1000:.0f}ms"
    )
    assert (await _exchange(served.port, _request())).startswith(b"HTTP/1.1 200 ")


# --- header fields, request target, body -------------------------------------------------------


async def test_header_fields_and_a_request_target_over_the_bounds_get_431_and_414(
    served: Served,
) -> None:
    port = served.port
    at_most = [b"X-%d: v" % i for i in range(MAX_HEADERS - 2)]  # + Host and Connection
    assert (await _exchange(port, _request(headers=at_most))).startswith(b"HTTP/1.1 200 ")
    many = await _exchange(port, _request(headers=[*at_most, b"X-One-More: v"]))
    assert f"more than {MAX_HEADERS} header fields" in _error(many, 431)["message"]

    large = await _exchange(port, _request(headers=[b"X-Large: " + b"l" * MAX_HEADER_BYTES]))
    assert f"more than {MAX_HEADER_BYTES} bytes" in _error(large, 431)["message"]
    endless = await _exchange(port, b"GET /healthz HTTP/1.1\r\nX-Endless: " + b"e" * 20_000)
    assert f"more than {MAX_HEADER_BYTES} bytes" in _error(endless, 431)["message"]

    longest = b"/healthz?" + b"q" * (MAX_URL_BYTES - len(b"/healthz?"))
    assert (await _exchange(port, _request(longest))).startswith(b"HTTP/1.1 200 ")
    too_long = await _exchange(port, _request(longest + b"q"))
    error = _error(too_long, 414)
    assert f"longer than {MAX_URL_BYTES} bytes" in error["message"]
    assert error["errors"] == [
        {"field": "request-target", "problem": f"longer than {MAX_URL_BYTES} bytes"}
    ]


async def test_a_body_that_does_not_arrive_in_time_is_a_408_and_nothing_is_published(
    served: Served,
) -> None:
    key = f"slow-body-{uuid.uuid4().hex}"
    head = (
        f"POST {START} HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    answer = await _exchange(served.port, head + b'{"state_id": ')
    assert "body did not arrive" in _error(answer, 408)["message"]
    assert key not in await published_ids(served.settings)


async def test_a_keep_alive_connection_gets_a_408_when_its_next_headers_stall(
    served: Served,
) -> None:
    reader, writer = await _open(served.port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
        first = await reader.readuntil(b'"alive"}')
        assert first.startswith(b"HTTP/1.1 200 "), first
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bri")
        await writer.drain()
        async with asyncio.timeout(HEADER_TIMEOUT_S + SLACK_S):
            answer = await _until_closed(reader)
    finally:
        writer.close()
    assert "header fields did not arrive" in _error(answer, 408)["message"]


# --- pending requests --------------------------------------------------------------------------


async def test_beyond_the_pending_request_cap_a_request_is_a_503_with_retry_after(
    served: Served,
) -> None:
    keys = [f"pending-{uuid.uuid4().hex}" for _ in range(MAX_PENDING)]
    async with httpx.AsyncClient(base_url=served.bridge.base_url, timeout=30) as client:

        async def post(key: str | None = None) -> httpx.Response:
            headers = {"Content-Type": "application/json"}
            if key is not None:
                headers["Idempotency-Key"] = key
            return await client.post(START, content=b"{}", headers=headers)

        waiting = [asyncio.create_task(post(key)) for key in keys]
        await published_requests(served.settings, *keys)  # each waits for a reply now
        assert not any(task.done() for task in waiting)

        refused = await post()
        error = _json_error(refused, 503)
        assert f"{MAX_PENDING} requests are in progress" in error["message"]
        assert refused.headers["retry-after"] == "1"
        read = await client.get("/genesys/1/cs/service/1/tasks/1")
        assert read.status_code == 503  # every route is counted ...
        assert (await client.get("/healthz")).status_code == 200  # ... but the health checks
        assert (await client.get("/readyz")).status_code == 200
        assert not any(task.done() for task in waiting)  # all five were still in progress

        answers = await asyncio.gather(*waiting)
        assert [a.status_code for a in answers] == [202] * MAX_PENDING  # no reply in time
        async with asyncio.timeout(SLACK_S):  # in progress no more: taken again
            while (again := await post()).status_code == 503:
                await asyncio.sleep(0.1)
        assert again.status_code == 202, again.text


# --- connections -------------------------------------------------------------------------------


async def test_a_connection_beyond_the_cap_is_closed_at_once_and_one_is_taken_once_another_goes(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cap = 20
    base = servers.make_settings(kafka_bootstrap, database_url)
    settings = base.with_(
        **bridge_overrides(base, bridge_max_connections=cap, bridge_header_timeout_ms=120_000)
    )
    log = tmp_path_factory.mktemp("connections") / "bridge.log"
    async with _bridge(settings, log) as served:
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(cap):  # each served once (so counted), then idle mid-request
                reader, writer = await _open(served.port)
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
                assert (await reader.readuntil(b'"alive"}')).startswith(b"HTTP/1.1 200 ")
                writer.write(b"GET /healthz HTTP/1.1\r\n")  # its next request never ends
                held.append((reader, writer))

            beyond = await _exchange(served.port, _request())
            assert beyond == b""  # closed unanswered: no room for it

            held.pop()[1].close()
            async with asyncio.timeout(SLACK_S):  # once the server saw it go
                while not (answer := await _exchange(served.port, _request())):
                    await asyncio.sleep(0.05)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        finally:
            for _, writer in held:
                writer.close()
        assert re.search(r"connection closed: \d+ open", served.bridge.log_text())
