"""Replies the consumer publishes, and the error body shared with the HTTP API."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EXCEPTION_CLASS = (
    "com.genesyslab.gsg.services.contextservices.exceptions.ContextServicesExceptionResource"
)
"""The exception class name the reference API puts in every error body (client compatibility)."""


class ErrorCode(StrEnum):
    """Why a request was refused; each code has one HTTP status."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    INVALID_FIELD = "invalid_field"
    TOO_LARGE = "too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    INVALID_SERVICE_ID = "invalid_service_id"
    ID_SPACE_EXHAUSTED = "id_space_exhausted"
    TASK_NOT_FOUND = "task_not_found"
    """No such task for that service (and tenant): unknown, or another service's."""
    TASK_COMPLETED = "task_completed"
    """The task is already completed; a completion under a new identity cannot replace it."""
    END_BEFORE_START = "end_before_start"
    """The end event's timestamp is before the task's start timestamp."""
    INVALID_TENANT = "invalid_tenant"
    """The `ContactCenterId` names no configured tenant, or is missing in multi-tenant mode."""
    INVALID_REPLY_TO = "invalid_reply_to"
    """The requested reply topic cannot be used."""
    INVALID_ATTRIBUTE = "invalid_attribute"
    """A CloudEvents attribute we cannot accept (e.g. an over-long correlation id)."""
    UNPROCESSABLE_RECORD = "unprocessable_record"
    """Reserved: a record the consumer could not process."""

    @property
    def http_status(self) -> int:
        """The HTTP status the bridge answers with for this code."""
        return _STATUS[self]


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.NOT_AN_OBJECT: 400,
    ErrorCode.INVALID_FIELD: 400,
    ErrorCode.INVALID_SERVICE_ID: 400,
    ErrorCode.END_BEFORE_START: 400,
    ErrorCode.INVALID_TENANT: 400,
    ErrorCode.INVALID_REPLY_TO: 400,
    ErrorCode.INVALID_ATTRIBUTE: 400,
    ErrorCode.TASK_NOT_FOUND: 404,
    ErrorCode.TASK_COMPLETED: 409,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.UNPROCESSABLE_RECORD: 422,
    ErrorCode.ID_SPACE_EXHAUSTED: 507,
}


class FieldError(BaseModel):
    """One validation problem: which field, and what is wrong with it."""

    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path of the offending field ('' for the whole body).")
    problem: str = Field(description="What is wrong, for a person.")


class ErrorBody(BaseModel):
    """Every 4xx/5xx body: `message` and `exception` as the reference API, plus `errors`."""

    message: str = Field(description="What is wrong and where, for a person.")
    exception: str = Field(default=EXCEPTION_CLASS, description="Reference exception class name.")
    errors: list[FieldError] = Field(default_factory=list, description="Per-field problems.")


class EventRef(BaseModel):
    """The identity of the event a reply answers (the idempotency key)."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="CloudEvents `source` of the request.")
    id: str = Field(description="CloudEvents `id` of the request.")


class StoredTask(BaseModel):
    """A task as persisted: its start event, what the consumer assigned, and its later changes.

    The created-events log (the task events log) carries it whole on every reply, so the log
    alone restores every task's state. The fields after `source_offset` were added with the
    task lifecycle and tenants; records written before them simply lack them.
    """

    task_id: int = Field(description="Assigned 32-bit task id.")
    service_id: int = Field(description="64-bit service id.")
    state_id: int | None = None
    task_type: int | str | None = None
    session_id: str | None = None
    interaction_id: str | None = None
    application_type: int | str | None = None
    application_id: int | None = None
    resource_type: int | str | None = None
    resource_id: int | None = None
    media_type: int | str | None = None
    est_duration: int | None = None
    timestamp: str = Field(description="Start time, UTC, `YYYY-MM-DDTHH:MM:SS.sssZ`.")
    attached_data: dict[str, Any] = Field(
        default_factory=dict, description="Attached data (extensions), verbatim and in order."
    )
    event: EventRef
    received_at: str = Field(description="When the consumer persisted it, UTC.")
    source_topic: str
    source_partition: int
    source_offset: int
    tenant: str | None = Field(
        default=None, description="The tenant (`ContactCenterId`); None when single-tenant."
    )
    group: str | None = Field(default=None, description="The group (`GroupId`), if one was sent.")
    completed: dict[str, Any] | None = Field(
        default=None,
        description="The Task End Event as stored (timestamp `YYYY-MM-DDTHH:MM:SS.sssZ`, its "
        "fields and attached data); None while the task is active.",
    )
    duration: int | None = Field(
        default=None, description="Milliseconds from start to completion (completed tasks)."
    )
    disposition: int | str | None = Field(
        default=None, description="The outcome: a 64-bit id or a name (completed tasks)."
    )
    disposition_desc: str | None = Field(
        default=None, description="Description of the outcome (completed tasks)."
    )
    completed_event: EventRef | None = Field(
        default=None, description="Identity of the end event that completed the task."
    )
    updated_at: str | None = Field(
        default=None, description="When the consumer last changed the task, UTC; None if never."
    )


class TaskReply(BaseModel):
    """What every reply about an existing task carries: its ids, where to read it, the whole task.

    The replies of the task-events log (`TaskCreated`, `TaskCompleted`, `TaskExtensionUpdated`):
    each holds the whole task after the change, so the log alone restores every task's state.
    """

    kind: str
    task_id: int
    service_id: int
    location: str = Field(description="`${base_uri}/service/${service_id}/tasks/${task_id}`.")
    event: EventRef = Field(description="Identity of the request this reply answers.")
    correlation_id: str | None = None
    task: StoredTask = Field(description="The whole task after the request.")


class TaskCreated(TaskReply):
    """Reply (and created-events log record) for a task that exists."""

    kind: Literal["task.created"] = "task.created"


class TaskCompleted(TaskReply):
    """Reply (and task-events log record) for a task completed by a Task End Event.

    A replayed end event (same identity) gets the same reply again and changes nothing.
    """

    kind: Literal["task.completed"] = "task.completed"


class TaskExtensionUpdated(TaskReply):
    """Reply (and task-events log record) for an extension whose value was replaced."""

    kind: Literal["task.extension.updated"] = "task.extension.updated"
    extension: str = Field(description="The extension's name.")
    value: dict[str, Any] | list[dict[str, Any]] = Field(
        description="Its new value, as stored: an object or an array of objects."
    )


class TaskRejected(BaseModel):
    """Reply for an event that was refused; it is recorded and never retried."""

    kind: Literal["task.rejected"] = "task.rejected"
    service_id: int | None = None
    task_id: int | None = Field(
        default=None, description="The task an end or extension event named, when valid."
    )
    status: int = Field(description="The HTTP status the bridge answers with.")
    code: ErrorCode
    event: EventRef
    correlation_id: str | None = None
    error: ErrorBody
