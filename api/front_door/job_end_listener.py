"""Waking held chat calls when their job ends.

Postgres tells: a trigger on jobs notifies channel `agr_job_ended` with the job's id when
it answers or errors, delivered only once that transaction commits (migration 0011). One
thread per API process LISTENs on its own connection and wakes the calls waiting on that
job. A wake-up is only a hint: a woken call reads the job from Postgres, and every call
also reads it every AGR_CHAT_POLL_S, so a notification lost to a dropped connection (or
never sent: cancel and expiry send none) costs one poll interval, nothing more.
"""

import asyncio
import logging
import threading
from collections import defaultdict
from typing import cast
from uuid import UUID

import psycopg
from sqlalchemy.engine import make_url

from core.settings import get_settings

log = logging.getLogger(__name__)
CHANNEL = "agr_job_ended"
RECONNECT_S = 2.0


class JobEndListener:
    def __init__(self) -> None:
        self._waiters: dict[UUID, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-end-listener", daemon=True)
        self.listening = threading.Event()  # set while the LISTEN is live
        self.connections = 0  # LISTENs begun: more than one means it reconnected

    def start(self) -> "JobEndListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _add(self, job_id: UUID, entry) -> None:
        with self._lock:
            self._waiters[job_id].add(entry)

    def _remove(self, job_id: UUID, entry) -> None:
        with self._lock:
            waiting = self._waiters.get(job_id)
            if waiting is not None:
                waiting.discard(entry)
                if not waiting:
                    del self._waiters[job_id]

    def _run(self) -> None:
        # Set wherever the API runs; were it unset, make_url would raise here as it always has.
        database_url = cast(str, get_settings().database_url)
        url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.connections += 1
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._wake(note.payload)
            except psycopg.Error as exc:  # the database away: the calls poll meanwhile
                log.warning("job-end listener: %s; listening again in %.0f s", exc, RECONNECT_S)
            finally:
                self.listening.clear()
            self._stop.wait(RECONNECT_S)

    def _wake(self, payload: str) -> None:
        try:
            job_id = UUID(payload)
        except ValueError:
            return
        with self._lock:
            waiting = list(self._waiters.get(job_id, ()))
        for loop, event in waiting:
            loop.call_soon_threadsafe(event.set)


class Waiter:
    """`with Waiter(listener, job_id) as ended:` an asyncio.Event set when the job's end is
    announced (never, without a listener: the caller polls)."""

    def __init__(self, listener: JobEndListener | None, job_id: UUID):
        self.listener, self.job_id, self.event = listener, job_id, asyncio.Event()
        self._entry = (asyncio.get_running_loop(), self.event)

    def __enter__(self) -> asyncio.Event:
        if self.listener is not None:
            self.listener._add(self.job_id, self._entry)
        return self.event

    def __exit__(self, *_exc) -> None:
        if self.listener is not None:
            self.listener._remove(self.job_id, self._entry)
