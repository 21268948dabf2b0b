"""`python -m consumer`: run the consumer until SIGTERM/SIGINT (finishing the in-flight batch).

Exit codes: 0 after a stop signal, 2 when the settings cannot be used (one line names each
`UCS_` variable and its problem; or the health port cannot be bound), 3 when its topics do not
keep what the guarantees need (one line says what; `ucs-tasks topics check` lists the fixes).
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import signal
import sys
from types import FrameType
from typing import Any

EXIT_SETTINGS = 2
EXIT_TOPICS = 3

_stop_requested = False


def _early_stop(signum: int, frame: FrameType | None) -> None:
    """A stop signal before the event loop runs: remembered, honoured once it runs."""
    del signum, frame
    global _stop_requested  # noqa: PLW0603 - the one flag a signal handler may set
    _stop_requested = True


def _task_stacks() -> str:
    """Every asyncio task and what it awaits, coroutine by coroutine down to the awaited future
    (asyncio's own `Task.print_stack` shows only a suspended task's outermost coroutine)."""
    lines = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        lines.append(f"task {task.get_name()}:")
        awaited: Any = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                lines.append(f"  awaiting {awaited!r}"[:300])
                break
            code = frame.f_code
            lines.append(f'  File "{code.co_filename}", line {frame.f_lineno}, in {code.co_name}')
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return "\n".join(lines)


def _write_task_stacks() -> None:
    print(f"asyncio tasks:\n{_task_stacks()}", file=sys.stderr, flush=True)


async def _main() -> int:
    from consumer.bootstrap import run_consumer  # noqa: PLC0415 - after the handlers are in
    from consumer.health import HealthPortError  # noqa: PLC0415
    from consumer.kafka.topics import TopicSetupError  # noqa: PLC0415
    from consumer.settings import ConsumerConfig  # noqa: PLC0415
    from observability import logs, tracing  # noqa: PLC0415
    from schemas.settings import SettingsError, load  # noqa: PLC0415

    try:
        settings = load(ConsumerConfig)
    except SettingsError as exc:
        print(f"ucs-tasks consumer: invalid settings: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    logs.configure(settings.log, "consumer")
    tracing.setup("ucs-tasks-consumer")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    # `kill -USR2 <pid>` writes every asyncio task's await chain to stderr (USR1: the threads).
    loop.add_signal_handler(signal.SIGUSR2, _write_task_stacks)
    if _stop_requested:
        stopping.set()
    try:
        await run_consumer(settings, stopping)
    except TopicSetupError as exc:
        print(f"ucs-tasks consumer: {exc}", file=sys.stderr)
        return EXIT_TOPICS
    except HealthPortError as exc:
        print(f"ucs-tasks consumer: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    finally:
        tracing.shutdown()
    return 0


def main() -> None:
    """Entry point of the consumer process."""
    # First of all: a SIGTERM during the imports and start-up below is a graceful stop too.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _early_stop)
    # `kill -USR1 <pid>` writes every thread's stack to stderr: where a stuck process is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Until the settings are read (then UCS_LOG_FORMAT / UCS_LOG_LEVEL apply).
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up
    except ImportError:
        sys.exit(asyncio.run(_main()))
    sys.exit(uvloop.run(_main()))


if __name__ == "__main__":
    main()
