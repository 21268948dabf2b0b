"""The JSON lines `produce` reads: plain lines of the three kinds, structured CloudEvents of
every request type, each validated by its type, with deterministic identities for plain lines."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest

from producer_tools.tools._events import (
    PRODUCE_SOURCE,
    InvalidInputError,
    LinePreparer,
    Prepared,
    plain_identity,
)
from schemas import wire
from schemas.limits import DEFAULT_LIMITS
from schemas.requests import TaskRequest
from schemas.tenants import Tenancy
from schemas.validation import EventKind, validate_event

SERVICE = 21456878


def line(**keys: Any) -> bytes:
    return orjson.dumps(keys)


def prepare(raw: bytes, **options: Any) -> Prepared:
    return LinePreparer(DEFAULT_LIMITS, **options).prepare(raw)


def refusal(raw: bytes, **options: Any) -> str:
    with pytest.raises(InvalidInputError) as caught:
        prepare(raw, **options)
    return str(caught.value)


def headers_of(prepared: Prepared) -> dict[str, str]:
    return {name: value.decode() for name, value in prepared.headers}


def test_a_plain_start_keeps_the_identity_it_always_had() -> None:
    event = {"state_id": 1, "Note": {"b": 1, "a": 2}}
    canonical = b'{"service_id":5,"event":{"state_id":1,"Note":{"b":1,"a":2}}}'
    expected = hashlib.sha256(b"1\n" + hashlib.sha256(canonical).digest()).hexdigest()
    assert plain_identity(5, event) == expected
    assert prepare(line(service_id="5", event=event)).id == expected


def test_a_plain_line_identity_depends_on_content_and_occurrence_only() -> None:
    first = plain_identity(5, {"state_id": 1, "Note": {"b": 1, "a": 2}})
    assert first == plain_identity(5, {"state_id": 1, "Note": {"b": 1, "a": 2}}, 1)
    assert first != plain_identity(5, {"state_id": 1, "Note": {"b": 1, "a": 2}}, 2)
    assert first != plain_identity(6, {"state_id": 1, "Note": {"b": 1, "a": 2}})
    assert first != plain_identity(5, {"state_id": 1, "Note": {"a": 2, "b": 1}})  # order is data
    assert first != plain_identity(5, {"state_id": 1, "Note": {"b": 1, "a": 2}}, tenant="acme")


def test_a_plain_end_line_is_a_binary_end_request_naming_its_task_and_tenant() -> None:
    raw = line(
        service_id=SERVICE,
        task_id=42,
        end={"disposition": "resolved", "Survey": {"q": 9}},
        tenant="acme",
        group="sales",
    )
    prepared = prepare(raw)
    assert (prepared.kind, prepared.source, prepared.service_id) == (
        EventKind.END,
        PRODUCE_SOURCE,
        SERVICE,
    )
    assert prepared.key == b"21456878"
    assert prepared.value == b'{"disposition":"resolved","Survey":{"q":9}}'
    headers = headers_of(prepared)
    assert headers["ce_type"] == wire.TYPE_TASK_END
    assert (headers["ce_taskid"], headers["ce_tenantid"], headers["ce_groupid"]) == (
        "42",
        "acme",
        "sales",
    )
    assert "ce_extension" not in headers
    assert prepared.id == plain_identity(
        SERVICE,
        {"disposition": "resolved", "Survey": {"q": 9}},
        kind=EventKind.END,
        task_id=42,
        tenant="acme",
        group="sales",
    )


def test_a_plain_extension_line_is_a_binary_extension_request_with_its_value() -> None:
    value = [{"car type": "cabriolet", "price": 25000}]
    prepared = prepare(line(service_id=SERVICE, task_id="7", extension="Proposal", value=value))
    headers = headers_of(prepared)
    assert prepared.kind is EventKind.EXTENSION
    assert headers["ce_type"] == wire.TYPE_TASK_EXTENSION
    assert (headers["ce_taskid"], headers["ce_extension"]) == ("7", "Proposal")
    assert "ce_tenantid" not in headers
    assert orjson.loads(prepared.value) == value
    envelope = wire.decode_request(prepared.value, prepared.headers)
    assert (envelope.type, envelope.task_id, envelope.extension) == (
        wire.TYPE_TASK_EXTENSION,
        "7",
        "Proposal",
    )


def test_spacing_key_order_and_the_spelling_of_ids_do_not_change_an_identity() -> None:
    one = prepare(line(service_id=5, task_id=9, extension="S", value={"a": 1}, tenant="t"))
    other = prepare(
        b' { "tenant" : "t", "value": {"a":1}, "extension": "S", "task_id": "9",'
        b' "service_id": "5" } '
    )
    assert one.id == other.id
    ended = prepare(line(service_id=5, task_id=9, end={"a": 1}, tenant="t"))
    assert ended.id != one.id  # the same content under another kind is another request


def test_identical_lines_are_distinct_requests_by_their_occurrence() -> None:
    preparer = LinePreparer(DEFAULT_LIMITS)
    raw = line(service_id=5, task_id=9, extension="S", value={"a": 1})
    first, second = preparer.prepare(raw), preparer.prepare(raw)
    assert first.id != second.id
    assert second.id == plain_identity(
        5, {"a": 1}, 2, kind=EventKind.EXTENSION, task_id=9, extension="S"
    )


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (line(service_id=5, end={}), "a plain end line lacks task_id"),
        (line(service_id=5, task_id=1, extension="S"), "a plain extension line lacks value"),
        (line(service_id=5, event={}, note=1), "a plain start line has unknown keys note"),
        (line(service_id=5, task_id=1, event={}, end={}), "exclude each other"),
        (line(service=5, data={}), "neither a structured CloudEvent"),
        (line(service_id=5, event={}, tenant=7), "tenant must be a non-empty JSON string"),
        (line(service_id=5, event={}, group=""), "group must be a non-empty JSON string"),
    ],
)
def test_a_line_of_no_known_shape_says_which_shapes_there_are(raw: bytes, says: str) -> None:
    assert says in refusal(raw)


def test_an_end_line_is_validated_as_a_task_end_event_with_its_task_id() -> None:
    reason = refusal(line(service_id=5, task_id=0, end={"disposition_desc": "x" * 65}))
    assert "task_id" in reason
    assert "disposition_desc" in reason


def test_an_extension_line_is_validated_by_the_extension_rules() -> None:
    reserved = refusal(line(service_id=5, task_id=1, extension="task_id", value={}))
    assert reserved.startswith("Invalid extension name: extension_name 'task_id' is a reserved")
    not_objects = refusal(line(service_id=5, task_id=1, extension="S", value=[1]))
    assert not_objects == "Invalid extension value: [0] must be a JSON object, got an integer."
    scalar = refusal(line(service_id=5, task_id=1, extension="S", value="x"))
    assert "must be a JSON object or an array of JSON objects, got a string" in scalar


def test_a_start_event_may_not_carry_an_end_event_s_fields() -> None:
    assert "disposition" in refusal(line(service_id=5, event={"disposition": "x"}))


def structured(event_type: str, data: Any, **attributes: Any) -> bytes:
    event = wire.structured_request(
        service_id=5, data=data, event_id="e-1", source="urn:t", event_type=event_type, **attributes
    )
    return orjson.dumps(event)


def test_structured_lines_of_every_type_are_validated_by_their_type() -> None:
    end = prepare(structured(wire.TYPE_TASK_END, {"disposition": 3}, task_id=4, tenant="acme"))
    assert (end.kind, end.identity, end.key) == (EventKind.END, ("urn:t", "e-1"), b"5")
    assert end.headers == [(wire.CONTENT_TYPE_HEADER, wire.STRUCTURED_CONTENT_TYPE.encode())]
    update = prepare(structured(wire.TYPE_TASK_EXTENSION, {"a": 1}, task_id=4, extension="S"))
    assert update.kind is EventKind.EXTENSION
    assert "task_id" in refusal(structured(wire.TYPE_TASK_END, {}))
    assert "extension" in refusal(structured(wire.TYPE_TASK_EXTENSION, {"a": 1}, task_id=4))
    assert "state_id" in refusal(structured(wire.TYPE_TASK_END, {"state_id": "x"}, task_id=4))


def test_an_unchanged_structured_line_goes_out_byte_for_byte() -> None:
    raw = structured(wire.TYPE_TASK_EXTENSION, {"b": 1.5e-7, "a": [None]}, task_id=4, extension="S")
    assert prepare(raw).value == raw


def test_with_tenants_configured_a_line_names_a_configured_tenant() -> None:
    tenancy = Tenancy.parse("acme, globex")
    assert "no tenant specified" in refusal(line(service_id=5, event={}), tenancy=tenancy)
    assert "'initech' not configured" in refusal(
        line(service_id=5, event={}, tenant="initech"), tenancy=tenancy
    )
    assert "not configured" in refusal(
        structured(wire.TYPE_TASK_END, {}, task_id=1, tenant="initech"), tenancy=tenancy
    )
    ok = prepare(line(service_id=5, event={}, tenant="acme", group="eu"), tenancy=tenancy)
    assert headers_of(ok)["ce_tenantid"] == "acme"


def test_without_tenants_configured_a_tenant_is_passed_on_unchecked() -> None:
    prepared = prepare(line(service_id=5, task_id=1, end={}, tenant="anyone"))
    assert headers_of(prepared)["ce_tenantid"] == "anyone"


def test_the_documented_line_shapes_are_accepted_as_documented() -> None:
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "replay.md").read_text()
    section = guide[guide.index("## Producing events from files") :]
    begin = section.index("```json\n") + len("```json\n")
    block = section[begin : section.index("\n```", begin)]
    kinds = [prepare(raw.encode()).kind for raw in block.splitlines()]
    assert kinds == [
        EventKind.START,
        EventKind.END,
        EventKind.EXTENSION,
        EventKind.START,
        EventKind.START,
        EventKind.END,
    ]


def test_the_tuples_built_per_line_are_whole() -> None:
    # `prepare` builds these NamedTuples with tuple.__new__ (no count check): `_make` refuses a
    # tuple of the wrong length.
    prepared = prepare(line(service_id=SERVICE, event={"state_id": 1}))
    assert Prepared._make(prepared) == prepared
    valid = validate_event(EventKind.START, SERVICE, b'{"state_id": 1}')
    request = TaskRequest.of(valid, b'{"state_id": 1}', "acme", "east")
    assert TaskRequest._make(request) == request
    assert request.tenant == "acme"
    assert request.group == "east"
