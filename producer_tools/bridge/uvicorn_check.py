"""What the bridge's protocol (`protocol.py`) needs of uvicorn's internals, checked in one place.

`BoundedHttpToolsProtocol` overrides methods of uvicorn's `HttpToolsProtocol` and reads its
per-connection state and its request cycles' state. pyproject.toml pins uvicorn to the minor
version it was tested with; `check_uvicorn()` runs when the bridge starts (and in a unit test)
and fails loudly, naming what is gone, instead of letting a bound quietly stop working.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

USED_INTERNALS = {
    "HttpToolsProtocol": (
        "connection_made", "connection_lost", "data_received", "send_400_response",
        "on_message_begin", "on_url", "on_header", "on_headers_complete", "on_message_complete",
        "on_response_complete", "loop", "transport", "client", "url", "cycle", "pipeline",
        "tasks", "connections", "server_state", "timeout_keep_alive_task",
    ),
    "RequestResponseCycle": (
        "response_started", "response_complete", "more_body", "disconnected", "message_event",
    ),
    "ServerState": ("default_headers",),
}  # fmt: skip
"""The uvicorn methods and attributes BoundedHttpToolsProtocol uses, by owner."""


class UvicornChangedError(RuntimeError):
    """The installed uvicorn lacks an internal the bridge's protocol relies on."""


class NullTransport(asyncio.Transport):
    """Just enough of a transport to take requests through a protocol (no socket)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _answer_204(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def missing_internals() -> list[str]:
    """`Owner.name` of every entry of USED_INTERNALS the installed uvicorn lacks (empty: all
    there), after taking one request through a stock HttpToolsProtocol (no socket)."""
    loop = asyncio.new_event_loop()
    try:
        state = ServerState()
        config = Config(_answer_204, ws="none", lifespan="off", log_config=None)
        protocol = HttpToolsProtocol(config, state, {}, _loop=loop)
        protocol.access_log = False  # this request is no one's: keep it out of the access log
        transport = NullTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nhost: check\r\n\r\n")
        if state.tasks:
            loop.run_until_complete(asyncio.wait(set(state.tasks)))
        owners = {
            "HttpToolsProtocol": protocol,
            "RequestResponseCycle": getattr(protocol, "cycle", None),
            "ServerState": state,
        }
        missing = [
            f"{owner}.{name}"
            for owner, names in USED_INTERNALS.items()
            for name in names
            if not hasattr(owners[owner], name)
        ]
        if not b"".join(transport.written).startswith(STATUS_LINE[204]):
            missing.append("HttpToolsProtocol answering a request (no 204 written)")
        protocol.connection_lost(None)
    finally:
        loop.close()
    return missing


def check_uvicorn() -> None:
    """Raise UvicornChangedError unless uvicorn has everything this module relies on."""
    if missing := missing_internals():
        raise UvicornChangedError(
            "the installed uvicorn lacks what producer_tools/bridge/protocol.py relies on: "
            f"{', '.join(missing)}; the bridge is tested with uvicorn 0.55 (pyproject.toml)"
        )
