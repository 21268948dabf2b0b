"""The two reference HTTP servers of bench/bridge.py, each run as its own process.

    python bench/_http_apps.py bare|faststream-rpc   (settings from UCS_* env, port = bridge_port)

Both are served by uvicorn with the bridge's own options (`server_config`: uvloop, httptools,
one process, access log as `UCS_BRIDGE_ACCESS_LOG`).

- `bare`: FastAPI with the bridge's start route returning a fixed 201, Location and
  `{"task_id": 1}`, without reading the body: the ceiling of one uvicorn + FastAPI process.
- `faststream-rpc`: the same route the way FastStream's Kafka RPC how-to builds request-reply
  (FastStream 0.7's `broker.request()` works only against its test client with real Kafka, so the
  how-to's pattern is the way): a `KafkaRouter` (FastStream's FastAPI plugin), a module-level dict
  of futures keyed by correlation id, `broker.publish(..., correlation_id=..., reply_to=...)`,
  and a `@router.subscriber` on its one reply topic that resolves the future. FastAPI validates
  the body into a pydantic model and FastStream serializes it again; the CloudEvents headers our
  consumer needs (identity, type, service id, replyto, correlationid) are set by hand. It is
  answered by the same `python -m consumer` as the bridge.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with warnings.catch_warnings():  # 0.7 still ships the FastAPI plugin, announcing its move in 1.0
    warnings.simplefilter("ignore", DeprecationWarning)
    from faststream.kafka.fastapi import KafkaMessage, KafkaRouter

from bench.peers import TaskStart  # the peer subscriber's model: the same few typed fields
from producer_tools.bridge.app import server_config
from schemas import wire
from tests.servers import StackSettings

START = "/genesys/1/cs/services/{service_id}/tasks/start"
PEER_REPLY_TOPIC = "bench.faststream.rpc.replies"
PEER_SOURCE = "urn:bench:faststream-rpc"


def bare_app(settings: StackSettings) -> FastAPI:
    app = FastAPI()
    location = f"{settings.contract.base_uri}/service/21456878/tasks/1"

    @app.post(START, status_code=201)
    async def start(service_id: str) -> Response:
        return Response(b'{"task_id":1}', 201, {"Location": location}, "application/json")

    return app


def faststream_rpc_app(settings: StackSettings, reply_fetch_wait_ms: int) -> FastAPI:
    quiet = logging.getLogger("bench.faststream.rpc")  # no per-message INFO lines (as peers.py)
    quiet.setLevel(logging.WARNING)
    router = KafkaRouter(settings.kafka.bootstrap_servers, logger=quiet)
    responses: dict[str, asyncio.Future[dict[str, Any]]] = {}

    # The how-to's subscriber uses FastStream's defaults, which include a 500 ms fetch wait: on
    # a broker that never answers a fetch early (tansu) every reply would wait for it. The
    # peer gets the bridge's reply fetch wait instead (in its favour).
    @router.subscriber(PEER_REPLY_TOPIC, fetch_max_wait_ms=reply_fetch_wait_ms)
    async def on_reply(body: dict[str, Any], message: KafkaMessage) -> None:
        correlation_id = message.headers.get("ce_correlationid")
        if (future := responses.get(str(correlation_id))) is not None and not future.done():
            future.set_result(body)

    @router.post(START, status_code=201)
    async def start(service_id: int, body: TaskStart) -> Response:
        correlation_id = uuid.uuid4().hex
        future = responses[correlation_id] = asyncio.get_running_loop().create_future()
        try:
            await router.broker.publish(
                body,
                settings.topics.requests,
                key=str(service_id).encode(),
                headers={
                    "ce_specversion": wire.SPECVERSION,
                    "ce_id": uuid.uuid4().hex,
                    "ce_source": PEER_SOURCE,
                    "ce_type": wire.TYPE_TASK_START,
                    "ce_serviceid": str(service_id),
                    "ce_replyto": PEER_REPLY_TOPIC,
                    "ce_correlationid": correlation_id,
                    "content-type": wire.JSON_CONTENT_TYPE,
                },
                correlation_id=correlation_id,
                reply_to=PEER_REPLY_TOPIC,
            )
            reply = await asyncio.wait_for(future, settings.bridge.reply_timeout_ms / 1000)
        finally:
            del responses[correlation_id]
        if reply.get("kind") == "task.created":
            return JSONResponse({"task_id": reply["task_id"]}, 201, {"Location": reply["location"]})
        return JSONResponse(reply.get("error"), int(reply.get("status", 400)))

    app = FastAPI()
    app.include_router(router)
    return app


def main(kind: str) -> None:
    settings = StackSettings.of()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if kind == "bare":
        app = bare_app(settings)
    elif kind == "faststream-rpc":
        app = faststream_rpc_app(settings, settings.bridge.reply_fetch_wait_ms)
    else:
        raise SystemExit(f"unknown app {kind!r}: bare or faststream-rpc")
    import uvicorn

    gc.freeze()  # as the bridge's `serve` does: the same process set-up for every server
    uvicorn.Server(server_config(app, settings)).run()


if __name__ == "__main__":
    main(sys.argv[1])
