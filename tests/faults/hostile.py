"""Hostile task-start records: a hand-written corpus with the outcome each must get, and a
hypothesis strategy for arbitrary bodies and headers.

Outcomes: "created", "rejected:<code>" (a task-rejected reply with that code) or "dead_letter".
Every record carries its own event id (unless breaking the identity is the point), so its reply
can be found; a dead letter is found by the position it names.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import strategies as st

from consumer.domain import Position, Rejection, StartCommand
from consumer.kafka.codec import Rules, translate
from consumer.ports import Inbound
from schemas import wire
from tests.faults.harness import (
    SOURCE,
    Header,
    Record,
)

MIB = 1024 * 1024
SERVICE = b"21456878"
STRUCTURED = (wire.CONTENT_TYPE_HEADER, wire.STRUCTURED_CONTENT_TYPE.encode())


@dataclass(frozen=True)
class Hostile:
    """One record of the corpus, the class of input it stands for, and the outcome it must get."""

    kind: str
    name: str
    record: Record
    expect: str
    event_id: str | None


def _headers(event_id: str, service: bytes | None = SERVICE) -> list[Header]:
    headers: list[Header] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", SOURCE.encode()),
        ("ce_type", wire.TYPE_TASK_START.encode()),
        ("content-type", b"application/json"),
    ]
    if service is not None:
        headers.append(("ce_serviceid", service))
    return headers


def _replace(headers: list[Header], name: str, value: bytes | None) -> list[Header]:
    return [(k, value if k == name else v) for k, v in headers]


def _structured(event: dict[str, Any] | bytes) -> tuple[bytes, list[Header]]:
    value = event if isinstance(event, bytes) else orjson.dumps(event)
    return value, [STRUCTURED]


def _envelope(event_id: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = wire.structured_request(
        service_id=21456878, data={"state_id": 1}, event_id=event_id, source=SOURCE
    )
    for name, value in changes.items():
        if value is _DROP:
            event.pop(name, None)
        else:
            event[name] = value
    return event


_DROP = object()


def corpus(prefix: str = "hostile") -> list[Hostile]:  # noqa: PLR0915 - a flat list reads best
    """The hand-written hostile inputs, each with its expected outcome; event ids `<prefix>-<n>`."""
    cases: list[Hostile] = []

    def body(kind: str, name: str, value: bytes | None, expect: str) -> None:
        event_id = f"{prefix}-{len(cases)}"
        cases.append(Hostile(kind, name, (SERVICE, value, _headers(event_id)), expect, event_id))

    def headers(
        kind: str,
        name: str,
        change: Callable[[list[Header]], list[Header]],
        expect: str,
        *,
        value: bytes | None = b'{"state_id": 1}',
        key: bytes | None = SERVICE,
    ) -> None:
        event_id = f"{prefix}-{len(cases)}"
        record = (key, value, change(_headers(event_id)))
        cases.append(Hostile(kind, name, record, expect, event_id))

    def structured(kind: str, name: str, event: Callable[[str], Any], expect: str) -> None:
        event_id = f"{prefix}-{len(cases)}"
        value, hs = _structured(event(event_id))
        cases.append(Hostile(kind, name, (SERVICE, value, hs), expect, event_id))

    deep = 100_000
    body("nesting", "100,000 nested arrays", b"[" * deep + b"]" * deep, "rejected:malformed_json")
    body("nesting", "100,000 nested objects in attached data",
         b'{"a":' * deep + b"1" + b"}" * deep, "rejected:malformed_json")  # fmt: skip
    body("nesting", "65 levels (one too many)",
         b'{"a":' + b"[" * 64 + b"]" * 64 + b"}", "rejected:invalid_field")  # fmt: skip
    body("nesting", "64 levels (the limit)",
         b'{"a":' + b"[" * 63 + b"]" * 63 + b"}", "created")  # fmt: skip

    body("huge number", "1e400", b'{"x": 1e400}', "rejected:malformed_json")
    body("huge number", "30-digit integer in attached data",
         b'{"x": 123456789012345678901234567890}', "rejected:invalid_field")  # fmt: skip
    body("huge number", "5,000-digit integer", b'{"x": ' + b"9" * 5000 + b"}",
         "rejected:malformed_json")  # fmt: skip
    body("huge number", "state_id 2^31", b'{"state_id": 2147483648}', "rejected:invalid_field")
    body("huge number", "task_type 2^63", b'{"task_type": 9223372036854775808}',
         "rejected:invalid_field")  # fmt: skip
    body("huge number", "task_type -2^63 (the limit)", b'{"task_type": -9223372036854775808}',
         "created")  # fmt: skip
    body("huge number", "1e308 in attached data", b'{"x": 1e308}', "created")
    body("huge number", "1e-400 in attached data (underflows to 0)", b'{"x": 1e-400}', "created")

    for field, value in (
        ("state_id", b"1.0"),
        ("state_id", b"true"),
        ("state_id", b'"one"'),
        ("est_duration", b"1e2"),
        ("application_id", b"null"),
        ("resource_id", b"[1]"),
        ("task_type", b"false"),
        ("media_type", b"{}"),
    ):
        body("wrong type", f"{field}: {value.decode()}", b'{"%s": %s}' % (field.encode(), value),
             "rejected:invalid_field")  # fmt: skip

    for token in (b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"):
        body("NaN/Infinity", token.decode(), b'{"x": %s}' % token, "rejected:malformed_json")

    body("duplicate keys", "bad then good", b'{"state_id": "x", "state_id": 1}', "created")
    body("duplicate keys", "good then bad", b'{"state_id": 1, "state_id": "x"}',
         "rejected:invalid_field")  # fmt: skip
    body("duplicate keys", "reserved key twice", b'{"task_id": 1, "task_id": 2}',
         "rejected:invalid_field")  # fmt: skip

    body("non-UTF-8", "0xff in a string", b'{"x": "\xff"}', "rejected:malformed_json")
    body("non-UTF-8", "Latin-1 body", '{"x": "café"}'.encode("latin-1"), "rejected:malformed_json")
    body("non-UTF-8", "CESU-8 surrogate", b'{"x": "\xed\xa0\x80"}', "rejected:malformed_json")
    body("non-UTF-8", "lone surrogate escape", b'{"x": "\\ud800"}', "rejected:malformed_json")
    body("BOM", "UTF-8 BOM", b'\xef\xbb\xbf{"state_id": 1}', "rejected:malformed_json")
    body("BOM", "UTF-16 BOM", '{"state_id": 1}'.encode("utf-16"), "rejected:malformed_json")

    body("10 MB value", "10 MB string in attached data",
         b'{"x": "' + b"a" * (10 * MIB) + b'"}', "rejected:too_large")  # fmt: skip
    structured("10 MB value", "10 MB structured-mode garbage",
               lambda _: b"{" + b"x" * (10 * MIB), "dead_letter")  # fmt: skip

    mega = b"z" * MIB
    headers("long header", "1 MB correlation id", lambda h: [*h, ("ce_correlationid", mega)],
            "rejected:invalid_attribute")  # fmt: skip
    headers("long header", "1 MB unknown header", lambda h: [*h, ("x-junk", mega)], "created")
    headers("long header", "1 MB event id", lambda h: _replace(h, "ce_id", mega), "dead_letter")
    headers("long header", "257-char source", lambda h: _replace(h, "ce_source", b"s" * 257),
            "dead_letter")  # fmt: skip
    headers("long header", "1 MB service id", lambda h: _replace(h, "ce_serviceid", b"7" * MIB),
            "rejected:invalid_service_id")  # fmt: skip
    headers("long header", "1 MB record key", lambda h: h, "created", key=mega)

    injected = {
        "session_id": "'; DROP TABLE tasks; --",
        "interaction_id": "<script>alert(1)</script>",
        "Robert'); DROP TABLE tasks;--": {"</textarea>": "\u0001\u001f\u007f\u2028\u2029"},
        "<img src=x onerror=alert(1)>": ["%s%n%x", "${jndi:ldap://x}", "\\\\x00"],
        "\t\r\n\u0007": "\u0085\u200b\ufeff",
    }
    body("metacharacters", "SQL, HTML, format strings and control characters",
         orjson.dumps(injected), "created")  # fmt: skip
    body("metacharacters", "NUL in a string", b'{"session_id": "a\\u0000b"}',
         "rejected:invalid_field")  # fmt: skip
    body("metacharacters", "NUL in an attached-data key", b'{"a\\u0000": 1}',
         "rejected:invalid_field")  # fmt: skip
    headers("metacharacters", "control characters in the event id",
            lambda h: _replace(h, "ce_id", b"\x01\x1f'; DROP TABLE tasks; --"),
            "created")  # fmt: skip
    headers("metacharacters", "NUL in the event id",
            lambda h: _replace(h, "ce_id", b"id\x00nul"), "dead_letter")  # fmt: skip
    headers("metacharacters", "NUL in the source",
            lambda h: _replace(h, "ce_source", b"urn:a\x00b"), "dead_letter")  # fmt: skip
    headers("metacharacters", "NUL in the service id",
            lambda h: _replace(h, "ce_serviceid", b"1\x002"),
            "rejected:invalid_service_id")  # fmt: skip
    structured("metacharacters", "NUL in a structured id",
               lambda e: _envelope(e, id=e + "\x00"), "dead_letter")  # fmt: skip
    headers("metacharacters", "NUL in the correlation id",
            lambda h: [*h, ("ce_correlationid", b"c\x00c")], "created")  # fmt: skip

    for value, expect in (
        (b"0", "rejected:invalid_service_id"),
        (b"-1", "rejected:invalid_service_id"),
        (b"9223372036854775808", "rejected:invalid_service_id"),
        (b"9223372036854775807", "created"),
        (b"abc", "rejected:invalid_service_id"),
        (b"", "rejected:invalid_service_id"),
        (b" 1", "rejected:invalid_service_id"),
        (b"1.0", "rejected:invalid_service_id"),
        (b"01", "rejected:invalid_service_id"),
        ("\uff11\uff12".encode(), "rejected:invalid_service_id"),  # fullwidth digits
        (b"\xff", "dead_letter"),
    ):
        headers("ce_serviceid", repr(value), lambda h, v=value: _replace(h, "ce_serviceid", v),
                expect)  # fmt: skip

    for stamp, expect in (
        ("2010-05-20T15:41:52.380Z", "created"),
        ("2010-05-20 15:41:52Z", "created"),
        ("2010-05-20T15:41:52.123456789123+05:30", "created"),
        ("2010-05-20T15:41:52", "rejected:invalid_field"),
        ("20100520T154152Z", "rejected:invalid_field"),
        ("2010-W20-1T15:41:52Z", "rejected:invalid_field"),
        ("0001-01-01T00:00:00+14:00", "rejected:invalid_field"),
        ("9999-12-31T23:59:59.999-14:00", "rejected:invalid_field"),
        ("2016-12-31T23:59:60Z", "rejected:invalid_field"),
        ("2010-02-30T00:00:00Z", "rejected:invalid_field"),
        ("", "rejected:invalid_field"),
    ):
        body("timestamp", repr(stamp), orjson.dumps({"timestamp": stamp}), expect)
    body("timestamp", "epoch seconds", b'{"timestamp": 1274370112}', "rejected:invalid_field")
    headers("timestamp", "garbage ce_time header", lambda h: [*h, ("ce_time", b"yesterday")],
            "created")  # fmt: skip

    for name, value, expect in (
        ("not JSON", b"not json", "dead_letter"),
        ("a JSON array", b"[]", "dead_letter"),
        ("empty", b"", "dead_letter"),
        ("specversion only", b'{"specversion": "1.0"}', "dead_letter"),
    ):
        structured("structured garbage", name, lambda _, v=value: v, expect)
    structured("structured garbage", "another type",
               lambda e: _envelope(e, type="com.example.other"), "dead_letter")  # fmt: skip
    structured("structured garbage", "numeric id", lambda e: _envelope(e, id=42), "dead_letter")
    structured("structured garbage", "data is a number",
               lambda e: _envelope(e, data=42), "rejected:not_an_object")  # fmt: skip
    structured("structured garbage", "data_base64 not base64",
               lambda e: _envelope(e, data=_DROP, data_base64="!!!"), "dead_letter")  # fmt: skip
    structured("structured garbage", "data_base64 of a valid body",
               lambda e: _envelope(e, data=_DROP,
                                   data_base64=base64.b64encode(b'{"state_id": 3}').decode()),
               "created")  # fmt: skip
    structured("structured garbage", "serviceid true",
               lambda e: _envelope(e, serviceid=True), "rejected:invalid_service_id")  # fmt: skip
    structured("structured garbage", "replyto a number",
               lambda e: _envelope(e, replyto=7), "dead_letter")  # fmt: skip

    headers("missing headers", "no headers at all", lambda _: [], "dead_letter")
    headers("missing headers", "no ce_type", lambda h: [x for x in h if x[0] != "ce_type"],
            "dead_letter")  # fmt: skip
    headers("missing headers", "no ce_serviceid",
            lambda h: [x for x in h if x[0] != "ce_serviceid"],
            "rejected:invalid_service_id")  # fmt: skip
    headers("missing headers", "no content-type",
            lambda h: [x for x in h if x[0] != "content-type"], "created")  # fmt: skip
    headers("missing headers", "ce_specversion 0.3",
            lambda h: _replace(h, "ce_specversion", b"0.3"), "dead_letter")  # fmt: skip
    headers("null header", "null content-type",
            lambda h: _replace(h, "content-type", None), "created")  # fmt: skip
    headers("null header", "null ce_id", lambda h: _replace(h, "ce_id", None), "dead_letter")
    headers("null header", "null ce_serviceid", lambda h: _replace(h, "ce_serviceid", None),
            "rejected:invalid_service_id")  # fmt: skip
    headers("non-UTF-8", "0xff in ce_id", lambda h: _replace(h, "ce_id", b"\xff"), "dead_letter")
    headers("non-UTF-8", "0xff in content-type",
            lambda h: _replace(h, "content-type", b"\xff"), "dead_letter")  # fmt: skip
    headers("tombstone", "null value with a task-start identity", lambda h: h,
            "rejected:malformed_json", value=None)  # fmt: skip
    headers("tombstone", "null value, no headers", lambda _: [], "dead_letter", value=None)
    return cases


def expected_outcome(record: Record, position: tuple[int, int], rules: Rules) -> str:
    """The outcome the consumer's own decoding predicts (the oracle of the property test)."""
    key, value, headers = record
    inbound = translate(Position("requests", *position), key, value, headers, rules)
    return outcome_of(inbound)


def outcome_of(inbound: Inbound) -> str:
    if isinstance(inbound.command, StartCommand):
        return "created"
    if isinstance(inbound.command, Rejection):
        return f"rejected:{inbound.command.code}"
    return "dead_letter"


# --- generated inputs ----------------------------------------------------------------------

_json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    _json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
_field_names = st.sampled_from(
    ["state_id", "task_type", "session_id", "interaction_id", "application_type",
     "application_id", "resource_type", "resource_id", "media_type", "est_duration",
     "timestamp", "task_id", "service_id", "started", "extensions"]
) | st.text(max_size=10)  # fmt: skip
bodies = st.one_of(
    st.dictionaries(_field_names, json_values, max_size=6).map(orjson.dumps),
    json_values.map(orjson.dumps),
    st.binary(max_size=48),
    st.builds(lambda head, tail: head + tail, st.dictionaries(_field_names, json_values,
              max_size=3).map(orjson.dumps), st.binary(max_size=6)),
)  # fmt: skip
_valid_service_ids = st.sampled_from([b"1", b"9223372036854775807", b"21456878"]) | st.integers(
    min_value=1, max_value=2**63 - 1
).map(lambda n: str(n).encode())
_any_service_ids = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64).map(lambda n: str(n).encode()),
    st.text(max_size=12).map(str.encode),
    st.binary(max_size=12),
)
service_ids = st.sampled_from([True, True, False]).flatmap(
    lambda valid: _valid_service_ids if valid else _any_service_ids
)
_header_names = st.text(max_size=16).filter(
    lambda n: not n.lower().startswith("ce_") and n.lower() != "content-type"
) | st.sampled_from(["ce_time", "ce_subject", "ce_correlationid", "ce_datacontenttype"])
_header_values = st.one_of(st.text(max_size=24).map(str.encode), st.none(), st.binary(max_size=24))
extra_headers = st.lists(st.tuples(_header_names, _header_values), max_size=2)
_envelope_extras = st.dictionaries(
    st.sampled_from(["time", "subject", "datacontenttype", "correlationid", "serviceid", "x"]),
    json_values,
    max_size=3,
)


_rarely = st.sampled_from([False] * 9 + [True])
"""True about once in ten (hypothesis favours small integers, so not `integers(0, 9) == 0`)."""
_bodies_mostly_objects = st.one_of(
    st.dictionaries(_field_names, json_values, max_size=6).map(orjson.dumps),
    st.dictionaries(_field_names, json_values, max_size=6).map(orjson.dumps),
    bodies,
)


@st.composite
def generated_record(draw: st.DrawFn, event_id: str) -> Record:
    """An arbitrary binary- or structured-mode record under `event_id` (its identity may be
    dropped or broken, which must make it a dead letter)."""
    if draw(st.booleans()):
        headers = _replace(
            _headers(event_id, draw(service_ids)),
            "content-type",
            draw(st.sampled_from([b"application/json", b"text/plain", b""])),
        )
        if draw(_rarely):
            dropped = draw(st.sampled_from(["ce_id", "ce_source", "ce_type", "ce_specversion"]))
            headers = [h for h in headers if h[0] != dropped]
        return SERVICE, draw(_bodies_mostly_objects), headers + draw(extra_headers)
    event = _envelope(event_id, serviceid=draw(service_ids).decode("utf-8", "replace"))
    if draw(_rarely):
        event |= draw(_envelope_extras)
    event["data"] = draw(st.dictionaries(_field_names, json_values, max_size=6) | json_values)
    if draw(_rarely):
        event.pop(draw(st.sampled_from(["id", "source", "type", "specversion"])))
    return SERVICE, orjson.dumps(event), [STRUCTURED, *draw(extra_headers)]


def kinds(cases: list[Hostile]) -> Iterator[str]:
    yield from dict.fromkeys(c.kind for c in cases)
