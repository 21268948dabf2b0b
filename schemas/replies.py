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
    INVALID_REPLY_TO = "invalid_reply_to"
    """The requested reply topic cannot be used."""
    INVALID_ATTRIBUTE = "invalid_attribute"
    """A CloudEvents attribute we cannot accept (e.g. an over-long correlation id)."""

    @property
    def http_status(self) -> int:
        """The HTTP status the bridge answers with for this code."""
        return _STATUS[self]


_STATUS: dict[ErrorCode, int] = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.NOT_AN_OBJECT: 400,
    ErrorCode.INVALID_FIELD: 400,
    ErrorCode.INVALID_SERVICE_ID: 400,
    ErrorCode.INVALID_REPLY_TO: 400,
    ErrorCode.INVALID_ATTRIBUTE: 400,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
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
    """The identity of the task-start event a reply answers (the idempotency key)."""

    model_config = ConfigDict(frozen=True)

    source: str = Field(description="CloudEvents `source` of the request.")
    id: str = Field(description="CloudEvents `id` of the request.")


class StoredTask(BaseModel):
    """A task as persisted: every field of its start event plus what the consumer assigned."""

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


class TaskCreated(BaseModel):
    """Reply (and created-events log record) for a task that exists."""

    kind: Literal["task.created"] = "task.created"
    task_id: int
    service_id: int
    location: str = Field(description="`${base_uri}/service/${service_id}/tasks/${task_id}`.")
    event: EventRef
    correlation_id: str | None = None
    task: StoredTask


class TaskRejected(BaseModel):
    """Reply for a task-start event that failed validation; it is recorded and never retried."""

    kind: Literal["task.rejected"] = "task.rejected"
    service_id: int | None = None
    status: int = Field(description="The HTTP status the bridge answers with.")
    code: ErrorCode
    event: EventRef
    correlation_id: str | None = None
    error: ErrorBody
