"""The bridge's cheap input checks and task rendering, with no I/O."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers

from producer_tools.bridge import inputs
from producer_tools.bridge.errors import BadRequestError
from producer_tools.bridge.representation import Extensions, render_task
from schemas.replies import ErrorCode, StoredTask
from schemas.task_start import Limits, TaskStartValidationError
from schemas.validation import BODY_NAMES, EventKind, validate_event
from tests.reference import REFERENCE_ATTACHED

LIMITS = Limits(max_body_bytes=2048, max_string_length=64)


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "application/json",
        "Application/JSON",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",  # what real Context Services clients send
        "application/json;CHARSET=utf-8",
        'application/json;charset="UTF-8"',
        "application/json ; charset = UTF-8",
        "application/vnd.genesys.task+json",
        "application/problem+json; charset=utf8",
    ],
)
def test_json_content_types_and_a_missing_one_are_accepted(content_type: str | None) -> None:
    inputs.check_content_type(content_type)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/json; charset=iso-8859-1",
        "application/json;charset=UTF-16",
        "application/json;charset=us-ascii",
        'application/json;charset="windows-1252"',
        "application/json;charset=",
        "application/json;charset=utf-8;charset=latin1",
        "application/cloudevents+json",
        "text/json+xml",
    ],
)
def test_other_content_types_are_a_415(content_type: str) -> None:
    with pytest.raises(TaskStartValidationError) as caught:
        inputs.check_content_type(content_type)
    assert caught.value.status == 415
    assert caught.value.code is ErrorCode.UNSUPPORTED_MEDIA_TYPE


def test_an_accepted_content_type_is_remembered_and_a_refused_one_refused_every_time() -> None:
    inputs.check_content_type.cache_clear()
    for _ in range(2):
        inputs.check_content_type("application/json")
        with pytest.raises(TaskStartValidationError):
            inputs.check_content_type("text/plain")
    info = inputs.check_content_type.cache_info()
    assert (info.hits, info.currsize) == (1, 1)  # the refusal is not cached


def test_a_declared_length_over_the_limit_is_a_413_before_reading() -> None:
    inputs.check_declared_length("2048", LIMITS)
    with pytest.raises(TaskStartValidationError) as caught:
        inputs.check_declared_length("2049", LIMITS)
    assert caught.value.status == 413
    with pytest.raises(BadRequestError):
        inputs.check_declared_length("many", LIMITS)


@pytest.mark.parametrize("kind", list(EventKind))
def test_an_early_413_names_the_body_and_reads_as_the_shared_validation_s(kind: EventKind) -> None:
    names = {
        "task_id": None if kind is EventKind.START else 7,
        "extension": "Note" if kind is EventKind.EXTENSION else None,
    }
    with pytest.raises(TaskStartValidationError) as early:
        inputs.check_declared_length("2049", LIMITS, kind)
    with pytest.raises(TaskStartValidationError) as late:
        validate_event(kind, "1", b" " * 2049, LIMITS, **names)
    assert early.value.code is late.value.code is ErrorCode.TOO_LARGE
    assert early.value.message.startswith(f"The {BODY_NAMES[kind]} is too large: Content-Length")
    assert early.value.message == late.value.message.replace(": 2049", ": Content-Length is 2049")


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_reading_stops_with_a_413_as_soon_as_the_body_outgrows_the_limit() -> None:
    assert await inputs.read_body(_chunks(b"a" * 1024, b"b" * 1024), LIMITS) == (
        b"a" * 1024 + b"b" * 1024
    )

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1000

    with pytest.raises(TaskStartValidationError) as caught:
        await inputs.read_body(endless(), LIMITS)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("values", "key"),
    [([], None), (["abc"], "abc"), ([' "quoted key" '], "quoted key"), (["a b~!"], "a b~!")],
)
def test_a_valid_idempotency_key_is_the_event_id(values: list[str], key: str | None) -> None:
    assert inputs.idempotency_key(values) == key


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([""], "must not be empty"),
        (['""'], "must not be empty"),
        (["x" * 257], "at most 256"),
        (["caf\u00e9"], "printable ASCII"),
        (["tab\there"], "printable ASCII"),
        (["a", "b"], "once"),
    ],
)
def test_an_invalid_idempotency_key_is_a_400_naming_the_header(
    values: list[str], problem: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        inputs.idempotency_key(values)
    assert caught.value.status == 400
    assert caught.value.errors[0].field == "Idempotency-Key"
    assert problem in caught.value.message


@pytest.mark.parametrize(
    ("event_id", "problem"),
    [
        ("\x00", "printable ASCII"),
        ("a\x1fb", "printable ASCII"),
        ("\ufffd", "printable ASCII"),  # how an invalid UTF-8 percent-encoding arrives
        ("e" * 257, "at most 256"),
        ("", "must not be empty"),
    ],
)
def test_a_status_id_no_request_can_have_is_a_400_naming_event_id(
    event_id: str, problem: str
) -> None:
    with pytest.raises(BadRequestError) as caught:
        inputs.check_event_id(event_id)
    assert caught.value.status == 400
    assert caught.value.errors[0].field == "event_id"
    assert problem in caught.value.message


def test_every_id_a_bridge_request_can_have_is_a_valid_status_id() -> None:
    for event_id in (
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "k" * 256,
        " ~!\"#$%&'()*+,-./:;<=>?@[\\]",
    ):
        inputs.check_event_id(event_id)


def _task(attached: bytes) -> StoredTask:
    return StoredTask.model_validate_json(
        b'{"task_id": 7, "service_id": 21456878, "state_id": 24, "task_type": "customer info",'
        b' "est_duration": 460, "session_id": null, "interaction_id": "42", "media_type": 1003,'
        b' "timestamp": "2010-05-20T15:41:52.380Z", "attached_data": %s,'
        b' "event": {"source": "urn:test", "id": "e1"}, "received_at": "2010-05-20T15:41:53.000Z",'
        b' "source_topic": "t", "source_partition": 0, "source_offset": 0}' % attached
    )


def test_a_task_renders_its_standard_fields_and_started_without_attached_data() -> None:
    document = orjson.loads(render_task(_task(orjson.dumps(REFERENCE_ATTACHED))))
    assert document == {
        "task_id": 7,
        "service_id": 21456878,
        "state_id": 24,
        "task_type": "customer info",
        "est_duration": 460,
        "started": {
            "timestamp": "2010-05-20T15:41:52.380Z",
            "interaction_id": "42",
            "media_type": 1003,
        },
    }


def test_extensions_select_attached_data_verbatim_and_in_stored_order() -> None:
    stored = orjson.dumps({"b": 1.5, "a": [1, {"z": None, "y": True}], "c": "x"})
    task = _task(stored)
    everything = render_task(task, Extensions.parse(["*"]))
    assert everything.endswith(b',"b":1.5,"a":[1,{"z":null,"y":true}],"c":"x"}')
    chosen = orjson.loads(render_task(task, Extensions.parse(["c,a", "unknown"])))
    assert list(chosen)[-2:] == ["a", "c"]
    assert "b" not in chosen


def test_a_path_with_percent_encodings_that_are_not_utf8_is_a_400_naming_the_field() -> None:
    inputs.check_utf8_path(b"/x/extensions/caf%C3%A9%20cr%C3%A8me", "extension_name")
    for raw in (b"/x/extensions/%FF", b"/x/extensions/caf%C3", b"/x/extensions/%C0%AF"):
        with pytest.raises(BadRequestError) as caught:
            inputs.check_utf8_path(raw, "extension_name")
        assert [e.field for e in caught.value.errors] == ["extension_name"]


_NAMES = st.sampled_from(
    [b"content-type", b"content-length", b"idempotency-key", b"contactcenterid", b"x-other"]
)


@given(
    st.lists(st.tuples(_NAMES, st.binary(max_size=8).map(bytes))),
    st.sampled_from(["Content-Type", "content-length", "Idempotency-Key", "ContactCenterId"]),
)
def test_request_headers_read_as_starlette_reads_them(
    raw: list[tuple[bytes, bytes]], name: str
) -> None:
    ours, theirs = inputs.RequestHeaders(raw), Headers(raw=raw)
    assert ours.get(name) == theirs.get(name)  # the first value, None when absent
    assert ours.getlist(name) == theirs.getlist(name)


def test_request_headers_keep_the_first_of_repeated_values() -> None:
    headers = inputs.RequestHeaders([(b"idempotency-key", b"a"), (b"idempotency-key", b"b")])
    assert headers.get("Idempotency-Key") == "a"
    assert headers.getlist(inputs.IDEMPOTENCY_KEY) == ["a", "b"]
    assert headers.get("traceparent") is None
    assert headers.getlist("traceparent") == []
