"""The bridge's HTTP/1.1 connections, bounded: uvicorn's httptools protocol with limits.

Stock uvicorn (0.55) has no deadline for a request's header fields or body (its keep-alive
timer runs only after a response), no limit on the size or number of header fields, and its
`limit_concurrency` answers plain text after the headers, counting idle connections. So the
bridge serves with `BoundedHttpToolsProtocol` (`uvicorn.Config(http=protocol_class(bounds))`):

- at most `max_connections` open connections: one more is closed at once, unanswered;
- a request's header fields complete within `header_timeout_s` of the connection opening (on a
  kept-alive connection, which uvicorn closes after 5 idle seconds, of their first bytes): else
  408 (a connection that sent nothing is just closed, RFC 9112 9.5);
- its body completes within `body_timeout_s` of its header fields: else 408, and the app sees
  the client gone;
- a request target longer than `max_url_bytes` is a 414; more than `max_headers` header fields,
  or more than `max_header_bytes` of them, a 431;
- with `max_pending_requests` requests in progress, one more is a 503 with `Retry-After`
  (`/healthz` and `/readyz` excepted: probes must not fail because the bridge sheds load).

Each of these answers is written here, without the app, in the error body every other error
has (`schemas.replies.ErrorBody`), with `connection: close`. The limits are checked in the
parser's callbacks: raising there stops llhttp, httptools raises `HttpParserError`, and uvicorn
hands it to `send_400_response`, which answers with the reason recorded before raising.

This relies on uvicorn internals: `uvicorn_check.USED_INTERNALS` lists them, pyproject.toml pins
uvicorn to the tested minor version, and `uvicorn_check.check_uvicorn()` (run at start and by a
unit test) fails loudly when one of them is gone.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client import Counter
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from schemas.replies import ErrorBody, FieldError

log = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
"""Answered however many requests are in progress."""
HEAD_SLACK_BYTES = 1_024
"""Request line and framing, on top of the URL and header limits, in the raw-bytes check."""
LINGER_S = 2.0
"""After refusing a request whose client may still be sending, the connection is half-closed
and read (and dropped) this long before it closes: closing a socket with unread data resets
the connection, and the client could lose the answer (RFC 9112 9.6)."""
UVICORN_PARSER_ERROR = "Invalid HTTP request received."


class _OwnRejections(logging.Filter):
    """Hides uvicorn's parser-error warning while a bound of ours stopped the parser: the
    protocol logs what it refused instead (set and cleared around one synchronous call)."""

    active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self.active and record.getMessage() == UVICORN_PARSER_ERROR)


_OWN_REJECTIONS = _OwnRejections()


@dataclass(frozen=True, slots=True)
class Bounds:
    """The limits of one server (from `BridgeSettings`; see docs/http-api.md)."""

    max_connections: int
    max_pending_requests: int
    header_timeout_s: float
    body_timeout_s: float
    max_url_bytes: int
    max_headers: int
    max_header_bytes: int
    retry_after_s: int = 1


@dataclass(frozen=True, slots=True)
class _Answer:
    """An error answer of the protocol's own: status, message, extra headers, JSON body."""

    reason: str
    """Why (the `reason` label of `ucs_bridge_refused_total`)."""
    status: int
    message: str
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def of(
        cls, reason: str, status: int, message: str, field: str | None = None, problem: str = ""
    ) -> _Answer:
        errors = [FieldError(field=field, problem=problem)] if field is not None else []
        body = ErrorBody(message=message, errors=errors).model_dump_json().encode()
        return cls(reason, status, message, body)


@dataclass(frozen=True, slots=True)
class _Answers:
    """Every answer the protocol writes for a `Bounds`, rendered once."""

    header_timeout: _Answer
    body_timeout: _Answer
    url_too_long: _Answer
    too_many_headers: _Answer
    headers_too_large: _Answer
    busy: _Answer

    @classmethod
    def for_bounds(cls, b: Bounds) -> _Answers:
        busy = _Answer.of(
            "busy",
            503,
            f"The bridge is busy: {b.max_pending_requests} requests are in progress; retry in "
            f"{b.retry_after_s} s.",
        )
        return cls(
            header_timeout=_Answer.of(
                "header_timeout",
                408,
                "Request timeout: the request's header fields did not arrive within "
                f"{b.header_timeout_s:g} s.",
            ),
            body_timeout=_Answer.of(
                "body_timeout",
                408,
                "Request timeout: the request's body did not arrive within "
                f"{b.body_timeout_s:g} s.",
            ),
            url_too_long=_Answer.of(
                "url_too_long",
                414,
                f"URI too long: the request target is longer than {b.max_url_bytes} bytes.",
                "request-target",
                f"longer than {b.max_url_bytes} bytes",
            ),
            too_many_headers=_Answer.of(
                "too_many_headers",
                431,
                f"Request header fields too large: more than {b.max_headers} header fields.",
                "headers",
                f"more than {b.max_headers} header fields",
            ),
            headers_too_large=_Answer.of(
                "headers_too_large",
                431,
                "Request header fields too large: more than "
                f"{b.max_header_bytes} bytes of header fields.",
                "headers",
                f"more than {b.max_header_bytes} bytes",
            ),
            busy=_Answer(
                busy.reason,
                busy.status,
                busy.message,
                busy.body,
                ((b"retry-after", str(b.retry_after_s).encode()),),
            ),
        )


class _RejectError(Exception):
    """Raised in a parser callback to stop the parser; the answer is in `_rejected`."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bridge's bounds (use `protocol_class(bounds)`)."""

    bounds: ClassVar[Bounds]
    refusals: ClassVar[Counter | None] = None
    answers: ClassVar[_Answers]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._discarding = False
        """Refused and half-closed: what still comes is read and dropped until the close."""
        self._in_head = False
        """Between the first byte of a request and the end of its header fields."""
        self._raw_head_bytes = 0
        """Bytes of the unfinished head received before the current chunk."""
        self._chunk_bytes = 0
        """Bytes of the chunk being parsed."""
        self._rejected: _Answer | None = None

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows it too
        super().connection_made(transport)  # counts this connection in self.connections
        if len(self.connections) > self.bounds.max_connections:
            log.info("%s - connection closed: %d open", self._peer(), self.bounds.max_connections)
            if self.refusals is not None:
                self.refusals.labels("connections").inc()
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        self._chunk_bytes = len(data)
        super().data_received(data)
        if self._discarding or self.transport.is_closing():
            return
        # The deadlines are armed only for what this chunk left unfinished: a request that
        # arrives whole (the usual case) costs no timer.
        if self._in_head:
            # httptools hands a header to on_header only once the next one starts: a
            # never-ending header value is caught here, by the bytes of the unfinished head.
            self._raw_head_bytes += len(data)
            b = self.bounds
            if self._raw_head_bytes > b.max_url_bytes + b.max_header_bytes + HEAD_SLACK_BYTES:
                self._rejected = self.answers.headers_too_large
                self.send_400_response("")
            elif self._head_timer is None:  # a kept-alive connection's next request began
                self._arm_head_timer()
        elif self._body_timer is None:
            self._watch_body()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to any parser error; ours when a bound stopped the parser."""
        _OWN_REJECTIONS.active = False
        answer, self._rejected = self._rejected, None
        if answer is None:
            super().send_400_response(msg)
        elif self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined request while an answer is being written
        else:
            log.info("%s - %d %s", self._peer(), answer.status, answer.message)
            self._write(answer, linger=True)

    # --- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._raw_head_bytes = 0

    def on_url(self, url: bytes) -> None:  # called for every received piece of the URL
        super().on_url(url)
        if len(self.url) > self.bounds.max_url_bytes:
            self._reject(self.answers.url_too_long)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        # The header fields are counted here, once, not in on_header (a Python call per field:
        # a third of this protocol's cost); the bytes the parser held meanwhile are bounded
        # by the raw-bytes check in data_received.
        headers, b = self.headers, self.bounds
        if len(headers) > b.max_headers:
            self._reject(self.answers.too_many_headers)
        if self._raw_head_bytes + self._chunk_bytes > b.max_header_bytes and (
            sum(len(name) + len(value) + 4 for name, value in headers) > b.max_header_bytes
        ):  # the head's raw bytes bound its fields' bytes: count only when they might be over
            self._reject(self.answers.headers_too_large)
        idle = self.cycle is None or self.cycle.response_complete
        busy = idle and len(self.tasks) >= self.bounds.max_pending_requests
        if busy and self.url.split(b"?", 1)[0] not in EXEMPT_PATHS:
            self._reject(self.answers.busy)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request just started with its body unread, or the answer went out
        # before the body came in (the rest is read and dropped): its deadline runs.
        if self._body_timer is None and not self.transport.is_closing():
            self._watch_body()

    # --- the bounds

    def _reject(self, answer: _Answer) -> None:
        self._rejected = answer
        _OWN_REJECTIONS.active = True  # uvicorn logs a parser error, then calls send_400_response
        raise _RejectError(answer.status)

    def _queued(self) -> bool:
        return any(cycle is self.cycle for cycle, _ in self.pipeline)

    def _watch_body(self) -> None:
        """Arm the body deadline when the latest request's body is unfinished (a queued
        request's body is read, and its deadline runs, once it starts)."""
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not self._queued():
            self._arm_body_timer()

    def _arm_head_timer(self) -> None:
        self._cancel("_head_timer")
        self._head_timer = self.loop.call_later(self.bounds.header_timeout_s, self._head_expired)

    def _arm_body_timer(self) -> None:
        self._cancel("_body_timer")
        self._body_timer = self.loop.call_later(self.bounds.body_timeout_s, self._body_expired)

    def _cancel(self, name: str) -> None:
        timer: asyncio.TimerHandle | None = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _cancel_timers(self) -> None:
        self._cancel("_head_timer")
        self._cancel("_body_timer")
        self._cancel("_linger_timer")

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm_head_timer()  # a pipelined head: its deadline runs once this answer is out
            return
        if self._in_head:
            log.info("%s - 408 %s", self._peer(), self.answers.header_timeout.message)
            self._write(self.answers.header_timeout)
        else:  # not one byte of a request: nothing to answer
            self.transport.close()

    def _body_expired(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is None:
            return
        log.info("%s - 408 %s", self._peer(), self.answers.body_timeout.message)
        if cycle.response_started:
            self.transport.close()
        else:
            self._write(self.answers.body_timeout)
        if not cycle.response_complete:  # as connection_lost(): receive() -> http.disconnect
            cycle.disconnected = True
        cycle.message_event.set()

    def _write(self, answer: _Answer, *, linger: bool = False) -> None:
        """Write an answer of ours and close; `linger`: half-close first, and drop what the
        client still sends for LINGER_S (the rest of the request is never parsed)."""
        if self.refusals is not None:
            self.refusals.labels(answer.reason).inc()
        out = [STATUS_LINE[answer.status]]
        for name, value in (*self.server_state.default_headers, *answer.headers):
            out += [name, b": ", value, b"\r\n"]
        out += [
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(answer.body),
            b"connection: close\r\n\r\n",
            answer.body,
        ]
        self.transport.write(b"".join(out))
        if linger and self.transport.can_write_eof():
            self._discarding = True
            self._cancel_timers()
            self.transport.write_eof()  # the client reads the answer, then sees the end
            self._linger_timer = self.loop.call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"


def protocol_class(
    bounds: Bounds, refusals: Counter | None = None
) -> type[BoundedHttpToolsProtocol]:
    """A protocol class with these bounds, for `uvicorn.Config(http=...)`; `refusals` counts
    its own answers and closed connections by reason."""
    uvicorn_log = logging.getLogger("uvicorn.error")
    if _OWN_REJECTIONS not in uvicorn_log.filters:
        uvicorn_log.addFilter(_OWN_REJECTIONS)
    attributes = {"bounds": bounds, "answers": _Answers.for_bounds(bounds), "refusals": refusals}
    return type("BridgeHttpProtocol", (BoundedHttpToolsProtocol,), attributes)
