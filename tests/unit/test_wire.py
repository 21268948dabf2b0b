"""The Kafka record layout (schemas/wire/): both CloudEvents modes, errors, exports, DLQ."""

from __future__ import annotations

import base64
import tracemalloc
from typing import Any

import orjson
import pytest

from schemas import wire
from schemas.envelope import TaskStartCloudEvent
from schemas.replies import ErrorCode
from schemas.task_start import TaskStartValidationError, parse_task_start

BODY = b'{"state_id": 24, "task_type": "customer info", "Survey": {"question1": 7}}'


def binary_record(**overrides: Any) -> wire.Record:
    arguments: dict[str, Any] = {
        "service_id": 21456878,
        "body": BODY,
        "event_id": "evt-1",
        "source": "urn:test",
        "time": "2010-05-20T15:41:52.380Z",
        "reply_to": "replies",
        "correlation_id": "corr-1",
    }
    return wire.encode_request_binary(**{**arguments, **overrides})


def structured_event(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "service_id": 21456878,
        "data": orjson.loads(BODY),
        "event_id": "evt-1",
        "source": "urn:test",
        "correlation_id": "corr-1",
    }
    return wire.structured_request(**{**arguments, **overrides})


def without(headers: list[tuple[str, bytes]], name: str) -> list[tuple[str, bytes]]:
    return [(n, v) for n, v in headers if n != name]


def replaced(headers: list[tuple[str, bytes]], name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(n, value if n == name else v) for n, v in headers]


def test_a_binary_record_decodes_to_its_attributes_and_the_untouched_body() -> None:
    key, value, headers = binary_record()
    envelope = wire.decode_request(value, headers)
    assert key == b"21456878"
    assert envelope == wire.Envelope(
        id="evt-1",
        source="urn:test",
        service_id="21456878",
        data=BODY,
        time="2010-05-20T15:41:52.380Z",
        reply_to="replies",
        correlation_id="corr-1",
        structured=False,
    )


def test_a_binary_record_without_optional_attributes_decodes_them_as_none() -> None:
    _, value, headers = binary_record(time=None, reply_to=None, correlation_id=None)
    envelope = wire.decode_request(value, headers)
    assert (envelope.time, envelope.reply_to, envelope.correlation_id) == (None, None, None)


def test_a_structured_record_decodes_to_its_attributes_and_the_decoded_data() -> None:
    key, value, headers = wire.encode_structured(structured_event())
    envelope = wire.decode_request(value, headers)
    assert key == b"21456878"
    assert envelope.structured
    assert (envelope.id, envelope.source, envelope.service_id) == ("evt-1", "urn:test", "21456878")
    assert envelope.data == orjson.loads(BODY)
    assert envelope.correlation_id == "corr-1"


def test_both_modes_give_the_same_validated_event() -> None:
    _, binary_value, binary_headers = binary_record()
    _, structured_value, structured_headers = wire.encode_structured(structured_event())
    from_binary = parse_task_start(wire.decode_request(binary_value, binary_headers).data)
    from_structured = parse_task_start(
        wire.decode_request(structured_value, structured_headers).data
    )
    assert from_binary == from_structured
    assert from_binary.attached_data == {"Survey": {"question1": 7}}


@pytest.mark.parametrize("header", ["ce_id", "ce_source", "ce_type"])
def test_a_binary_record_missing_an_identity_attribute_is_undecodable(header: str) -> None:
    _, value, headers = binary_record()
    with pytest.raises(wire.UndecodableRecordError, match=header.removeprefix("ce_")):
        wire.decode_request(value, without(headers, header))


def test_a_binary_record_of_another_event_type_is_undecodable() -> None:
    _, value, headers = binary_record()
    with pytest.raises(wire.UndecodableRecordError, match="not a task request"):
        wire.decode_request(value, replaced(headers, "ce_type", b"com.example.other"))


def test_a_binary_record_of_another_specversion_is_undecodable() -> None:
    _, value, headers = binary_record()
    with pytest.raises(wire.UndecodableRecordError, match="specversion"):
        wire.decode_request(value, replaced(headers, "ce_specversion", b"0.3"))


def test_a_binary_header_that_is_not_utf8_is_undecodable() -> None:
    _, value, headers = binary_record()
    with pytest.raises(wire.UndecodableRecordError, match="UTF-8"):
        wire.decode_request(value, replaced(headers, "ce_id", b"\xff"))


def test_an_identity_longer_than_the_limit_is_undecodable() -> None:
    _, value, headers = binary_record(event_id="x" * (wire.MAX_ID_LENGTH + 1))
    with pytest.raises(wire.UndecodableRecordError, match="longer than"):
        wire.decode_request(value, headers)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"id": None}, "missing id"),
        ({"source": ""}, "missing source"),
        ({"id": 7}, "id must be a string"),
        ({"specversion": "0.3"}, "specversion"),
        ({"type": "com.example.other"}, "not a task request"),
        ({"correlationid": 5}, "correlationid must be a string"),
    ],
)
def test_a_structured_event_with_a_bad_attribute_is_undecodable(
    change: dict[str, Any], match: str
) -> None:
    event = {**structured_event(), **change}
    _, value, headers = wire.encode_structured(event)
    with pytest.raises(wire.UndecodableRecordError, match=match):
        wire.decode_request(value, headers)


@pytest.mark.parametrize(
    ("value", "match"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "not a JSON object"), (None, "empty record")],
)
def test_a_structured_value_that_is_not_a_json_object_is_undecodable(
    value: bytes | None, match: str
) -> None:
    headers = [(wire.CONTENT_TYPE_HEADER, wire.STRUCTURED_CONTENT_TYPE.encode())]
    with pytest.raises(wire.UndecodableRecordError, match=match):
        wire.decode_request(value, headers)


def test_a_record_with_no_cloudevent_headers_and_a_non_json_value_is_undecodable() -> None:
    with pytest.raises(wire.UndecodableRecordError):
        wire.decode_request(b"hello", [])


def test_a_non_string_structured_service_id_is_kept_as_text_for_validation_to_name() -> None:
    _, value, headers = wire.encode_structured({**structured_event(), "serviceid": [1]})
    assert wire.decode_request(value, headers).service_id == "[1]"


def test_encode_request_binary_then_decode_request_round_trips() -> None:
    _, value, headers = binary_record(service_id=9223372036854775807, body=b"\x00 raw \xff")
    envelope = wire.decode_request(value, headers)
    assert envelope.data == b"\x00 raw \xff"
    assert envelope.service_id == "9223372036854775807"
    assert (envelope.id, envelope.source) == ("evt-1", "urn:test")


@pytest.mark.parametrize("given", [(), ("task_id", "group"), ("time", "tenant", "extension")])
def test_encode_request_binary_writes_the_optional_attributes_given_in_their_order(
    given: tuple[str, ...],
) -> None:
    """Every attribute of `_OPTIONAL_ATTRIBUTES` (each a named parameter, gathered in a tuple
    that must follow that list) is written only when given, under its CloudEvents name, in that
    list's order, and decodes back to what was given."""
    everything = {
        "time": "2010-05-20T15:41:52.380Z",
        "reply_to": "replies",
        "correlation_id": "corr-1",
        "task_id": 7,
        "extension": "Survey",
        "tenant": "acme",
        "group": "ops",
    }
    names = [keyword for keyword, _ in wire._requests._OPTIONAL_ATTRIBUTES]
    assert sorted(names) == sorted(everything)
    for chosen in (names, list(given)):
        attributes = {keyword: everything[keyword] for keyword in chosen}
        _, value, headers = wire.encode_request_binary(
            service_id=5, body=BODY, event_id="e", source="s", **attributes
        )
        written = [name for name, _ in headers[6:]]
        expected = [f"ce_{name}" for keyword, name in wire._requests._OPTIONAL_ATTRIBUTES]
        assert written == [h for h in expected if h in written]
        assert len(written) == len(chosen)
        envelope = wire.decode_request(value, headers)
        for keyword in names:
            want = attributes.get(keyword)
            got = getattr(envelope, keyword)
            assert got == (None if want is None else str(want)), keyword


def test_record_to_structured_of_a_binary_record_replays_as_the_same_request() -> None:
    _, value, headers = binary_record()
    headers.append(("ce_tenant", b"acme"))
    event = wire.record_to_structured(value, headers)
    assert event["data"] == orjson.loads(BODY)
    assert event["tenant"] == "acme"
    _, replay_value, replay_headers = wire.encode_structured(event)
    replayed = wire.decode_request(replay_value, replay_headers)
    original = wire.decode_request(value, headers)
    assert replayed.structured
    for name in ("id", "source", "service_id", "time", "reply_to", "correlation_id"):
        assert getattr(replayed, name) == getattr(original, name)
    assert parse_task_start(replayed.data) == parse_task_start(original.data)


def test_record_to_structured_of_a_structured_record_returns_it_unchanged() -> None:
    event = structured_event()
    _, value, headers = wire.encode_structured(event)
    assert wire.record_to_structured(value, headers) == event


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"state_id": 1, "task_type":customer info}', ErrorCode.MALFORMED_JSON),
        (b'{"big": 99999999999999999999}', ErrorCode.INVALID_FIELD),
    ],
)
def test_a_body_not_faithful_as_json_is_exported_as_data_base64_and_replays_the_same_error(
    body: bytes, code: ErrorCode
) -> None:
    _, value, headers = binary_record(body=body)
    event = wire.record_to_structured(value, headers)
    assert "data" not in event
    assert base64.b64decode(event["data_base64"]) == body
    _, replay_value, replay_headers = wire.encode_structured(event)
    replayed = wire.decode_request(replay_value, replay_headers)
    assert replayed.data == body
    with pytest.raises(TaskStartValidationError) as caught:
        parse_task_start(replayed.data)
    assert caught.value.code is code


def test_a_structured_event_with_bad_data_base64_is_undecodable() -> None:
    event = {**structured_event(), "data_base64": "*not base64*"}
    del event["data"]
    _, value, headers = wire.encode_structured(event)
    with pytest.raises(wire.UndecodableRecordError, match="base64"):
        wire.decode_request(value, headers)


def test_dead_letter_headers_keep_the_original_headers_first_then_say_what_and_where() -> None:
    _, _, headers = binary_record()
    dead = wire.dead_letter_headers(headers, error="boom", topic="t", partition=3, offset=42)
    assert dead[: len(headers)] == headers
    assert dict(dead[len(headers) :]) == {
        wire.DLQ_ERROR: b"boom",
        wire.DLQ_TOPIC: b"t",
        wire.DLQ_PARTITION: b"3",
        wire.DLQ_OFFSET: b"42",
    }


def test_a_reply_has_a_deterministic_id_and_echoes_the_correlation_id() -> None:
    record = wire.encode_reply(
        reply_type=wire.TYPE_TASK_CREATED,
        payload={"task_id": 1},
        service_id=7,
        request_source="urn:test",
        request_id="evt-1",
        correlation_id="corr-1",
        time="2010-05-20T15:41:52.380Z",
    )
    again = wire.encode_reply(
        reply_type=wire.TYPE_TASK_CREATED,
        payload={"task_id": 1},
        service_id=7,
        request_source="urn:test",
        request_id="evt-1",
        correlation_id=None,
        time="2011-01-01T00:00:00.000Z",
    )
    key, value, headers = record
    assert key == b"7"
    assert orjson.loads(value) == {"task_id": 1}
    assert dict(headers)["ce_id"] == dict(again[2])["ce_id"]
    assert wire.reply_correlation(headers) == "corr-1"
    assert wire.reply_correlation(again[2]) is None
    assert wire.reply_type(headers) == wire.TYPE_TASK_CREATED


def test_a_kept_reply_holds_memory_of_its_own_size() -> None:
    """A batch's replies are kept until published: each value is allocated at its own size, not
    in orjson's output buffer (rounded up to a power of two, 4 KB at least, never shrunk)."""
    payload = {"kind": "task.created", "task_id": 1, "task": {"attached": "x" * 700}}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [
            wire.encode_reply(
                reply_type=wire.TYPE_TASK_CREATED,
                payload=payload,
                service_id=7,
                request_source="urn:test",
                request_id=f"evt-{i}",
                correlation_id=None,
                time="2010-05-20T15:41:52.380Z",
            )[1]
            for i in range(100)
        ]
        held = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert orjson.loads(kept[0]) == payload
    # The value (~770 bytes) and its record's headers; orjson's own buffer would be 8 KB.
    assert held < 2 * len(kept[0]) + 1024, held


def test_structured_request_lays_out_a_valid_task_start_cloudevent() -> None:
    document = TaskStartCloudEvent.model_validate(structured_event())
    assert document.type == wire.TYPE_TASK_START
    assert document.specversion == wire.SPECVERSION
    assert document.data.state_id == 24


# --- the lifecycle's requests, tenants, other clients' reply headers, trace context


def test_end_and_extension_requests_carry_their_task_id_extension_and_tenant_both_ways() -> None:
    key, value, headers = wire.encode_request_binary(
        service_id=7,
        body=b'{"disposition": "done"}',
        event_id="e-1",
        source="urn:test",
        event_type=wire.TYPE_TASK_EXTENSION,
        task_id=42,
        extension="Survey",
        tenant="acme",
        group="sales",
    )
    binary = wire.decode_request(value, headers)
    assert (binary.type, binary.task_id, binary.extension) == (
        wire.TYPE_TASK_EXTENSION,
        "42",
        "Survey",
    )
    assert (binary.tenant, binary.group) == ("acme", "sales")
    structured = wire.record_to_structured(value, headers)
    assert structured["type"] == wire.TYPE_TASK_EXTENSION
    assert (structured["taskid"], structured["extension"]) == ("42", "Survey")
    assert (structured["tenantid"], structured["groupid"]) == ("acme", "sales")
    again = wire.decode_request(*wire.encode_structured(structured)[1:])
    assert (again.type, again.task_id, again.extension, again.tenant, again.group) == (
        binary.type,
        binary.task_id,
        binary.extension,
        binary.tenant,
        binary.group,
    )
    assert key == b"7"


def test_spring_and_faststream_reply_headers_are_understood_and_echoed_as_they_came() -> None:
    _, value, headers = binary_record()
    base = [(n, v) for n, v in headers if n not in ("ce_replyto", "ce_correlationid")]
    spring_id = bytes(range(16))  # ReplyingKafkaTemplate's default: a UUID's raw bytes
    spring = wire.decode_request(
        value, [*base, ("kafka_replyTopic", b"spring.replies"), ("kafka_correlationId", spring_id)]
    )
    assert spring.reply_to == "spring.replies"
    assert spring.correlation_id == spring_id.hex()
    assert spring.echo == (("kafka_correlationId", spring_id),)
    faststream = wire.decode_request(
        value, [*base, ("reply_to", b"fs.replies"), ("correlation_id", b"c-1")]
    )
    assert (faststream.reply_to, faststream.correlation_id) == ("fs.replies", "c-1")
    own = wire.decode_request(value, [*headers, ("reply_to", b"other")])
    assert own.reply_to == dict(headers)["ce_replyto"].decode(), "ce_replyto wins"
    _, _, reply_headers = wire.encode_reply(
        reply_type=wire.TYPE_TASK_CREATED,
        payload={},
        service_id=7,
        request_source="urn:test",
        request_id="e-1",
        correlation_id=spring.correlation_id,
        time="2026-01-01T00:00:00.000Z",
        echo=spring.echo,
    )
    assert ("kafka_correlationId", spring_id) in reply_headers


def test_the_trace_context_of_a_request_is_kept_for_its_reply() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    _, value, headers = wire.encode_request_binary(
        service_id=7,
        body=b"{}",
        event_id="e-1",
        source="urn:test",
        trace={"traceparent": parent, "tracestate": "v=1"},
    )
    envelope = wire.decode_request(value, headers)
    assert dict(envelope.echo) == {"traceparent": parent.encode(), "tracestate": b"v=1"}
