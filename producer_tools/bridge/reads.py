"""The routes that read tasks, straight from PostgreSQL (`consumer.readside.TaskReader`):
Query Task by ID and Query Tasks (all, active, completed). Only the caller's service and tenant
are seen: another's task is exactly an unknown one."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response

from producer_tools.bridge import openapi
from producer_tools.bridge.deps import AUTHENTICATED, BridgeDep, CallerDep, ServiceId, tasks
from producer_tools.bridge.errors import JSON, NotFoundError
from producer_tools.bridge.query_params import parse_filter
from producer_tools.bridge.representation import Extensions, render_task, render_tasks
from schemas.ids import parse_service_id

TASKS = (
    "/services/{service_id}/tasks/{task_id:int}",
    "/service/{service_id}/tasks/{task_id:int}",  # the form the Location uses
)
QUERIES = {
    "all": "/services/{service_id}/tasks",
    "active": "/services/{service_id}/tasks/active",
    "completed": "/services/{service_id}/tasks/completed",
}

ExtensionsParam = Annotated[
    list[str] | None,
    Query(description="Attached data to include: `*` for all, or comma-separated names."),
]


async def read_task(
    service_id: ServiceId,
    task_id: Annotated[int, Path(description="The task's 32-bit id.")],
    bridge: BridgeDep,
    caller: CallerDep,
    extensions: ExtensionsParam = None,
) -> Response:
    """The task, with the attached data `extensions` asks for."""
    checked = parse_service_id(service_id)
    task = await bridge.reader.task(checked, task_id, caller.tenant)
    if task is None:
        raise NotFoundError(f"Not found: service {checked} has no task {task_id}.")
    return Response(render_task(task, Extensions.parse(extensions or [])), media_type=JSON)


for _path in TASKS:
    tasks.add_api_route(
        _path,
        read_task,
        methods=["GET"],
        name=f"read_task{'_singular' if _path.startswith('/service/') else ''}",
        response_model=None,
        responses=openapi.TASK_RESPONSES,
        summary="Read a task (CV.WS.SRV.16)",
        dependencies=AUTHENTICATED,
    )


def _query_route(state: str) -> None:
    async def query_tasks(  # keyword-only: FastAPI passes every parameter by name
        *,
        service_id: ServiceId,
        bridge: BridgeDep,
        caller: CallerDep,
        state_id: Annotated[str | None, Query(description="Only tasks in this state.")] = None,
        task_types: Annotated[
            list[str] | None,
            Query(
                description="Only tasks of these types: comma-separated type ids or names (a "
                "decimal token matches the id and the name written the same)."
            ),
        ] = None,
        extensions: ExtensionsParam = None,
        limit: Annotated[
            str | None, Query(description="Most tasks in the answer (1 .. 1000, default 100).")
        ] = None,
        after: Annotated[
            str | None,
            Query(description="The last task id of the previous page: only greater ids follow."),
        ] = None,
    ) -> Response:
        checked = parse_service_id(service_id)
        wanted = parse_filter(
            state_id=state_id, task_types=task_types or (), limit=limit, after=after
        )
        tasks = await bridge.reader.query(
            checked,
            caller.tenant,
            state=state,
            state_id=wanted.state_id,
            task_types=wanted.task_types,
            limit=wanted.limit,
            after=wanted.after,
        )
        return Response(render_tasks(tasks, Extensions.parse(extensions or [])), media_type=JSON)

    query_tasks.__doc__ = openapi.QUERY_DESCRIPTIONS[state]
    tasks.add_api_route(
        QUERIES[state],
        query_tasks,
        methods=["GET"],
        name=f"query_{state}_tasks" if state != "all" else "query_tasks",
        response_model=None,
        responses=openapi.QUERY_RESPONSES,
        summary=openapi.QUERY_SUMMARIES[state],
        dependencies=AUTHENTICATED,
    )


for _state in QUERIES:
    _query_route(_state)
