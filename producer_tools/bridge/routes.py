"""The HTTP routes: the Context Services ones (`tasks`) and the health ones (`health`).

The Context Services routes, relative to the API root (`writes` and `reads` hold them):
- `POST /services/{service_id}/tasks/start`: Start Task (201, 202 or an error);
- `POST /services/{service_id}/tasks/{task_id}/end`: Complete Task (204, 202 or an error);
- `PUT  /services/{service_id}/tasks/{task_id}/extensions/{extension_name}`: Update Task
  Extension (200 with the value, 202 or an error);
- `GET  /services/{service_id}/tasks/requests/{event_id}`: a request's status;
- `GET  /service[s]/{service_id}/tasks/{task_id}`: Query Task by ID (the Location target);
- `GET  /services/{service_id}/tasks[/active|/completed]`: Query Tasks.
`writes` and `reads` add them to `tasks` (`deps`); `install_routes` serves them under the 8.5
root `/genesys/1/cs` and, unless `UCS_BRIDGE_LEGACY_PATHS=false`, under the 8.0/8.1 root `/` as
well: a route added to `tasks` gets both forms, each in the OpenAPI document. Beside them
(`health`): `GET /healthz`, `/readyz`, `/metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from fastapi import APIRouter, FastAPI, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from producer_tools.bridge import openapi, reads, writes
from producer_tools.bridge.bodies import AliveBody, ReadyBody
from producer_tools.bridge.deps import BridgeDep, tasks
from producer_tools.bridge.errors import (
    JSON,
    OUTAGES,
    RETRY_AFTER_S,
    error_response,
    internal_detail,
)
from schemas import asyncapi
from schemas.errors import ServiceError
from schemas.replies import ErrorBody, FieldError

PREFIX = "/genesys/1/cs"
"""The 8.5 API root."""
LEGACY_PREFIX = ""
"""The 8.0/8.1 API root: the same routes without `/genesys/1/cs` (UCS_BRIDGE_LEGACY_PATHS)."""
START_PATH = PREFIX + writes.START
END_PATH = PREFIX + writes.END
EXTENSION_PATH = PREFIX + writes.EXTENSION
STATUS_PATH = PREFIX + writes.STATUS
TASK_PATHS = tuple(PREFIX + path for path in reads.TASKS)
QUERY_PATHS = {state: PREFIX + path for state, path in reads.QUERIES.items()}

DATABASE_NOT_READY = "the tasks database does not answer, or is not migrated"

health = APIRouter()


@health.get("/healthz", response_model=AliveBody, summary="Liveness")
async def healthz() -> AliveBody:
    """The process answers."""
    return AliveBody()


@health.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
    summary="Metrics (Prometheus text format)",
)
async def metrics(bridge: BridgeDep) -> Response:
    """Requests by route and status, latency, pending replies, 202s, refusals, the Kafka link."""
    return Response(generate_latest(bridge.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@health.get(
    "/asyncapi.json",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "description": "AsyncAPI 3.0.0"}},
    summary="The AsyncAPI document of the Kafka side (requests, task events, rejections)",
)
async def asyncapi_document() -> Response:
    """The same document as schemas/asyncapi.json: every channel, message and schema."""
    return Response(_ASYNCAPI, media_type="application/json")


_ASYNCAPI = orjson.dumps(asyncapi.document())


@health.get("/readyz", response_model=None, responses=openapi.READY_RESPONSES, summary="Readiness")
async def readyz(bridge: BridgeDep) -> Response:
    """200 when both the broker and the database answer, else 503 naming what does not (the
    driver's own words go to the log, not into the answer)."""
    problems: list[FieldError] = []
    if not bridge.link.ready:
        problems.append(FieldError(field="kafka", problem=bridge.link.down_reason))
    try:
        await bridge.reader.check()
    except ServiceError as exc:
        OUTAGES.warning(internal_detail(exc), "GET /readyz")
        problems.append(FieldError(field="postgresql", problem=DATABASE_NOT_READY))
    if problems:
        listed = "; ".join(f"{p.field}: {p.problem}" for p in problems)
        body = ErrorBody(message=f"Not ready: {listed}.", errors=problems)
        return error_response(503, body, {"Retry-After": str(RETRY_AFTER_S)})
    return Response(ReadyBody().model_dump_json(), media_type=JSON)


def _operation_id(prefix: str) -> Callable[[APIRoute], str]:
    def operation_id(route: APIRoute) -> str:
        return prefix + route.name

    return operation_id


def install_routes(app: FastAPI, *, legacy_paths: bool) -> None:
    """Serve the routes: `tasks` under the 8.5 root (and the 8.0/8.1 one), then `health`."""
    app.include_router(tasks, prefix=PREFIX, generate_unique_id_function=_operation_id(""))
    if legacy_paths:
        legacy = _operation_id("legacy_")
        app.include_router(tasks, prefix=LEGACY_PREFIX, generate_unique_id_function=legacy)
    app.include_router(health)
