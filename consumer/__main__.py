"""`python -m consumer`: run the consumer until SIGTERM/SIGINT (finishing the in-flight batch)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from consumer.bootstrap import run_consumer
from schemas.settings import Settings


async def _main() -> None:
    settings = Settings()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await run_consumer(settings, stopping)


def main() -> None:
    """Entry point of the consumer process."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        uvloop.run(_main())
    except ImportError:
        asyncio.run(_main())


if __name__ == "__main__":
    main()
