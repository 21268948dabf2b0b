"""Run the system's real processes (consumer, bridge) as subprocesses, configured by env."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from producer_tools.devstack.embedded import free_port
from tests.servers import StackSettings

ROOT = Path(__file__).resolve().parent.parent


def settings_env(settings: StackSettings, **overrides: object) -> dict[str, str]:
    """The environment that makes a child process read exactly these settings."""
    return settings.env(**overrides)


def start_consumer(
    settings: StackSettings, log_path: Path, **overrides: object
) -> subprocess.Popen[bytes]:
    """`python -m consumer` with these settings, its output appended to log_path."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "consumer"],
            env=settings_env(settings, **overrides),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def started_consumer(
    settings: StackSettings, log_path: Path, timeout_s: float = 60.0, **overrides: object
) -> subprocess.Popen[bytes]:
    """`start_consumer`, returned once its /readyz answers 200 (a member of its group).

    A test that signals a consumer it has just started must wait for this: the process takes a
    stop signal gracefully from its first line of Python on, but one that arrives while the
    interpreter itself starts kills it (-15), and a test whose events were all answered already
    may well send one that early."""
    port = free_port()
    process = start_consumer(settings, log_path, consumer_health_port=port, **overrides)
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"the consumer exited with {process.returncode}; see {log_path}"
                )
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                process.kill()
                raise AssertionError(f"the consumer was not ready in {timeout_s}s; see {log_path}")
            await asyncio.sleep(0.05)


class ChildProcess:
    """A service run as a child process by the fault tests: alive, pid, SIGKILL, SIGTERM with a
    deadline, resident memory and its log. Subclasses start it (`self._proc`)."""

    name = "process"

    def __init__(self, settings: StackSettings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would, and reap."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
            self.kills += 1

    async def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and the exit code; SIGKILL (and a failed test) after `timeout_s`."""
        assert self._proc is not None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self._proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            message = f"the {self.name} ignored SIGTERM for {timeout_s}s; see {self.log_path}"
            raise AssertionError(message) from None

    def rss_bytes(self) -> int:
        """Resident memory of the process (Linux /proc)."""
        pages = Path(f"/proc/{self.pid}/statm").read_text().split()[1]
        return int(pages) * os.sysconf("SC_PAGE_SIZE")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
