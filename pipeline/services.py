"""Running the HTTP services: in the foreground (`serve`, `simulate`) or as child processes.

A child gets a socket the parent has already bound to a free loopback port, so there is no
race for the port and the URL is known before the child starts. Children die with their
parent (PR_SET_PDEATHSIG) so a killed run leaves no orphan servers behind.

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
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from pipeline.errors import ServiceError

log = logging.getLogger(__name__)
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
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
    args: list[str], name: str, *, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Start `python -m pipeline <args> --fd N` on a fresh loopback port; yield its base URL."""
    sock = bind_loopback()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "pipeline", *args, "--fd", str(sock.fileno())]
    child_env = {**os.environ, **(env or {})}
    child_env.setdefault("CAPAUDIT_LOGGING__LEVEL", "WARNING")
    child_env["CAPAUDIT_PARENT_PID"] = str(os.getpid())
    process = subprocess.Popen(command, pass_fds=[sock.fileno()], env=child_env)  # noqa: S603
    sock.close()
    try:
        wait_until_healthy(f"{url}/healthz", name, process)
        log.debug("%s listening on %s (pid %d)", name, url, process.pid)
        yield url
    finally:
        stop_process(process)


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
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
