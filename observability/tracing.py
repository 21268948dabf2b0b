"""W3C trace context across HTTP and Kafka, and optional OpenTelemetry spans.

Without anything installed: `traceparent` / `tracestate` travel as they came (validated, never
invented) from the HTTP request to the Kafka request and onto its reply records (the HTTP
response does not carry them: W3C Trace Context defines no response header). With the `otel`
extra installed and `OTEL_EXPORTER_OTLP_ENDPOINT` set, each process also exports spans (`setup`
configures the SDK from the standard `OTEL_*` variables).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

log = logging.getLogger(__name__)

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
TRACE_HEADERS: Final = (TRACEPARENT, TRACESTATE)
_TRACEPARENT = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
_TRACESTATE_MAX = 512  # W3C: vendors must propagate at least 512 characters
_tracer: Any = None


def valid_traceparent(value: str | None) -> str | None:
    """The header if it is a well-formed W3C traceparent (version 00 or later), else None."""
    if value is None:
        return None
    value = value.strip().lower()
    if len(value) < 55 or not _TRACEPARENT.match(value):
        return None
    if value.startswith("00-") and len(value) != 55:
        return None
    return value


def valid_tracestate(value: str | None) -> str | None:
    """The header if it is printable ASCII of a sane length, else None."""
    if value is None or len(value) > _TRACESTATE_MAX:
        return None
    value = value.strip()
    return value if value and all(" " <= c <= "~" for c in value) else None


def trace_context(get: Mapping[str, str] | Any) -> dict[str, str]:
    """The valid trace headers found in `get` (anything with `.get(name)`), lower-case names."""
    found: dict[str, str] = {}
    parent = valid_traceparent(get.get(TRACEPARENT))
    if parent is not None:
        found[TRACEPARENT] = parent
        state = valid_tracestate(get.get(TRACESTATE))
        if state is not None:
            found[TRACESTATE] = state
    return found


def from_kafka_headers(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The trace context carried by a record's headers (plain or CloudEvents `ce_` names)."""
    text: dict[str, str] = {}
    for name, raw in headers:
        key = name.lower().removeprefix("ce_")
        if key in TRACE_HEADERS and raw is not None:
            text[key] = raw.decode("ascii", "replace")
    return trace_context(text)


def setup(service_name: str) -> bool:
    """Export spans when the `otel` extra is installed and OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    global _tracer  # noqa: PLW0603 - set once per process, in its entry point
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    needed = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
    if any(importlib.util.find_spec(name.split(".")[0]) is None for name in needed):
        log.warning("OTEL_EXPORTER_OTLP_ENDPOINT is set but the `otel` extra is not installed")
        return False
    try:
        from opentelemetry import trace  # noqa: PLC0415 - optional extra
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    except ImportError as exc:
        log.warning("OpenTelemetry is not usable (%s): no spans are exported", exc)
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("ucs-tasks")
    log.info("exporting spans to %s", os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    return True


def enabled() -> bool:
    """Whether spans are exported (`setup` found an endpoint and the SDK)."""
    return _tracer is not None


def shutdown() -> None:
    """Flush and stop the span exporter (a no-op without one)."""
    if _tracer is None:
        return
    from opentelemetry import trace  # noqa: PLC0415 - only when set up

    provider = trace.get_tracer_provider()
    with contextlib.suppress(Exception):
        provider.shutdown()  # type: ignore[attr-defined]  # the SDK provider has it


_NO_SPAN: Final = contextlib.nullcontext()
"""What `span` gives without an exporter: one shared no-op (a generator's context manager per
call cost about a microsecond on every request)."""


def span(
    name: str,
    *,
    kind: str = "internal",
    parent: Mapping[str, str] | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[None]:
    """A span when spans are exported (child of `parent`'s trace context), else nothing."""
    if _tracer is None:
        return _NO_SPAN
    return _exported(name, kind, parent, attributes)


@contextlib.contextmanager
def _exported(
    name: str, kind: str, parent: Mapping[str, str] | None, attributes: Mapping[str, Any] | None
) -> Iterator[None]:
    from opentelemetry import propagate, trace  # noqa: PLC0415 - only when set up

    context = propagate.extract(dict(parent)) if parent else None
    span_kind = getattr(trace.SpanKind, kind.upper(), trace.SpanKind.INTERNAL)
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    with _tracer.start_as_current_span(name, context=context, kind=span_kind, attributes=clean):
        yield


def current_headers() -> dict[str, str]:
    """The trace context of the current span (to put on an outgoing message); {} without one."""
    if _tracer is None:
        return {}
    from opentelemetry import propagate  # noqa: PLC0415 - only when set up

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return trace_context(carrier)
