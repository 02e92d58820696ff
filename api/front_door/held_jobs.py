"""The jobs this API process's held chat calls wait on, read together.

A held call sleeps on one asyncio.Event until there is something to read: its job's end,
announced by Postgres (api/front_door/job_end_listener.py), or what one shared loop finds when it
reads every held job at once, every AGR_CHAT_POLL_S, in at most two statements (the
jobs' statuses, and for streamed calls how many of their steps are done). That loop is
the safety net for an announcement lost with a dropped connection (or never sent: cancel
and expiry send none) and the source of a stream's progress. Before it, each held call
read its job through the thread pool every interval: 300 held calls kept a core busy
and /healthz 125 times slower (bench/front_door.py --held).
"""

import asyncio
import ctypes
import gc
import logging
from collections import defaultdict
from contextlib import contextmanager
from uuid import UUID

from sqlalchemy import ARRAY, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from starlette.concurrency import run_in_threadpool

from core.settings import get_settings
from models import Step, StepStatus
from models.db import get_engine
from models.status import TERMINAL_JOB_STATUSES

log = logging.getLogger(__name__)
RETURN_MEMORY_AFTER = 100  # held calls at once, all gone since: their memory is handed back
# anyio ends a worker thread idle this long only when it is next given work (its
# WorkerThread.MAX_IDLE_TIME is 10 s): past it, one no-op lets it end those a crowd started.
IDLE_THREADS_END_AFTER_S = 11.0
THREADS_EXIT_S = 2.0


class _Held:
    """One held call: its wake-up, and for a stream the done steps it was last told of."""

    def __init__(self, event: asyncio.Event, streamed: bool):
        self.event, self.streamed = event, streamed
        self.done_steps: int | None = None


class HeldJobs:
    def __init__(self) -> None:
        self._held: dict[UUID, set[_Held]] = defaultdict(set)  # touched on the event loop only
        self._returning_memory: asyncio.Task | None = None
        self._crowd = 0  # the most calls held at once since none were

    @contextmanager
    def hold(self, job_id: UUID, event: asyncio.Event, streamed: bool):
        """While inside, `event` is set when a read finds the job ended or, `streamed`, a
        step of it done since the last read."""
        held = _Held(event, streamed)
        job_id = UUID(str(job_id))  # as the reads return it
        self._held[job_id].add(held)
        self._crowd = max(self._crowd, len(self._held))
        try:
            yield
        finally:
            self._held[job_id].discard(held)
            if not self._held[job_id]:
                del self._held[job_id]

    async def run(self) -> None:
        """Read the held jobs every AGR_CHAT_POLL_S until cancelled (the app's lifespan)."""
        poll_s = get_settings().chat_poll_s
        while True:
            await asyncio.sleep(poll_s)
            if not self._held:
                if self._crowd >= RETURN_MEMORY_AFTER and self._returning_memory is None:
                    self._returning_memory = asyncio.ensure_future(self._return_memory())
                self._crowd = 0
                continue
            streamed = [job_id for job_id, held in self._held.items() if any(h.streamed for h in held)]
            try:
                ended, done_steps = await run_in_threadpool(_read, list(self._held), streamed)
            except Exception as exc:  # the database away: the calls wait on, as their jobs do
                log.warning("held chat calls: reading their jobs failed: %s", exc)
                continue
            self._wake(ended, done_steps)

    def _wake(self, ended: set[UUID], done_steps: dict[UUID, int]) -> None:
        for job_id, held in list(self._held.items()):
            for call in held:
                count = done_steps.get(job_id, 0)
                # A stream's first read by this loop wakes it once: a step done between its own
                # first read and this one is told now, not at the next step.
                progressed = call.streamed and count != call.done_steps
                if call.streamed:
                    call.done_steps = count
                if job_id in ended or progressed:
                    call.event.set()

    async def _return_memory(self) -> None:
        """Hand back what a crowd of held calls used, once it has gone (and no new crowd
        came meanwhile). The worker threads started to make the crowd's jobs are ended
        first: alive, what they allocated among the calls' objects pins the heap's pages.
        Then glibc is asked to return its free pages (bench/front_door.py --held 1000:
        9-11 MiB kept after, 34.9 before this and PYTHONMALLOC=malloc)."""
        try:
            await asyncio.sleep(IDLE_THREADS_END_AFTER_S)
            if len(self._held) < RETURN_MEMORY_AFTER:
                await run_in_threadpool(lambda: None)
                await asyncio.sleep(THREADS_EXIT_S)  # told to end, they still have to
                gc.collect()  # a full collection also empties the interpreter's free lists
                _trim_heap()
        finally:
            self._returning_memory = None


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        pass


# The held jobs that ended or are gone (deleted meanwhile: their calls read None and end).
_ENDED_OR_GONE = text(
    "SELECT held.id FROM unnest(:ids) AS held(id) LEFT JOIN jobs ON jobs.id = held.id "
    "WHERE jobs.id IS NULL OR jobs.status IN :terminal"
).bindparams(bindparam("ids", type_=ARRAY(PG_UUID(as_uuid=True))),
             bindparam("terminal", [s.value for s in TERMINAL_JOB_STATUSES], expanding=True)
             ).columns(id=PG_UUID(as_uuid=True))


def _read(job_ids: list[UUID], streamed: list[UUID]) -> tuple[set[UUID], dict[UUID, int]]:
    """The held jobs that ended (or were deleted), and each streamed job's done steps.

    One statement on a pooled connection, the ids as one uuid[] parameter, and only ended
    jobs come back (usually none): this runs in a thread every AGR_CHAT_POLL_S, and the
    event loop waits for the interpreter while it runs Python (with 1,000 held calls, an
    ORM session and three statements made /healthz's p99 2.5 times idle)."""
    with get_engine().connect() as connection:
        ended = set(connection.execute(_ENDED_OR_GONE, {"ids": job_ids}).scalars())
        done: dict[UUID, int] = {}
        if streamed:
            done = dict(connection.execute(select(Step.job_id, func.count()).where(
                Step.job_id.in_(streamed), Step.status == StepStatus.DONE).group_by(Step.job_id)).tuples().all())
        connection.rollback()  # read only: nothing to commit
    return ended, done
