"""Logs (text or JSON lines, rate-limited reports) and W3C trace context, with no I/O."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from observability import tracing
from observability.logs import RateLimitedLog, configure, fields
from observability.settings import LogSettings

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_logs_carry_the_structured_fields_one_object_per_line(restore_logging: object) -> None:
    out = io.StringIO()
    configure(LogSettings(format="json", level="INFO"), "consumer", out)
    logging.getLogger("ucs.test").info(
        "rejected %s", "e-1", extra=fields(event_id="e-1", partition=2, offset=41, task_id=None)
    )
    logging.getLogger("ucs.test").debug("not at INFO")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    line = orjson.loads(lines[0])
    assert line["message"] == "rejected e-1"
    assert (line["level"], line["process"], line["logger"]) == ("INFO", "consumer", "ucs.test")
    assert (line["event_id"], line["partition"], line["offset"]) == ("e-1", 2, 41)
    assert "task_id" not in line
    assert line["time"].endswith("+00:00")


def test_text_logs_show_the_fields_as_key_values(restore_logging: object) -> None:
    out = io.StringIO()
    configure(LogSettings(format="text", level="DEBUG"), "bridge", out)
    logging.getLogger("ucs.test").warning("dead-lettered", extra=fields(offset=7))
    assert out.getvalue().rstrip().endswith("ucs.test: dead-lettered [offset=7]")


def test_a_flood_of_reports_is_logged_at_the_rate_limit_and_summarised(
    restore_logging: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = io.StringIO()
    configure(LogSettings(format="json"), "consumer", out)
    now = [1000.0]
    monkeypatch.setattr("observability.logs.time.monotonic", lambda: now[0])
    limited = RateLimitedLog(logging.getLogger("ucs.test"), per_minute=3)
    written = [limited.log(logging.WARNING, "rejection", "rejected %d", n) for n in range(10)]
    assert written == [True] * 3 + [False] * 7
    assert limited.log(logging.WARNING, "dead_letter", "other kinds have their own budget")
    now[0] += 61
    assert limited.log(logging.WARNING, "rejection", "a new minute")
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    summary = [line for line in lines if line.get("suppressed")]
    assert summary == [summary[0]]
    assert (summary[0]["kind"], summary[0]["suppressed"]) == ("rejection", 7)
    assert len(lines) == 3 + 1 + 1 + 1


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (PARENT, True),
        (PARENT.upper(), True),
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", False),
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", False),
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", False),
        (PARENT + "-extra", False),
        ("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future", True),
        ("garbage", False),
        (None, False),
    ],
)
def test_only_well_formed_traceparents_travel(value: str | None, valid: bool) -> None:
    assert (tracing.valid_traceparent(value) is not None) is valid


def test_trace_context_is_read_from_kafka_headers_with_or_without_the_ce_prefix() -> None:
    assert tracing.from_kafka_headers([("ce_traceparent", PARENT.encode())]) == {
        "traceparent": PARENT
    }
    found = tracing.from_kafka_headers(
        [("traceparent", PARENT.encode()), ("tracestate", b"vendor=1"), ("x", None)]
    )
    assert found == {"traceparent": PARENT, "tracestate": "vendor=1"}
    assert tracing.from_kafka_headers([("tracestate", b"vendor=1")]) == {}


def test_without_an_exporter_spans_are_free_and_no_headers_are_invented() -> None:
    with tracing.span(
        "anything", kind="server", parent={"traceparent": PARENT}, attributes={"a": 1}
    ):
        assert tracing.current_headers() == {}
