"""Running the HTTP services: in the foreground (`serve`, `simulate`) or as child processes.

A child gets a socket the parent has already bound to a free loopback port, so there is no
race for the port and the URL is known before the child starts. Children die with their
parent (PR_SET_PDEATHSIG) so a killed run leaves no orphan servers behind.

A supervised child (`restarts=` given) is watched: when it dies, the same command is started
again on the same socket, which the parent keeps open. Connections that arrive in between
wait in the socket's backlog instead of being refused, so a callback sender retrying after a
reset reaches the new process.

    with child_service(["simulate", "--seed", "3"], "simulator") as url:
        ...   # url == "http://127.0.0.1:<port>"
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.errors import ServiceError

log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
WATCH_INTERVAL_SECONDS = 0.1
MAX_RESTARTS = 10  # a child that keeps dying is broken, not unlucky: stop restarting it
# Exit codes of a graceful stop (uvicorn re-raises the signal once it has shut down).
STOPPED_ON_PURPOSE = (0, -signal.SIGTERM, -signal.SIGINT)
PR_SET_PDEATHSIG = 1


def serve_asgi(app: Any, *, host: str, port: int, fd: int | None = None) -> None:
    """Serve `app` with uvicorn (uvloop + httptools) until SIGTERM/SIGINT, then shut down
    gracefully: the app's lifespan closes (the receiver flushes and seals its segment)."""
    import uvicorn

    # Long-lived servers: move startup objects out of the collector's sight and collect young
    # objects less often, so no collection pause stalls the loop for milliseconds (the
    # simulator's rate window and the receiver's acknowledgement latency both notice).
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        fd=fd,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        log_config=None,
        backlog=4096,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()


def bind_loopback() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A socket handed over by descriptor does not get asyncio's automatic TCP_NODELAY (its
    # protocol field reads 0), and Nagle plus delayed ACKs then add ~40 ms to every answer.
    # Accepted connections inherit the option from the listening socket.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


def die_with_parent() -> None:
    """Called by a child service at start (Linux): SIGTERM when the parent process dies."""
    if os.environ.get("CAPAUDIT_PARENT_PID") is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != os.environ["CAPAUDIT_PARENT_PID"]:  # the parent is already gone
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def child_service(
    args: list[str],
    name: str,
    *,
    env: Mapping[str, str] | None = None,
    restarts: Counter[str] | None = None,
) -> Iterator[str]:
    """Start `python -m pipeline <args> --fd N` on a fresh loopback port; yield its base URL.

    With `restarts`, the child is supervised: restarted on the same socket when it dies, each
    restart counted in `restarts[name]`."""
    with child_services([(args, name)], env=env, restarts=restarts) as (url,):
        yield url


@contextlib.contextmanager
def child_services(
    commands: Sequence[tuple[list[str], str]],
    *,
    env: Mapping[str, str] | None = None,
    restarts: Counter[str] | None = None,
) -> Iterator[list[str]]:
    """`child_service` for several (args, name) at once: all start together and boot side by
    side (a child spends a second or more importing before it listens); yields their URLs, in
    order, once every one is healthy. They are stopped together too."""
    with starting_services(commands, env=env, restarts=restarts) as ready:
        yield ready()


@contextlib.contextmanager
def starting_services(
    commands: Sequence[tuple[list[str], str]],
    *,
    env: Mapping[str, str] | None = None,
    restarts: Counter[str] | None = None,
) -> Iterator[Callable[[], list[str]]]:
    """`child_services` that does not wait: yields a call that waits until every child is
    healthy and returns their URLs, so the caller can work while they boot."""
    with contextlib.ExitStack() as stack:
        children = [stack.enter_context(_started(a, n, env, restarts)) for a, n in commands]

        def ready() -> list[str]:
            for child in children:
                child.ready()
            return [child.url for child in children]

        try:
            yield ready
        finally:
            for child in children:  # they shut down side by side; the stack waits for each
                child.supervisor.terminate()


@dataclass
class _Child:
    url: str
    sock: socket.socket
    supervisor: Supervisor
    supervised: bool
    healthy: bool = False

    def ready(self) -> None:
        """Wait until the child answers /healthz; then supervise it, or let go of its socket
        (unsupervised: a dead child's port refuses at once). Once is enough."""
        if self.healthy:
            return
        wait_until_healthy(f"{self.url}/healthz", self.supervisor.name, self.supervisor.process)
        self.healthy = True
        log.debug("%s listening on %s (pid %d)", self.supervisor.name, self.url, self.pid)
        if self.supervised:
            self.supervisor.start()
        else:
            self.sock.close()

    @property
    def pid(self) -> int:
        return self.supervisor.process.pid


@contextlib.contextmanager
def _started(
    args: list[str],
    name: str,
    env: Mapping[str, str] | None,
    restarts: Counter[str] | None,
) -> Iterator[_Child]:
    sock = bind_loopback()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    command = [sys.executable, "-m", "pipeline", *args, "--fd", str(sock.fileno())]
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("CAPAUDIT_LOGGING__LEVEL", "WARNING")
    child_env["CAPAUDIT_PARENT_PID"] = str(os.getpid())
    supervisor = Supervisor(name, command, sock, child_env, restarts)
    try:
        yield _Child(url, sock, supervisor, restarts is not None)
    finally:
        supervisor.stop()
        sock.close()


class Supervisor:
    """Keeps one child service running on its socket: restarts it within
    WATCH_INTERVAL_SECONDS of dying (killed, or exiting with an error, but not stopped on purpose;
    at most MAX_RESTARTS times), logging a warning."""

    def __init__(
        self,
        name: str,
        command: list[str],
        sock: socket.socket,
        env: Mapping[str, str],
        restarts: Counter[str] | None,
    ) -> None:
        self.name, self._command, self._sock, self._env = name, command, sock, env
        self.restarts = restarts if restarts is not None else Counter()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name=f"{name}-supervisor", daemon=True)
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        fd = self._sock.fileno()
        return subprocess.Popen(self._command, pass_fds=[fd], env=self._env)  # noqa: S603

    def start(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_SECONDS):
            with self._lock:
                if self._stopping.is_set() or self.process.poll() is None:
                    continue
                if self.process.returncode in STOPPED_ON_PURPOSE:
                    # Someone asked for a graceful stop (SIGTERM, or Ctrl-C reaching the whole
                    # process group): the run is stopping too, so do not fight it.
                    log.info(
                        "%s stopped (code %d); not restarted", self.name, self.process.returncode
                    )
                    return
                if self.restarts[self.name] >= MAX_RESTARTS:
                    log.error(
                        "%s died again; not restarted after %d restarts", self.name, MAX_RESTARTS
                    )
                    return
                self._restart()

    def _restart(self) -> None:
        dead = self.process
        self.process = self._spawn()
        self.restarts[self.name] += 1
        log.warning(
            "%s (pid %d) died with exit code %s; restarted on the same socket as pid %d",
            self.name,
            dead.pid,
            dead.returncode,
            self.process.pid,
        )

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            stop_process(self.process)
        if self._thread.is_alive():
            self._thread.join()

    def terminate(self) -> None:
        """Ask the child to stop (graceful), not restarting it, without waiting: `stop` waits."""
        self._stopping.set()
        with self._lock:
            if self.process.poll() is None:
                self.process.terminate()
                self.process.send_signal(signal.SIGCONT)


def wait_until_healthy(url: str, name: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"{name} exited with code {process.returncode} while starting")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.05)
    raise ServiceError(f"{name} did not become healthy at {url} within {READY_TIMEOUT_SECONDS}s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful), then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    process.send_signal(signal.SIGCONT)  # a stopped (SIGSTOP) child acts on SIGTERM only then
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
