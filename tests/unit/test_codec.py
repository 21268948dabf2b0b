"""The consumer's codec: records in -> commands (or dead letters); outcomes -> reply records."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from consumer.domain import (
    EndCommand,
    EventIdentity,
    ExtensionCommand,
    Position,
    Rejection,
    StartCommand,
    Task,
    Undecodable,
)
from consumer.kafka.codec import (
    MAX_CORRELATION_ID_LENGTH,
    Replies,
    Rules,
    consumed,
    translate,
)
from consumer.ports import (
    COPY,
    DEAD_LETTER,
    LAST_RESORT,
    REPLY,
    Inbound,
    OutRecord,
    Undelivered,
    UnparseableRecord,
)
from schemas import wire
from schemas.replies import TaskCreated, TaskRejected
from schemas.task_start import Limits
from schemas.tenants import Tenancy
from schemas.validation import EventKind, ValidEvent, validate_event
from tests.fakes import FakeRecord
from tests.servers import StackSettings

LIMITS = Limits(max_body_bytes=4096, max_string_length=64)
RULES = Rules(LIMITS, own_topics=("requests", "dlq"))
POSITION = Position("requests", 2, 41)
BODY = b'{"state_id": 24, "task_type": "customer info", "Survey": {"question1": 7}}'
LOG = "created-log"
REJECTIONS = "rejections"
NOW = "2026-11-25T17:41:52.391Z"
SETTINGS = StackSettings.of(
    topic_requests="requests",
    topic_created=LOG,
    topic_rejected=REJECTIONS,
    topic_dead_letter="dlq",
    base_uri="http://x",
    max_body_bytes=4096,
)
REPLIES = Replies(SETTINGS.topics, SETTINGS.contract)


def binary(
    body: bytes = BODY,
    service_id: int | str = 21456878,
    reply_to: str | None = None,
    correlation_id: str | None = "corr-1",
) -> Inbound:
    headers: list[tuple[str, bytes | None]] = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"evt-1"),
        ("ce_source", b"urn:test"),
        ("ce_type", wire.TYPE_TASK_START.encode()),
        ("ce_serviceid", str(service_id).encode()),
        ("content-type", b"application/json"),
    ]
    if reply_to is not None:
        headers.append(("ce_replyto", reply_to.encode()))
    if correlation_id is not None:
        headers.append(("ce_correlationid", correlation_id.encode()))
    return translate(POSITION, str(service_id).encode(), body, headers, RULES)


def start(inbound: Inbound) -> StartCommand:
    assert isinstance(inbound.command, StartCommand), inbound.command
    return inbound.command


def rejection(inbound: Inbound) -> Rejection:
    assert isinstance(inbound.command, Rejection), inbound.command
    return inbound.command


def task_for(inbound: Inbound, task_id: int = 15928) -> Task:
    command = start(inbound)
    fields = {"state_id": None, "task_type": None, **command.fields}
    fields.setdefault("timestamp", datetime(2026, 11, 25, 17, 41, 52, 380000, tzinfo=UTC))
    return Task(
        task_id=task_id,
        service_id=command.service_id,
        fields=fields,
        attached_data_json=orjson.dumps(command.attached_data).decode(),
        identity=command.identity,
        received_at=datetime(2026, 11, 25, 17, 41, 52, 391000, tzinfo=UTC),
        position=command.position,
    )


def headers_of(record: OutRecord) -> dict[str, bytes | None]:
    return dict(record.headers)


# --- translate ---------------------------------------------------------------------------------


def test_a_binary_record_becomes_a_command_with_identity_fields_attached_data_and_position() -> (
    None
):
    inbound = binary(reply_to="my-replies")
    command = start(inbound)
    assert command.identity == EventIdentity("urn:test", "evt-1")
    assert command.service_id == 21456878
    assert command.fields == {"state_id": 24, "task_type": "customer info"}
    assert command.attached_data == {"Survey": {"question1": 7}}
    assert command.position == POSITION
    assert (inbound.reply_to, inbound.correlation_id) == ("my-replies", "corr-1")


def test_a_structured_record_becomes_the_same_command_as_its_binary_twin() -> None:
    event = wire.structured_request(
        service_id=21456878,
        data=orjson.loads(BODY),
        event_id="evt-1",
        source="urn:test",
        correlation_id="corr-1",
    )
    key, value, headers = wire.encode_structured(event)
    structured = translate(POSITION, key, value, headers, RULES)
    assert structured.command == binary().command
    assert structured.correlation_id == "corr-1"


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (b"\xff\x00not a cloud event", [("x-origin", b"\x01")]),
        (b'{"specversion": "1.0", "id": "x", "source": "s", "type": "other.type"}', []),
        (None, []),
    ],
    ids=["garbage", "another-type", "no-value"],
)
def test_a_record_without_a_task_start_identity_becomes_a_dead_letter_with_a_reason(
    value: bytes | None, headers: list[tuple[str, bytes]]
) -> None:
    inbound = translate(POSITION, b"k", value, headers, RULES)
    assert isinstance(inbound.command, Undecodable)
    assert inbound.command.reason
    assert (inbound.key, inbound.value, inbound.headers) == (b"k", value, tuple(headers))


def test_an_invalid_service_id_becomes_a_rejection_that_carries_no_service_id() -> None:
    refused = rejection(binary(service_id="0"))
    assert (refused.service_id, refused.status, refused.code) == (
        None,
        400,
        "invalid_service_id",
    )
    assert [e["field"] for e in refused.body["errors"]] == ["service_id"]
    assert refused.identity == EventIdentity("urn:test", "evt-1")
    assert refused.position == POSITION


def test_an_invalid_body_becomes_a_rejection_naming_the_field_and_keeping_the_service_id() -> None:
    refused = rejection(binary(body=b'{"state_id": "x"}'))
    assert (refused.service_id, refused.status, refused.code) == (21456878, 400, "invalid_field")
    assert [e["field"] for e in refused.body["errors"]] == ["state_id"]
    assert refused.body["exception"].endswith("ContextServicesExceptionResource")


def test_a_bad_service_id_and_a_bad_body_are_reported_together_in_one_rejection() -> None:
    refused = rejection(binary(body=b'{"state_id": "x"}', service_id="abc"))
    assert [e["field"] for e in refused.body["errors"]] == ["service_id", "state_id"]
    assert "service_id" in refused.body["message"]
    assert "state_id" in refused.body["message"]
    assert refused.service_id is None


def test_a_too_large_body_outranks_a_bad_service_id_with_413() -> None:
    refused = rejection(binary(body=orjson.dumps({"x": "y" * 5000}), service_id="-1"))
    assert (refused.status, refused.code) == (413, "too_large")
    assert {e["field"] for e in refused.body["errors"]} >= {"service_id"}


def test_a_binary_body_that_is_not_json_is_rejected_not_dead_lettered() -> None:
    refused = rejection(binary(body=b'{"task_type": customer info}'))
    assert (refused.status, refused.code) == (400, "malformed_json")


# --- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply_to", "topics"),
    [(None, [LOG]), ("my-replies", [LOG, "my-replies"]), (LOG, [LOG])],
    ids=["log-only", "log-and-replyto", "replyto-is-the-log"],
)
def test_a_created_reply_goes_to_the_log_and_to_a_distinct_replyto_once_each(
    reply_to: str | None, topics: list[str]
) -> None:
    inbound = binary(reply_to=reply_to)
    records = REPLIES.created(inbound, task_for(inbound), NOW)
    assert [r.topic for r in records] == topics
    assert [r.role for r in records] == [REPLY, COPY][: len(topics)]
    assert len({(r.key, r.value, tuple(r.headers)) for r in records}) == 1


@pytest.mark.parametrize(
    ("reply_to", "topics"),
    [(None, [REJECTIONS]), ("my-replies", [REJECTIONS, "my-replies"]), (REJECTIONS, [REJECTIONS])],
    ids=["log-only", "log-and-replyto", "replyto-is-the-log"],
)
def test_a_rejected_reply_goes_to_the_rejections_topic_and_to_a_distinct_replyto_once_each(
    reply_to: str | None, topics: list[str]
) -> None:
    inbound = binary(body=b"[]", reply_to=reply_to)
    records = REPLIES.rejected(inbound, rejection(inbound), NOW)
    assert [r.topic for r in records] == topics


def test_a_created_reply_conforms_to_the_task_created_schema_and_carries_the_contract_headers() -> (
    None
):
    inbound = binary()
    task = task_for(inbound)
    (record,) = REPLIES.created(inbound, task, NOW)
    reply = TaskCreated.model_validate(orjson.loads(record.value or b""))
    assert reply.location == "http://x/service/21456878/tasks/15928"
    assert (reply.task_id, reply.service_id, reply.correlation_id) == (15928, 21456878, "corr-1")
    assert reply.task.attached_data == {"Survey": {"question1": 7}}
    assert (reply.task.source_topic, reply.task.source_partition, reply.task.source_offset) == (
        "requests",
        2,
        41,
    )
    headers = headers_of(record)
    assert headers["ce_type"] == wire.TYPE_TASK_CREATED.encode()
    assert headers["ce_id"] == wire.reply_event_id("urn:test", "evt-1").encode()
    assert headers["ce_correlationid"] == b"corr-1"
    assert headers["ce_serviceid"] == b"21456878"
    assert headers["ce_time"] == NOW.encode()
    assert record.key == b"21456878"


def test_a_rejected_reply_conforms_to_task_rejected_and_omits_an_invalid_service_id() -> None:
    inbound = binary(body=b'{"state_id": "x"}', service_id="abc", correlation_id=None)
    (record,) = REPLIES.rejected(inbound, rejection(inbound), NOW)
    reply = TaskRejected.model_validate(orjson.loads(record.value or b""))
    assert (reply.service_id, reply.status, reply.code.value) == (None, 400, "invalid_service_id")
    assert [e.field for e in reply.error.errors] == ["service_id", "state_id"]
    headers = headers_of(record)
    assert headers["ce_type"] == wire.TYPE_TASK_REJECTED.encode()
    assert headers["ce_id"] == wire.reply_event_id("urn:test", "evt-1").encode()
    assert "ce_serviceid" not in headers
    assert "ce_correlationid" not in headers
    assert record.key is None


def test_the_reply_id_is_the_same_for_every_reply_to_one_request_whatever_its_outcome() -> None:
    accepted = binary()
    rejected = binary(body=b"[]")
    created = REPLIES.created(accepted, task_for(accepted), NOW)[0]
    created_again = REPLIES.created(accepted, task_for(accepted), "later")[0]
    refused = REPLIES.rejected(rejected, rejection(rejected), NOW)[0]
    ids = {headers_of(r)["ce_id"] for r in (created, created_again, refused)}
    assert ids == {wire.reply_event_id("urn:test", "evt-1").encode()}


# --- what one record may carry: reply topics and correlation ids -------------------------------


@pytest.mark.parametrize(
    ("reply_to", "problem"),
    [
        ("has space", "not a Kafka topic name"),
        ("caf\u00e9", "not a Kafka topic name"),
        (".", "not a Kafka topic name"),
        ("..", "not a Kafka topic name"),
        ("x" * 250, "at most 249"),
        ("__consumer_offsets", "internal topic"),
        ("requests", "requests or dead-letter topic"),
        ("dlq", "requests or dead-letter topic"),
    ],
    ids=["space", "non-ascii", "dot", "dot-dot", "250-chars", "internal", "requests", "dlq"],
)
def test_an_unusable_reply_topic_is_a_rejection_naming_replyto_and_no_copy_goes_there(
    reply_to: str, problem: str
) -> None:
    inbound = binary(reply_to=reply_to)
    refused = rejection(inbound)
    assert (refused.status, refused.code) == (400, "invalid_reply_to")
    assert [e["field"] for e in refused.body["errors"]] == ["replyto"]
    assert problem in refused.body["errors"][0]["problem"]
    assert inbound.reply_to is None
    assert [r.topic for r in REPLIES.rejected(inbound, refused, NOW)] == [REJECTIONS]


def test_a_reply_topic_of_249_legal_characters_is_used() -> None:
    name = "a.b_c-D9" * 31 + "x"
    assert len(name) == 249
    inbound = binary(reply_to=name)
    assert start(inbound)
    assert inbound.reply_to == name


def test_an_over_long_correlation_id_is_rejected_and_echoed_cut_to_the_limit() -> None:
    inbound = binary(correlation_id="c" * (MAX_CORRELATION_ID_LENGTH + 1))
    refused = rejection(inbound)
    assert (refused.status, refused.code) == (400, "invalid_attribute")
    assert [e["field"] for e in refused.body["errors"]] == ["correlationid"]
    assert inbound.correlation_id == "c" * MAX_CORRELATION_ID_LENGTH
    (record,) = REPLIES.rejected(inbound, refused, NOW)
    assert headers_of(record)["ce_correlationid"] == b"c" * MAX_CORRELATION_ID_LENGTH


def test_envelope_problems_and_body_problems_are_reported_together() -> None:
    refused = rejection(binary(body=b'{"state_id": "x"}', reply_to="bad topic"))
    assert [e["field"] for e in refused.body["errors"]] == ["replyto", "state_id"]


# --- records that cannot be read or translated -------------------------------------------------


def test_a_record_the_client_could_not_parse_becomes_a_dead_letter_with_escaped_header_names() -> (
    None
):
    record = UnparseableRecord(
        "requests", 2, 41, b"k", b"v", ((b"\xff\xfe-name", b"\x00"), (b"ok", None)),
        "a header name is not UTF-8",
    )  # fmt: skip
    inbound = consumed(record, RULES)
    assert isinstance(inbound.command, Undecodable)
    assert "not UTF-8" in inbound.command.reason
    dead = REPLIES.dead_letters.of(inbound, inbound.command.reason)
    assert (dead.key, dead.value) == (b"k", b"v")
    assert list(dead.headers[:2]) == [("\\xff\\xfe-name", b"\x00"), ("ok", None)]
    assert headers_of(dead)[wire.DLQ_OFFSET] == b"41"


def test_a_record_whose_bytes_could_not_be_read_is_dead_lettered_as_those_bytes() -> None:
    record = UnparseableRecord("requests", 2, 41, None, None, (), "corrupt record", raw=b"\x01\x02")
    inbound = consumed(record, RULES)
    dead = REPLIES.dead_letters.of(inbound, "corrupt record")
    assert (dead.key, dead.value) == (None, b"\x01\x02")


def test_a_record_whose_translation_raises_becomes_a_dead_letter_naming_the_error() -> None:
    class Exploding(Rules):
        def reply_to_problem(self, name: str) -> str | None:
            raise RecursionError(name)

    key, value, headers = wire.encode_request_binary(
        service_id=1, body=b"{}", event_id="e", source="s", reply_to="boom"
    )
    inbound = consumed(FakeRecord("requests", 0, 3, key, value, tuple(headers)), Exploding(LIMITS))
    assert isinstance(inbound.command, Undecodable)
    assert "RecursionError('boom')" in inbound.command.reason


# --- dead letters and what replaces a refused record ------------------------------------------


@pytest.mark.parametrize("value", [b"\xff\x00garbage", None], ids=["bytes", "none"])
def test_a_dead_letter_keeps_key_value_and_headers_and_appends_where_and_why(
    value: bytes | None,
) -> None:
    original: list[tuple[str, bytes | None]] = [("x-origin", b"\x01\x02"), ("x-origin", b"again")]
    inbound = translate(POSITION, b"some-key", value, original, RULES)
    assert isinstance(inbound.command, Undecodable)
    (record,) = REPLIES.records([inbound], [inbound.command])
    assert (record.topic, record.key, record.value, record.role) == (
        "dlq", b"some-key", value, DEAD_LETTER)  # fmt: skip
    assert list(record.headers[:2]) == original
    added = dict(record.headers[2:])
    assert added[wire.DLQ_ERROR] == inbound.command.reason.encode()
    assert (added[wire.DLQ_TOPIC], added[wire.DLQ_PARTITION], added[wire.DLQ_OFFSET]) == (
        b"requests", b"2", b"41")  # fmt: skip
    assert wire.DLQ_TRUNCATED not in added


def test_a_dead_letter_over_the_record_limit_is_cut_to_fit_and_says_what_it_was() -> None:
    limit = SETTINGS.contract.max_reply_record_bytes
    big = b"v" * (3 * limit)
    headers: list[tuple[str, bytes | None]] = [("x-big", b"h" * limit), ("x-small", b"s")]
    inbound = translate(POSITION, b"k" * limit, big, headers, RULES)
    dead = REPLIES.dead_letters.of(inbound, "no identity")
    size = len(dead.key or b"") + len(dead.value or b"")
    size += sum(len(n) + len(v or b"") for n, v in dead.headers)
    assert size <= limit
    assert (dead.value or b"") == big[: len(dead.value or b"")]
    assert len(dead.value or b"") > limit // 2
    header_bytes = limit + len("x-big") + len("x-small") + 1
    assert headers_of(dead)[wire.DLQ_TRUNCATED] == (
        f"key={limit} value={3 * limit} headers={header_bytes}".encode()
    )


def test_a_refused_reply_becomes_a_dead_letter_then_one_of_headers_only_then_nothing() -> None:
    inbound = binary(reply_to="their-replies")
    reply, copy = REPLIES.created(inbound, task_for(inbound), NOW)
    instead = REPLIES.instead_of(Undelivered(reply, "MessageSizeTooLargeError"))
    assert instead is not None
    assert (instead.topic, instead.role, instead.value) == ("dlq", DEAD_LETTER, BODY)
    reason = (headers_of(instead)[wire.DLQ_ERROR] or b"").decode()
    assert LOG in reason
    assert "MessageSizeTooLargeError" in reason
    copied = REPLIES.instead_of(Undelivered(copy, "TopicAuthorizationFailedError"))
    assert copied is not None
    assert "their-replies" in (headers_of(copied)[wire.DLQ_ERROR] or b"").decode()
    last = REPLIES.instead_of(Undelivered(instead, "still refused"))
    assert last is not None
    assert (last.role, last.key, last.value) == (LAST_RESORT, None, None)
    assert "still refused" in (headers_of(last)[wire.DLQ_ERROR] or b"").decode()
    assert REPLIES.instead_of(Undelivered(last, "refused again")) is None


# --- ends, extension updates, tenants, other clients' headers


def request(event_type: str, body: bytes, rules: Rules = RULES, **attributes: object) -> Inbound:
    key, value, headers = wire.encode_request_binary(
        service_id=21456878, body=body, event_id="evt-9", source="urn:test",
        event_type=event_type, **attributes,  # type: ignore[arg-type]
    )  # fmt: skip
    return translate(POSITION, key, value, headers, rules)


def test_an_end_event_becomes_an_end_command_with_its_fields_and_attached_data() -> None:
    body = b'{"disposition": "sold", "duration_note": 3, "timestamp": "2026-01-01T00:00:00Z"}'
    command = request(wire.TYPE_TASK_END, body, task_id=42).command
    assert isinstance(command, EndCommand)
    assert (command.task_id, command.service_id) == (42, 21456878)
    assert command.fields["disposition"] == "sold"
    assert command.fields["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC)
    assert command.attached_data == {"duration_note": 3}


def test_an_extension_event_becomes_an_update_of_one_extension() -> None:
    command = request(wire.TYPE_TASK_EXTENSION, b'{"q": [1, 2]}', task_id=7, extension="Survey")
    assert isinstance(command.command, ExtensionCommand)
    assert (command.command.name, command.command.value) == ("Survey", {"q": [1, 2]})


def test_an_end_without_a_task_id_is_a_rejection_naming_it() -> None:
    refused = rejection(request(wire.TYPE_TASK_END, b"{}"))
    assert refused.status == 400
    assert "task_id" in [e["field"] for e in refused.body["errors"]]


def test_an_end_is_never_read_as_a_start() -> None:
    refused = rejection(request(wire.TYPE_TASK_END, b'{"est_duration": 5}', task_id=1))
    assert "est_duration" in [e["field"] for e in refused.body["errors"]]


def test_with_tenants_configured_a_request_without_one_or_with_an_unknown_one_is_refused() -> None:
    rules = Rules(LIMITS, ("requests",), Tenancy.parse("acme,globex"))
    missing = rejection(request(wire.TYPE_TASK_START, b"{}", rules))
    assert (missing.status, missing.code) == (400, "invalid_tenant")
    assert missing.body["message"].startswith("Invalid tenant specified : no tenant specified")
    unknown = rejection(request(wire.TYPE_TASK_START, b"{}", rules, tenant="initech"))
    assert "'ContactCenterId'='initech' not configured" in unknown.body["message"]
    accepted = request(wire.TYPE_TASK_START, b"{}", rules, tenant="acme", group="sales")
    assert isinstance(accepted.command, StartCommand)
    assert (accepted.command.tenant, accepted.command.group) == ("acme", "sales")
    single = request(wire.TYPE_TASK_START, b"{}", tenant="acme")
    assert isinstance(single.command, StartCommand)
    assert single.command.tenant is None, "single-tenant mode ignores the attribute"


def test_a_spring_correlation_header_and_the_trace_context_come_back_on_the_reply() -> None:
    key, value, headers = wire.encode_request_binary(
        service_id=21456878, body=BODY, event_id="evt-9", source="urn:test",
        trace={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )  # fmt: skip
    raw_id = bytes(range(0xF0, 0x100))
    headers += [("kafka_replyTopic", b"spring.replies"), ("kafka_correlationId", raw_id)]
    inbound = translate(POSITION, key, value, headers, RULES)
    assert inbound.reply_to == "spring.replies"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    identity = EventIdentity("urn:test", "evt-9")
    task = Task(7, 21456878, {"timestamp": at}, "{}", identity, at, POSITION)
    records = REPLIES.created(inbound, task, NOW)
    assert [r.topic for r in records] == [SETTINGS.topics.created, "spring.replies"]
    for record in records:
        sent = dict(record.headers)
        assert sent["kafka_correlationId"] == raw_id
        assert sent["traceparent"].startswith(b"00-0af76519")


def test_the_tuples_built_per_record_are_whole() -> None:
    # The per-record path builds these NamedTuples with tuple.__new__ (no count check):
    # `_make` refuses a tuple of the wrong length.
    record = FakeRecord("requests", 2, 41, b"21456878", BODY, tuple(binary().headers))
    inbound = consumed(record, RULES)
    assert Inbound._make(inbound) == inbound
    assert Position._make(inbound.position) == POSITION
    command = start(inbound)
    assert EventIdentity._make(command.identity) == EventIdentity("urn:test", "evt-1")
    envelope = wire.decode_request(BODY, inbound.headers)  # type: ignore[arg-type]
    assert wire.Envelope._make(envelope) == envelope
    valid = validate_event(EventKind.START, "21456878", BODY, LIMITS)
    assert ValidEvent._make(valid) == valid
