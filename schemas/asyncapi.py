"""The AsyncAPI 3 document of every channel, generated from the same models as the JSON Schemas.

Written to `schemas/asyncapi.json` by `ucs-tasks schemas export` (a unit test fails when stale and
validates it against the AsyncAPI 3.0.0 schema); the bridge serves it at `/asyncapi.json`.
It describes the service's side: what the consumer receives and sends on each topic.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from schemas import wire
from schemas.envelope import TaskStartCloudEvent
from schemas.extension import TaskExtensionValue
from schemas.replies import TaskCompleted, TaskCreated, TaskExtensionUpdated, TaskRejected
from schemas.task_end import TaskEndEvent
from schemas.task_start import TaskStartEvent

DOCUMENT: Final = Path(__file__).parent / "asyncapi.json"
"""Where `ucs-tasks schemas export` writes the document."""
VERSION: Final = "1.0.0"
_REF: Final = "#/components/schemas/{model}"
_KAFKA: Final = {"bindingVersion": "0.5.0"}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _headers(required: list[str], properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_CE: Final = {
    "ce_specversion": _string("CloudEvents spec version.", const=wire.SPECVERSION),
    "ce_id": _string(
        "Event id, unique per source: with ce_source the idempotency key.",
        minLength=1,
        maxLength=wire.MAX_ID_LENGTH,
    ),
    "ce_source": _string(
        "URI-reference naming the producer.", minLength=1, maxLength=wire.MAX_ID_LENGTH
    ),
    "ce_serviceid": _string("The 64-bit service id, in decimal.", pattern=r"^[1-9][0-9]{0,18}$"),
    "ce_time": _string("When the event happened (RFC 3339), informational."),
    "ce_replyto": _string(
        "A topic for a copy of the reply (a legal, non-internal Kafka topic name). Spring's "
        "`kafka_replyTopic` and FastStream's `reply_to` headers are accepted as aliases.",
        maxLength=249,
    ),
    "ce_correlationid": _string(
        "Echoed on the reply. Spring's `kafka_correlationId` and FastStream's `correlation_id` "
        "headers are accepted as aliases.",
    ),
    "ce_tenantid": _string(
        "The caller's tenant (ContactCenterId), required when UCS_TENANTS is set."
    ),
    "ce_groupid": _string("The caller's business unit (GroupId), optional."),
    "traceparent": _string("W3C trace context, echoed on the reply."),
    "tracestate": _string("W3C trace state, echoed on the reply."),
    "content-type": _string("application/json (binary mode)."),
}
_TASK_ID: Final = _string("The 32-bit task id, in decimal.", pattern=r"^[1-9][0-9]{0,9}$")


def _request(
    name: str, type_: str, model: type[BaseModel], summary: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    properties = {**_CE, "ce_type": _string("The event type.", const=type_), **(extra or {})}
    required = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_serviceid", *(extra or {})]
    return {
        "name": name,
        "title": summary,
        "summary": summary,
        "contentType": wire.JSON_CONTENT_TYPE,
        "headers": _headers(required, properties),
        "payload": {"$ref": _REF.format(model=model.__name__)},
        "correlationId": {"location": "$message.header#/ce_correlationid"},
        "bindings": {"kafka": {**_KAFKA, "key": _string("The service id, in decimal.")}},
    }


def _reply(name: str, type_: str, model: type[BaseModel], summary: str) -> dict[str, Any]:
    properties = {
        "ce_specversion": _CE["ce_specversion"],
        "ce_id": _string("Deterministic per request: the same request's reply has the same id."),
        "ce_source": _string("The consumer.", const=wire.REPLY_SOURCE),
        "ce_type": _string("The reply type.", const=type_),
        "ce_time": _string("When the reply was made (RFC 3339, UTC, ms)."),
        "ce_serviceid": _CE["ce_serviceid"],
        "ce_correlationid": _string("The request's correlation id, when it sent one."),
        "traceparent": _CE["traceparent"],
        "tracestate": _CE["tracestate"],
    }
    return {
        "name": name,
        "title": summary,
        "summary": summary,
        "contentType": wire.JSON_CONTENT_TYPE,
        "headers": _headers(["ce_specversion", "ce_id", "ce_source", "ce_type"], properties),
        "payload": {"$ref": _REF.format(model=model.__name__)},
        "correlationId": {"location": "$message.header#/ce_correlationid"},
        "bindings": {"kafka": {**_KAFKA, "key": _string("The service id, in decimal.")}},
    }


_DEAD_LETTER: Final = {
    "name": "DeadLetter",
    "title": "A record the service could not process",
    "summary": "The original record's key, value and headers, untouched, plus headers naming "
    "the error and where the record was read.",
    "headers": _headers(
        [wire.DLQ_ERROR, wire.DLQ_TOPIC, wire.DLQ_PARTITION, wire.DLQ_OFFSET],
        {
            wire.DLQ_ERROR: _string("Why the record could not be processed."),
            wire.DLQ_TOPIC: _string("The topic it was read from."),
            wire.DLQ_PARTITION: _string("Its partition, in decimal."),
            wire.DLQ_OFFSET: _string("Its offset, in decimal."),
        },
    ),
    "payload": {"description": "The original record's value, byte for byte (any bytes)."},
}


def _messages() -> dict[str, Any]:
    return {
        "TaskStart": _request(
            "TaskStart", wire.TYPE_TASK_START, TaskStartEvent, "Start a task (binary mode)"
        ),
        "TaskStartStructured": {
            "name": "TaskStartStructured",
            "title": "Start a task (structured mode)",
            "summary": "The whole CloudEvent as JSON (what `ucs-tasks export` writes).",
            "contentType": wire.STRUCTURED_CONTENT_TYPE,
            "payload": {"$ref": _REF.format(model=TaskStartCloudEvent.__name__)},
            "bindings": {"kafka": {**_KAFKA, "key": _string("The service id, in decimal.")}},
        },
        "TaskEnd": _request(
            "TaskEnd",
            wire.TYPE_TASK_END,
            TaskEndEvent,
            "Complete a task (Task End Event)",
            {"ce_taskid": _TASK_ID},
        ),
        "TaskExtension": _request(
            "TaskExtension",
            wire.TYPE_TASK_EXTENSION,
            TaskExtensionValue,
            "Replace the whole value of one extension of a task",
            {"ce_taskid": _TASK_ID, "ce_extension": _string("The extension's name.")},
        ),
        "TaskCreated": _reply(
            "TaskCreated", wire.TYPE_TASK_CREATED, TaskCreated, "A task exists (created or known)"
        ),
        "TaskCompleted": _reply(
            "TaskCompleted", wire.TYPE_TASK_COMPLETED, TaskCompleted, "A task was completed"
        ),
        "TaskExtensionUpdated": _reply(
            "TaskExtensionUpdated",
            wire.TYPE_TASK_EXTENSION_UPDATED,
            TaskExtensionUpdated,
            "An extension of a task was replaced",
        ),
        "TaskRejected": _reply(
            "TaskRejected", wire.TYPE_TASK_REJECTED, TaskRejected, "A request was refused"
        ),
        "DeadLetter": _DEAD_LETTER,
    }


def _schemas() -> dict[str, Any]:
    models: tuple[type[BaseModel], ...] = (
        TaskStartEvent,
        TaskStartCloudEvent,
        TaskEndEvent,
        TaskExtensionValue,
        TaskCreated,
        TaskCompleted,
        TaskExtensionUpdated,
        TaskRejected,
    )
    found: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=_REF)
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    return found


def _refs(*names: str) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/messages/{name}"} for name in names}


def _channel(address: str | None, description: str, *messages: str) -> dict[str, Any]:
    return {"address": address, "description": description, "messages": _refs(*messages)}


def _operation(action: str, channel: str, summary: str, *messages: str) -> dict[str, Any]:
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"} for name in messages],
    }


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document (default topic names; each is a `UCS_TOPIC_*` setting)."""
    requests = ("TaskStart", "TaskStartStructured", "TaskEnd", "TaskExtension")
    events = ("TaskCreated", "TaskCompleted", "TaskExtensionUpdated")
    receive = _operation("receive", "requests", "Every task request, in partition order", *requests)
    receive["reply"] = {
        "address": {"location": "$message.header#/ce_replyto"},
        "channel": {"$ref": "#/channels/replies"},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ucs-tasks",
            "version": VERSION,
            "description": "Genesys UCS Context Services tasks (Start Task CV.WS.SRV.8, Complete "
            "Task, Update Task Extension) as CloudEvents on Kafka. Requests are keyed by service "
            "id; the same source + id is never processed twice (it is answered again).",
        },
        "defaultContentType": wire.JSON_CONTENT_TYPE,
        "channels": {
            "requests": _channel(
                wire.DEFAULT_REQUEST_TOPIC, "Task requests (UCS_TOPIC_REQUESTS).", *requests
            ),
            "taskEvents": _channel(
                wire.DEFAULT_CREATED_TOPIC,
                "The task events log (UCS_TOPIC_CREATED): every created, completed and updated "
                "task, whole; kept forever; `ucs-tasks rebuild` restores the database from it.",
                *events,
            ),
            "rejections": _channel(
                wire.DEFAULT_REJECTED_TOPIC,
                "Refused requests (UCS_TOPIC_REJECTED).",
                "TaskRejected",
            ),
            "deadLetters": _channel(
                wire.DEFAULT_DEAD_LETTER_TOPIC,
                "Records that could not be processed (UCS_TOPIC_DEAD_LETTER).",
                "DeadLetter",
            ),
            "replies": _channel(
                None,
                "The topic a request names in ce_replyto (each HTTP bridge has its own, "
                "`ucs.tasks.replies.<host>-<port>`): a copy of the request's reply.",
                *events,
                "TaskRejected",
            ),
        },
        "operations": {
            "receiveTaskRequests": receive,
            "sendTaskEvents": _operation("send", "taskEvents", "Answer accepted requests", *events),
            "sendRejections": _operation(
                "send", "rejections", "Answer refused requests", "TaskRejected"
            ),
            "sendDeadLetters": _operation(
                "send", "deadLetters", "Set aside what cannot be processed", "DeadLetter"
            ),
        },
        "components": {"messages": _messages(), "schemas": _schemas()},
    }


def render() -> str:
    """The document's file text: pretty, sorted keys, trailing newline."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
