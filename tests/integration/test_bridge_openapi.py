"""Schemathesis against a real bridge (uvicorn) and consumer: answers match the OpenAPI document.

Positive and negative cases for every operation; each response is checked against the declared
status codes, headers, content types and schemas, and no input may give a 5xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi import checks as openapi_checks

from producer_tools.bridge.app import create_app
from producer_tools.devstack.embedded import free_port
from tests.integration.test_bridge import bridge_settings
from tests.servers import StackSettings

EXAMPLES = 300

# schemathesis's own strategies draw from `random`, which Hypothesis deprecates: not our code.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429", "5xx"]
"""What schemathesis takes for a refusal of invalid data by default."""
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": [*REJECTIONS, "413"]}}}
)
"""A request with invalid parameters and a body over the limit is refused with a 413 (the size
is checked first, before the body is read): a refusal too."""
CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]


@asynccontextmanager
async def serving(settings: StackSettings) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The bridge served by uvicorn in this event loop: its base URL and OpenAPI document."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.bridge.port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                assert not task.done(), "uvicorn stopped while starting"
                await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{settings.bridge.port}", app.openapi()
    finally:
        server.should_exit = True
        await task


def run_schemathesis(base_url: str, document: dict[str, Any]) -> None:
    """Hypothesis-driven cases over every operation (runs in a thread: it blocks)."""
    schema = schemathesis.openapi.from_dict(document, config=CONFIG)
    cases = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(
        GenerationMode.NEGATIVE
    )

    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=cases)
    def conforms(case: Any) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=10)

    conforms()


async def test_the_bridge_answers_as_its_openapi_document_says(
    settings: StackSettings, consumer: object
) -> None:
    served = bridge_settings(settings, bridge_port=free_port(), max_body_bytes=8192)
    async with serving(served) as (base_url, document):
        await asyncio.to_thread(run_schemathesis, base_url, document)
