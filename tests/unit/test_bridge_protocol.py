"""The bridge's bounded HTTP protocol, held to the installed uvicorn (no socket here: the bounds
against a real server are proven in tests/faults/test_bridge_bounds.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from producer_tools.bridge.protocol import Bounds, protocol_class
from producer_tools.bridge.uvicorn_check import (
    USED_INTERNALS,
    NullTransport,
    UvicornChangedError,
    check_uvicorn,
    missing_internals,
)
from schemas.replies import EXCEPTION_CLASS

BOUNDS = Bounds(
    max_connections=10,
    max_pending_requests=10,
    header_timeout_s=30,
    body_timeout_s=30,
    max_url_bytes=100,
    max_headers=10,
    max_header_bytes=1024,
)


def test_the_installed_uvicorn_has_every_internal_the_bridge_protocol_uses() -> None:
    assert missing_internals() == []
    check_uvicorn()  # what the bridge runs at start


@pytest.mark.parametrize(
    ("owner", "name"),
    [("HttpToolsProtocol", "on_url"), ("HttpToolsProtocol", "send_400_response")],
)
def test_the_check_fails_loudly_naming_an_internal_that_is_gone(
    monkeypatch: pytest.MonkeyPatch, owner: str, name: str
) -> None:
    assert name in USED_INTERNALS[owner]
    monkeypatch.delattr(HttpToolsProtocol, name)
    with pytest.raises(UvicornChangedError, match=rf"{owner}\.{name}\b.*uvicorn 0\.55"):
        check_uvicorn()


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _exchange(request: bytes) -> bytes:
    """What the bounded protocol writes for `request`, served by an app that answers 200."""
    state = ServerState()
    config = Config(_ok, ws="none", lifespan="off", log_config=None)
    protocol = protocol_class(BOUNDS)(config, state, {}, _loop=asyncio.get_running_loop())
    transport = NullTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    if state.tasks:
        await asyncio.wait(set(state.tasks))
    protocol.connection_lost(None)
    return b"".join(transport.written)


def _error(answer: bytes, status: int) -> dict[str, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    assert b"content-type: application/json" in head
    assert b"connection: close" in head
    error: dict[str, Any] = orjson.loads(body)
    assert set(error) == {"message", "exception", "errors"}
    assert error["exception"] == EXCEPTION_CLASS
    return error


async def test_the_bounded_protocol_serves_a_request_within_its_bounds() -> None:
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(9))  # 10 with Host
    answer = await _exchange(b"GET /" + b"a" * 99 + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    assert answer.endswith(b"\r\n2\r\nok\r\n0\r\n\r\n")  # chunked: no Content-Length


async def test_the_bounded_protocol_answers_its_own_json_errors_on_the_installed_uvicorn() -> None:
    long_url = await _exchange(b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert "longer than 100 bytes" in _error(long_url, 414)["message"]
    headers = b"".join(b"X-%d: v\r\n" % i for i in range(10))
    many = await _exchange(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert "more than 10 header fields" in _error(many, 431)["message"]
    large = await _exchange(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 1100 + b"\r\n\r\n")
    assert "more than 1024 bytes" in _error(large, 431)["message"]
    endless = await _exchange(b"GET / HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"e" * 3000)
    assert "more than 1024 bytes" in _error(endless, 431)["message"]
