"""Start Task without the framework's per-request machinery: the bridge's hot route, served
by the same code as the FastAPI route, before FastAPI's routing and dependency resolution.

`POST {root}/services/{service_id}/tasks/start` is what the bridge exists for, and on it
FastAPI's router (a match against every route) and dependency solver (bridge, authentication,
caller, each a coroutine) cost about as much CPU as the request's own work: validation,
publishing and waiting for its reply. This ASGI middleware matches that one method and path
template itself and calls what the route's dependencies and handler call, in the same order
(`writes.start_task`): `deps.authenticated`'s check, `deps.caller`, then `writes.publish`; an error
becomes the response the app's own exception handlers give it. Everything else (another
method on that path, every other route, the OpenAPI document that still describes the route)
goes to FastAPI unchanged. It sits inside `RequestMetrics`, which labels the request by its
route template (set here as FastAPI would) and times it, and both sit in front of FastAPI's own
middleware (`app.BridgeApp`): its error, telemetry and body-limit layers have nothing to do for
a request whose errors are answered here and whose body `inputs.read_body` bounds.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from starlette.requests import Request

from producer_tools.bridge import deps, inputs, writes
from producer_tools.bridge.metrics import ASGIApp, Receive, Scope, Send
from producer_tools.bridge.state import get_bridge
from schemas.tenants import GROUP_HEADER, TENANT_HEADER
from schemas.validation import EventKind

_SEGMENT = "([^/]+)"
"""A path parameter as Starlette matches one (`{service_id}`: anything but a slash)."""


class StartTaskFastPath:
    """ASGI middleware: serves `POST <root>/services/{service_id}/tasks/start` directly."""

    def __init__(self, app: ASGIApp, roots: tuple[str, ...]) -> None:
        self._app = app
        template = re.escape(writes.START).replace(re.escape("{service_id}"), _SEGMENT)
        self._routes = tuple(
            (
                re.compile(re.escape(root) + template),
                SimpleNamespace(path=root + writes.START),  # what `route_template` reads
            )
            for root in roots
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = scope["path"]
            root_path = scope.get("root_path", "")
            if root_path and path.startswith(root_path):  # as Starlette's router sees it
                path = path[len(root_path) :]
            for pattern, route in self._routes:
                match = pattern.fullmatch(path)
                if match is not None:
                    scope["route"] = route
                    await self._start(scope, receive, send, match.group(1))
                    return
        await self._app(scope, receive, send)

    async def _start(self, scope: Scope, receive: Receive, send: Send, service_id: str) -> None:
        request = Request(scope, receive, send)
        try:
            bridge = await get_bridge(request)
            headers = inputs.RequestHeaders(scope["headers"])
            bridge.auth.check(headers)  # `deps.authenticated`'s check, from the headers read once
            caller = await deps.caller(
                bridge, headers.get(TENANT_HEADER), headers.get(GROUP_HEADER)
            )
            response = await writes.publish(
                request, bridge, caller, EventKind.START, service_id, headers=headers
            )
        except Exception as exc:  # noqa: BLE001 - answered as the app's handlers answer it
            response = await _handled(request, exc)
        await response(scope, receive, send)


async def _handled(request: Request, exc: Exception) -> Any:
    """The response the app's exception handlers give `exc` (the most specific class wins, as
    in Starlette); re-raised when none applies."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            return await handler(request, exc)
    raise exc
