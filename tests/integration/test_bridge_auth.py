"""Bridge authentication (UCS_BRIDGE_AUTH_TOKENS): bearer tokens and API keys, 401s with the
contract's error body, open health checks, constant-time comparison, and no token in any log."""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.datastructures import Headers

from producer_tools.bridge import auth
from producer_tools.bridge.app import create_app
from producer_tools.bridge.openapi import PUBLIC_PATHS
from producer_tools.bridge.routes import tasks
from producer_tools.devstack.embedded import free_port
from tests.integration.test_bridge import (
    JSON_HEADERS,
    assert_error_body,
    bridge_settings,
    running_bridge,
    start_url,
)
from tests.servers import StackSettings

TOKEN = f"tok-{uuid.uuid4().hex}"
OTHER = f"key-{uuid.uuid4().hex}"
WRONG = f"nope-{uuid.uuid4().hex}"
SECRETS = (TOKEN, OTHER)


def secured(
    settings: StackSettings, tokens: str = f" {TOKEN} ,{OTHER},", **overrides: Any
) -> StackSettings:
    return bridge_settings(settings, bridge_auth_tokens=SecretStr(tokens), **overrides)


def assert_unauthorized(response: httpx.Response, *, refused: bool) -> None:
    body = assert_error_body(response, 401)
    assert body["message"].startswith("Unauthorized")
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    assert ('error="invalid_token"' in challenge) is refused
    assert not any(secret in response.text for secret in (TOKEN, OTHER, WRONG))


async def test_a_bearer_token_or_an_api_key_starts_a_task_and_reads_it_back(
    settings: StackSettings, consumer: object
) -> None:
    async with running_bridge(secured(settings)) as running:
        client = running.client
        bearer = {**JSON_HEADERS, "Authorization": f"Bearer {TOKEN}"}
        created = await client.post(start_url(), content=b'{"state_id": 3}', headers=bearer)
        assert created.status_code == 201, created.text
        keyed = {**JSON_HEADERS, "X-API-Key": OTHER}
        again = await client.post(start_url(), content=b'{"state_id": 4}', headers=keyed)
        assert again.status_code == 201, again.text

        location = created.headers["location"]
        assert_unauthorized(await client.get(location), refused=False)
        lowercase_scheme = {"Authorization": f"bearer {OTHER}"}
        read = await client.get(location, headers=lowercase_scheme)
        assert (read.status_code, read.json()["state_id"]) == (200, 3)


async def test_a_wrong_or_missing_token_is_a_401_with_the_error_body_and_a_bearer_challenge(
    settings: StackSettings,
) -> None:
    async with running_bridge(secured(settings)) as running:
        client = running.client
        for headers in (
            {"Authorization": f"Bearer {WRONG}"},
            {"X-API-Key": WRONG},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"X-API-Key": TOKEN.upper()},
        ):
            response = await client.post(start_url(), content=b"{}", headers=headers)
            assert_unauthorized(response, refused=True)
        for headers in (
            {},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": "Bearer"},
            {"Authorization": TOKEN},
            {"X-API-Key": ""},
        ):
            response = await client.post(start_url(), content=b"{}", headers=headers)
            assert_unauthorized(response, refused=False)
        # Checked before the body: an unauthenticated caller learns nothing about its input.
        oversized = await client.post(start_url(0), content=b"[" * 10_000, headers={})
        assert_unauthorized(oversized, refused=False)


async def test_health_checks_and_the_openapi_document_stay_open(settings: StackSettings) -> None:
    async with running_bridge(secured(settings)) as running:
        client = running.client
        assert (await client.get("/healthz")).json() == {"status": "alive"}
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


async def test_every_route_but_the_public_ones_asks_for_a_token(settings: StackSettings) -> None:
    async with running_bridge(secured(settings)) as running:
        paths = running.app.openapi()["paths"]
        guarded = [(path, method) for path, ops in paths.items() for method in ops]
        guarded = [(path, method) for path, method in guarded if path not in PUBLIC_PATHS]
        assert len(guarded) == 2 * len(tasks.routes)  # the 8.5 and the 8.0/8.1 form of each
        for path, method in guarded:
            url = re.sub(r"\{(\w+)\}", "1", path)
            response = await running.client.request(method.upper(), url, content=b"{}")
            assert_unauthorized(response, refused=False)


async def test_every_token_is_compared_in_constant_time_without_an_early_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    checker = auth.BridgeAuth([TOKEN, OTHER, "third-token"])
    checker.check(Headers({"authorization": f"Bearer {TOKEN}"}))  # matches the first ...
    assert len(compared) == 3  # ... and is still compared with the other two
    compared.clear()
    with pytest.raises(auth.UnauthorizedError):
        checker.check(Headers({"x-api-key": "x"}))
    assert len(compared) == 3
    assert all(len(a) == len(b) == 32 for a, b in compared)  # digests: lengths tell nothing
    assert auth.BridgeAuth([]).enabled is False
    auth.BridgeAuth([]).check(Headers({}))  # off: everything passes


def test_an_unusable_token_fails_at_start_without_echoing_it() -> None:
    bad = "has space"
    with pytest.raises(ValueError, match="token 2 of 2") as caught:
        create_app(StackSettings.of(bridge_auth_tokens=SecretStr(f"{TOKEN},{bad}")))
    assert bad not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_the_openapi_document_declares_the_security_schemes_and_401_only_when_on() -> None:
    document = create_app(StackSettings.of(bridge_auth_tokens=SecretStr(TOKEN))).openapi()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": schemes["bearerAuth"]["description"],
    }  # fmt: skip
    assert (schemes["apiKeyAuth"]["in"], schemes["apiKeyAuth"]["name"]) == ("header", "X-API-Key")
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in PUBLIC_PATHS:
                assert "security" not in operation
                assert "401" not in operation["responses"]
            else:
                assert operation["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    assert TOKEN not in str(document)

    open_document = create_app(StackSettings.of()).openapi()
    assert "securitySchemes" not in open_document["components"]
    assert all(
        "401" not in operation["responses"]
        for operations in open_document["paths"].values()
        for operation in operations.values()
    )


@asynccontextmanager
async def served_with_access_log(settings: StackSettings) -> AsyncIterator[str]:
    """The bridge served by uvicorn in this event loop, access log on, logging left to pytest."""
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=settings.bridge.port,
        access_log=True,
        log_config=None,
        log_level="debug",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{settings.bridge.port}"
    finally:
        server.should_exit = True
        await task


async def test_tokens_never_appear_in_the_logs(
    settings: StackSettings, consumer: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    served = secured(settings, bridge_port=free_port(), bridge_access_log=True)
    async with (
        served_with_access_log(served) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
    ):
        refused = await client.post(start_url(), content=b"{}", headers={"X-API-Key": WRONG})
        assert refused.status_code == 401
        bearer = {**JSON_HEADERS, "Authorization": f"Bearer {TOKEN}"}
        created = await client.post(start_url(), content=b'{"state_id": 1}', headers=bearer)
        assert created.status_code == 201, created.text
        where = httpx.URL(created.headers["location"]).path  # base_uri names another host
        read = await client.get(where, headers={"X-API-Key": OTHER})
        assert read.status_code == 200
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "authentication on" in logged
    assert " 401" in logged  # the access log ran (and is where a token would have shown)
    assert " 201" in logged
    for secret in (TOKEN, OTHER, WRONG):
        assert secret not in logged
        assert secret not in caplog.text
