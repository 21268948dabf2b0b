"""`ucs-tasks dev`: the whole system on one machine, plus helpers the tests share.

The dev stack starts an embedded broker and PostgreSQL (unless UCS_KAFKA_BOOTSTRAP_SERVERS /
UCS_DATABASE_URL point elsewhere), migrates (`ucs-tasks db upgrade`), creates the topics
(`ucs-tasks topics create`, one copy each on the embedded broker), then runs the consumer and the
HTTP bridge as child processes and supervises them until Ctrl-C/SIGTERM or until one dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table

from consumer.readside import DatabaseSettings
from producer_tools.devstack.embedded import (
    EmbeddedBroker,
    EmbeddedPostgres,
    ServerStartError,
    die_with_parent,
    free_port,
)
from producer_tools.devstack.settings import DevConfig
from schemas.settings import TopicSettings, env_name

__all__ = [
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "ServerStartError",
    "free_port",
    "run_dev",
]

_CHILD_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.25


class DevStackError(RuntimeError):
    """The dev stack could not be brought up."""


@dataclass
class _Child:
    name: str
    process: asyncio.subprocess.Process


def run_dev(settings: DevConfig, with_bridge: bool = True) -> int:
    """Run the dev stack in the foreground; the process exit code (0 after Ctrl-C/SIGTERM)."""
    console = Console()
    try:
        return asyncio.run(_DevStack(settings, with_bridge, console).run())
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130


class _DevStack:
    def __init__(self, settings: DevConfig, with_bridge: bool, console: Console) -> None:
        self.settings = settings
        self.with_bridge = with_bridge
        self.console = console
        self.data_dir = Path(settings.dev.data_dir)
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.children: list[_Child] = []
        self.stop_requested = asyncio.Event()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        starting = True

        def on_signal() -> None:
            if starting and main is not None:
                main.cancel()  # abort the start-up; the exit stack below unwinds what is up
            self.stop_requested.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            async with contextlib.AsyncExitStack() as stack:
                try:
                    await self._start(stack)
                except asyncio.CancelledError:
                    if main is not None:
                        main.uncancel()  # we handled it: let the clean-up below await normally
                    self.console.print("[yellow]interrupted while starting; stopping[/]")
                    return 130
                except (DevStackError, ServerStartError, KafkaError, OSError) as exc:
                    self.console.print(f"[red]dev stack failed to start:[/] {exc}")
                    return 1
                starting = False
                code = await self._supervise()
                self.console.print("stopping ...")
            self.console.print("stopped")
            return code
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        if "bootstrap_servers" in self.settings.kafka.model_fields_set:
            bootstrap = self.settings.kafka.bootstrap_servers
        else:
            self.broker = EmbeddedBroker(
                self.settings.dev.kafka_port, log_path=self.data_dir / "broker.log"
            )
            self.console.print(f"starting the broker on {self.broker.bootstrap_servers} ...")
            await stack.enter_async_context(self.broker)
            bootstrap = self.broker.bootstrap_servers
        if "url" in self.settings.database.model_fields_set:
            database_url = self.settings.database.dsn
        else:
            self.postgres = EmbeddedPostgres(
                self.data_dir / "pgdata", self.settings.dev.postgres_port
            )
            self.console.print(f"starting PostgreSQL on port {self.postgres.port} ...")
            await stack.enter_async_context(self.postgres)
            database_url = self.postgres.url
        env = {
            **os.environ,
            "UCS_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "UCS_DATABASE_URL": database_url,
            **self._one_broker_topics(),
        }
        self.console.print("applying migrations ...")
        await self._run_step(stack, "db upgrade", env)
        self.console.print("creating the topics ...")
        await self._run_step(stack, "topics create", env)

        consumer = await self._spawn("consumer", ["-m", "consumer"], env)
        self._watch(stack, consumer)
        bridge = self._bridge_unavailable_reason()
        if bridge is None:
            self._watch(stack, await self._spawn("bridge", ["-m", "producer_tools", "bridge"], env))
            bridge = f"http://{self.settings.bridge.host}:{self.settings.bridge.port}"
        self._print_table(bootstrap, database_url, consumer, bridge)

    def _one_broker_topics(self) -> dict[str, str]:
        """One copy of each partition on the embedded broker (it is one broker), unless the
        replication settings were given; the consumer checks its topics against the same."""
        if self.broker is None:
            return {}
        given = self.settings.topics.model_fields_set
        return {
            env_name(TopicSettings, name): "1"
            for name in ("replication_factor", "min_insync_replicas")
            if name not in given
        }

    async def _run_step(
        self, stack: contextlib.AsyncExitStack, command: str, env: dict[str, str]
    ) -> None:
        """Run `ucs-tasks <command>` to its end; a failure stops the start-up."""
        step = await self._spawn(command, ["-m", "producer_tools", *command.split()], env)
        stack.push_async_callback(_stop_child, step)  # only matters if start-up is interrupted
        if (code := await step.process.wait()) != 0:
            raise DevStackError(f"`ucs-tasks {command}` failed with exit code {code}")

    def _bridge_unavailable_reason(self) -> str | None:
        if not self.with_bridge:
            return "disabled (--no-bridge)"
        try:
            available = importlib.util.find_spec("producer_tools.bridge.app") is not None
        except ImportError:
            available = False
        if not available:
            self.console.print("[yellow]the HTTP bridge is not available yet; running without[/]")
            return "not available"
        return None

    async def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> _Child:
        # A session of its own: Ctrl-C reaches only us, and we stop the children in order.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),  # they go when we go, even by SIGKILL
        )
        return _Child(name, process)

    def _watch(self, stack: contextlib.AsyncExitStack, child: _Child) -> None:
        self.children.append(child)
        stack.push_async_callback(_stop_child, child)

    async def _supervise(self) -> int:
        while not self.stop_requested.is_set():
            if (died := self._first_dead()) is not None:
                self.console.print(f"[red]{died} exited unexpectedly; stopping the rest[/]")
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), _POLL_S)
        return 0

    def _first_dead(self) -> str | None:
        for child in self.children:
            if child.process.returncode is not None:
                return (
                    f"the {child.name} (pid {child.process.pid}, code {child.process.returncode})"
                )
        servers: list[tuple[str, EmbeddedBroker | EmbeddedPostgres | None]] = [
            ("the broker", self.broker),
            ("PostgreSQL", self.postgres),
        ]
        for name, server in servers:
            if server is not None and not server.running:
                return f"{name} (log: {server.log_path})"
        return None

    def _print_table(
        self, bootstrap: str, database_url: str, consumer: _Child, bridge: str
    ) -> None:
        table = Table(title="ucs-tasks dev", show_header=True)
        table.add_column("component")
        table.add_column("where", overflow="fold")
        table.add_row(f"Kafka broker ({_origin(self.broker)})", bootstrap)
        shown_url = DatabaseSettings(url=database_url).display_url
        table.add_row(f"PostgreSQL ({_origin(self.postgres)})", shown_url)
        table.add_row("consumer", f"pid {consumer.process.pid}")
        table.add_row("HTTP bridge", bridge)
        if self.broker is not None or self.postgres is not None:
            table.add_row("data and logs", str(self.data_dir.resolve()))
        self.console.print(table)
        self.console.print("try: ucs-tasks send 21456878 '{...}'    (Ctrl-C stops everything)")


def _origin(server: object) -> str:
    return "embedded" if server is not None else "external"


async def _stop_child(child: _Child) -> None:
    process = child.process
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), _CHILD_STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
