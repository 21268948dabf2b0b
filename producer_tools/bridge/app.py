"""The bridge app: `create_app(settings)` (FastAPI factory + lifespan) and `serve(settings)`.

The lifespan is the composition root: it builds the task reader, the pending-replies registry and
the Kafka link, and disposes of them in reverse order at shutdown (requests still waiting then
get a 503). Nothing is created at import.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import uvicorn
from fastapi import FastAPI

from consumer.readside import TaskReader
from producer_tools.bridge.auth import BridgeAuth
from producer_tools.bridge.errors import install_error_handlers
from producer_tools.bridge.kafka import KafkaLink, Reply
from producer_tools.bridge.openapi import install_openapi
from producer_tools.bridge.pending import PendingReplies
from producer_tools.bridge.routes import router
from producer_tools.bridge.settings import BridgeConfig
from producer_tools.bridge.starter import TaskStarter
from producer_tools.bridge.state import Bridge
from schemas.errors import BrokerUnavailableError

log = logging.getLogger(__name__)


def create_app(settings: BridgeConfig) -> FastAPI:
    """A bridge app for these settings (its clients are built when its lifespan starts).

    Raises ValueError at once when UCS_BRIDGE_AUTH_TOKENS holds an unusable token.
    """
    auth = BridgeAuth.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            reader = await stack.enter_async_context(TaskReader(settings.database))
            pending: PendingReplies[Reply] = PendingReplies()
            stack.callback(
                pending.fail_all,
                BrokerUnavailableError(
                    "The bridge is shutting down: the request may still be processed; "
                    "retry with the same Idempotency-Key."
                ),
            )
            link = await stack.enter_async_context(KafkaLink(settings, pending))
            app.state.bridge = Bridge(
                settings=settings,
                limits=settings.contract.limits,
                pending=pending,
                link=link,
                starter=TaskStarter(link, pending, settings.bridge.reply_timeout_ms),
                reader=reader,
                auth=auth,
            )
            log.info(
                "bridge ready: reply topic %s, authentication %s",
                link.reply_topic,
                "on" if auth.enabled else "off",
            )
            yield
            del app.state.bridge

    app = FastAPI(
        title="ucs-tasks bridge",
        version="1.0.0",
        lifespan=lifespan,
        redirect_slashes=False,  # an unknown path is a 404, never a redirect
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    app.include_router(router)
    install_openapi(app, secured=auth.enabled)
    return app


def serve(settings: BridgeConfig) -> None:
    """Run the bridge with uvicorn (uvloop + httptools) until SIGINT/SIGTERM."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # outages are reported by the link
    config = server_config(create_app(settings), settings)
    # The modules and the app are never garbage: out of every collection, a full one (which
    # stalls every request in flight) scans only what requests allocate: ~20 ms became ~4.
    gc.freeze()
    uvicorn.Server(config).run()


def server_config(app: FastAPI, settings: BridgeConfig) -> uvicorn.Config:
    """The bridge's uvicorn options (bench/bridge.py serves its reference apps with them too)."""
    return uvicorn.Config(
        app,
        host=settings.bridge.host,
        port=settings.bridge.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=settings.bridge.access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
        log_config=None,  # keep the logging configured by the caller
    )
