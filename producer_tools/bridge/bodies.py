"""The response bodies of the HTTP API, as documented in OpenAPI (errors are
`schemas.replies.ErrorBody`).

The Task representation's models are derived from the one field table (`schemas.fields`), with
the placement `representation` renders: nothing here lists a standard field by hand.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from producer_tools.bridge.representation import STARTED_FIELDS, TOP_FROM_END, TOP_FROM_START
from schemas.fields import END_BY_NAME, PYTHON_TYPES, START_BY_NAME, Kind, StandardField


class TaskIdBody(BaseModel):
    """201 Created: the id of the task (exactly this one key, as the Context Services API)."""

    task_id: int = Field(description="The 32-bit task id.")


class RequestStatusBody(BaseModel):
    """A request's state: pending (202), or applied (303 to the task): its task created
    (start), completed (end) or its extension updated (extension)."""

    state: Literal["pending", "created", "completed", "updated"] = Field(
        description="Where the request stands."
    )
    message: str = Field(description="What it means, for a person.")
    event_id: str = Field(description="The request's event id (its Idempotency-Key, if sent).")
    status_location: str = Field(description="This request's status resource.")
    task_id: int | None = Field(default=None, description="The task, once applied.")
    location: str | None = Field(default=None, description="The task's URL, once applied.")
    extension: str | None = Field(
        default=None, description="The extension an applied extension request updated."
    )


class AliveBody(BaseModel):
    """The process is up."""

    status: Literal["alive"] = "alive"


class ReadyBody(BaseModel):
    """Both the broker and the database answer."""

    status: Literal["ready"] = "ready"
    kafka: Literal["ok"] = "ok"
    postgresql: Literal["ok"] = "ok"


# --- the Task representation, from the field table

_TIMESTAMP = "UTC to the millisecond: `2010-05-20T15:41:52.380Z`."


def _optional(field: StandardField) -> tuple[Any, Any]:
    kind = str | None if field.kind is Kind.TIMESTAMP else PYTHON_TYPES[field.kind]
    return kind, Field(default=None, description=field.description)


def _model(name: str, doc: str, extra: bool, fields: dict[str, tuple[Any, Any]]) -> type[BaseModel]:
    config = ConfigDict(title=name, extra="allow" if extra else "ignore")
    model: type[BaseModel] = create_model(name, __config__=config, __doc__=doc, **fields)  # type: ignore[call-overload]  # field definitions built at run time
    return model


StartedBody = _model(
    "TaskStarted",
    "The task's start event (its task-level fields are at the top level of the task).",
    False,
    {
        "timestamp": (str, Field(description=f"Start time, {_TIMESTAMP}")),
        **{name: _optional(START_BY_NAME[name]) for name in STARTED_FIELDS},
    },
)

CompletedBody = _model(
    "TaskEnded",
    "The Task End Event as stored: its timestamp, its fields (`disposition` and "
    "`disposition_desc` are at the top level of the task) and its attached data.",
    True,
    {
        "timestamp": (str, Field(description=f"End time, {_TIMESTAMP}")),
        **{
            name: _optional(field)
            for name, field in END_BY_NAME.items()
            if name not in TOP_FROM_END and name != "timestamp"
        },
    },
)

TaskBody = _model(
    "Task",
    "A task. Fields its events did not give are omitted; `completed`, `duration`, "
    "`disposition` and `disposition_desc` once it is completed; attached data (any other key) "
    "only as asked by `?extensions=`.",
    True,
    {
        "task_id": (int, Field(description="The 32-bit task id.")),
        "service_id": (int, Field(description="The 64-bit service id.")),
        **{name: _optional(START_BY_NAME[name]) for name in TOP_FROM_START},
        "started": (StartedBody, Field(description="The start event.")),
        "completed": (CompletedBody | None, Field(default=None, description="The end event.")),
        "duration": (
            int | None,
            Field(default=None, description="Milliseconds from start to completion."),
        ),
        **{name: _optional(END_BY_NAME[name]) for name in TOP_FROM_END},
    },
)

TaskListBody: type[BaseModel] = create_model(
    "TaskList",
    __base__=RootModel,
    __doc__="Query Tasks: the tasks in task id order.",
    root=(list[TaskBody], ...),  # type: ignore[valid-type]  # TaskBody is built from the field table
)
