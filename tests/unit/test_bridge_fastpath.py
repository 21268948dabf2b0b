"""The Start Task fast path: which requests it takes, what it calls, how its errors are answered.

The bridge's contract tests (tests/integration, tests/e2e) send every start through it on the
real stack; these pin down its routing against a stand-in app and a stand-in `publish`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from producer_tools.bridge import fastpath, writes
from producer_tools.bridge.deps import SINGLE_TENANT
from producer_tools.bridge.errors import UnauthorizedError, install_error_handlers
from producer_tools.bridge.metrics import route_template
from schemas.tenants import Tenancy
from schemas.validation import EventKind

ROOTS = ("/genesys/1/cs", "")


class Auth:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse

    def check(self, headers: Any) -> None:
        if self.refuse:
            raise UnauthorizedError("Unauthorized: send a token.")


def an_app(auth: Auth | None = None, tenancy: Tenancy | None = None) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.state.bridge = SimpleNamespace(auth=auth or Auth(), tenancy=tenancy or Tenancy())
    return app


class Downstream:
    """The rest of the app: records what reached it."""

    def __init__(self) -> None:
        self.paths: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append((scope["method"], scope["path"]))
        await Response(status_code=299)(scope, receive, send)


async def call(
    middleware: fastpath.StartTaskFastPath, app: FastAPI, method: str, path: str
) -> tuple[int, bytes, dict[str, Any]]:
    scope: dict[str, Any] = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(),
        "root_path": "", "query_string": b"", "headers": [], "app": app,
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:]), scope


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []

    async def publish(
        request: Request,
        bridge: Any,
        caller: Any,
        kind: EventKind,
        service_id: str,
        *,
        headers: Any = None,
    ) -> Response:
        assert headers is not None  # read once, by the fast path
        calls.append((caller, kind, service_id))
        return JSONResponse({"task_id": 7}, status_code=201)

    monkeypatch.setattr(writes, "publish", publish)
    return calls


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (
            "/genesys/1/cs/services/42/tasks/start",
            "/genesys/1/cs/services/{service_id}/tasks/start",
        ),
        ("/services/abc/tasks/start", "/services/{service_id}/tasks/start"),
    ],
)
async def test_a_start_is_published_with_its_service_id_as_written_and_labelled_by_its_template(
    published: list[tuple[Any, ...]], path: str, template: str
) -> None:
    downstream, app = Downstream(), an_app()
    status, body, scope = await call(
        fastpath.StartTaskFastPath(downstream, ROOTS), app, "POST", path
    )
    assert (status, body) == (201, b'{"task_id":7}')
    assert published == [(SINGLE_TENANT, EventKind.START, path.split("/")[-3])]
    assert route_template(scope) == template
    assert downstream.paths == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/genesys/1/cs/services/42/tasks/start"),  # FastAPI answers 405
        ("POST", "/genesys/1/cs/services/42/tasks/start/"),  # 404: no redirects
        ("POST", "/genesys/1/cs/services/4/2/tasks/start"),  # a segment holds no slash
        ("POST", "/genesys/1/cs/services/42/tasks/7/end"),
        ("POST", "/services/42/tasks/start"),  # the legacy root when it is off
    ],
)
async def test_anything_else_goes_to_the_app(
    published: list[tuple[Any, ...]], method: str, path: str
) -> None:
    downstream = Downstream()
    middleware = fastpath.StartTaskFastPath(downstream, ("/genesys/1/cs",))
    status, _, _ = await call(middleware, an_app(), method, path)
    assert status == 299
    assert downstream.paths == [(method, path)]
    assert published == []


async def test_a_refused_credential_is_the_app_s_401_and_nothing_is_published(
    published: list[tuple[Any, ...]],
) -> None:
    app = an_app(auth=Auth(refuse=True))
    path = "/genesys/1/cs/services/42/tasks/start"
    status, body, _ = await call(fastpath.StartTaskFastPath(Downstream(), ROOTS), app, "POST", path)
    assert status == 401
    assert b"Unauthorized" in body
    assert published == []


async def test_a_missing_tenant_in_multi_tenant_mode_is_the_documented_400(
    published: list[tuple[Any, ...]],
) -> None:
    app = an_app(tenancy=Tenancy.parse("acme"))
    path = "/genesys/1/cs/services/42/tasks/start"
    status, body, _ = await call(fastpath.StartTaskFastPath(Downstream(), ROOTS), app, "POST", path)
    assert status == 400
    assert b"Invalid tenant specified" in body
    assert published == []
