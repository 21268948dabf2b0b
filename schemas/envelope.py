"""The structured-mode task-start CloudEvent, as a model: documentation and JSON Schema only.

Records are read and written by `schemas.wire` (the one module that knows the record layout);
this model describes the JSON value of a structured-mode record, as `wire.structured_request`
lays it out, so that producers in other languages have a schema to follow.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas import wire
from schemas.task_start import SERVICE_ID_MAX, TaskStartEvent

Identity = Annotated[str, Field(min_length=1, max_length=wire.MAX_ID_LENGTH)]
ServiceIdText = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,18}$")]
ServiceIdNumber = Annotated[int, Field(ge=1, le=SERVICE_ID_MAX)]


class TaskStartCloudEvent(BaseModel):
    """A task-start request in CloudEvents 1.0 structured mode (`application/cloudevents+json`).

    `source` + `id` identify the event: processing the same pair again never creates a second
    task. Other CloudEvents extension attributes are allowed and kept. An exported record
    whose body is not faithful as JSON carries it as `data_base64` instead of `data`.
    """

    model_config = ConfigDict(extra="allow", title="TaskStartCloudEvent")

    specversion: Literal["1.0"] = Field(description="CloudEvents specification version.")
    id: Identity = Field(description="Event id, unique per source: the idempotency key.")
    source: Identity = Field(description="URI-reference naming the producer (e.g. a URN).")
    type: Literal["com.genesys.ucs.task.start.v1"] = Field(
        description="Event type of a task-start request."
    )
    datacontenttype: Literal["application/json"] = Field(
        default="application/json", description="Media type of `data`."
    )
    serviceid: ServiceIdText | ServiceIdNumber = Field(
        description="The 64-bit service id (1 .. 9223372036854775807), in decimal; "
        "`wire.structured_request` writes it as a string."
    )
    time: str | None = Field(
        default=None, description="When the event happened (RFC 3339), informational."
    )
    subject: str | None = Field(default=None, description="CloudEvents subject, unused.")
    replyto: str | None = Field(
        default=None, description="Topic for the reply (else the default reply topics)."
    )
    correlationid: str | None = Field(
        default=None, description="Echoed on the reply so a caller can match it to the request."
    )
    data: TaskStartEvent = Field(
        description="The Task Start Event: the same JSON as the HTTP body."
    )
