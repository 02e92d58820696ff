"""Chat calls held open cost the API next to nothing while their jobs do not change.

The API alone (no worker: every job stays queued, every call stays held), 40 calls held
at once. What a user (an operator) would check: how much the API asks of Postgres while
it holds them, and that a held call still ends when its job ends without Postgres
announcing it (a cancel sends no announcement): the API's one read of all held jobs finds it.
And once a crowd of held calls has gone, the worker threads started to make their jobs end
(alive, what they allocated among the calls' objects keeps the heap's pages).
"""

import asyncio
import base64
import time

import httpx
import psutil
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.pool import NullPool

from api.front_door.held_jobs import RETURN_MEMORY_AFTER
from api.keys import create_key
from models import Job, JobStatus
from models.db import session_scope
from tests.stack import tone_wav

HELD = 40
WINDOW_S = 4.0


def _transactions(database_url: str) -> int:
    """Transactions committed in the module's database so far, as its statistics say."""
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as connection:
        return connection.execute(text("SELECT xact_commit FROM pg_stat_database "
                                       "WHERE datname = current_database()")).scalar()


def _body(clip: bytes, k: int) -> dict:
    audio = base64.b64encode(clip).decode()
    return {"model": "agr", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}},
        {"type": "text", "text": f"Question {k}: what is heard?\n(A) A tone\n(B) A voice"}]}]}


def _now():
    with session_scope() as session:
        return session.scalar(select(func.now()))


async def _made(count: int, since) -> list:
    """The ids of `count` queued chat jobs made after `since`, once there are that many
    (the module's earlier test leaves queued jobs of its own)."""
    deadline = time.monotonic() + 120
    while True:
        with session_scope() as session:
            jobs = session.scalars(select(Job.id).where(Job.custom_id == "chat", Job.status == JobStatus.QUEUED,
                                                        Job.created_at > since).order_by(Job.created_at)).all()
        if len(jobs) >= count:
            return jobs[-count:]
        assert time.monotonic() < deadline, f"{len(jobs)} of {count} jobs made"
        await asyncio.sleep(0.2)


def test_held_calls_cost_no_reads_while_their_jobs_wait_and_end_when_their_job_does(stack, database_url,
                                                                                    tmp_path):
    url = stack.start_api()
    key = create_key("held", rate_limit_per_minute=100_000)
    clips = [tone_wav(tmp_path / f"{k}.wav", seconds=0.2).read_bytes() for k in range(HELD)]

    since = _now()

    async def hold() -> tuple[int, httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=None, limits=httpx.Limits(max_connections=HELD + 5),
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            calls = [asyncio.create_task(client.post("/v1/chat/completions", json=_body(c, k)))
                     for k, c in enumerate(clips)]
            jobs = await _made(HELD, since)
            assert not [c for c in calls if c.done()], "a call ended while its job waits"
            await asyncio.sleep(3.0)  # every call settled into its wait, the steps' messages sent
            began = _transactions(database_url)
            await asyncio.sleep(WINDOW_S)
            spent = _transactions(database_url) - began
            with session_scope() as session:  # no announcement: a cancel sends none
                session.execute(update(Job).where(Job.id == jobs[0]).values(status=JobStatus.CANCELLED))
            done, _ = await asyncio.wait(calls, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            for call in calls:
                call.cancel()
            return spent, done.pop().result() if done else None

    spent, ended = asyncio.run(hold())
    # Before: each held call read its job every 0.5 s, 2 transactions a second each (~320 here).
    assert spent < 3 * HELD, f"{spent} transactions in {WINDOW_S} s while {HELD} calls were held"
    assert ended is not None and ended.status_code == 422 and "cancelled" in ended.text, ended


def test_a_crowd_of_held_calls_gone_leaves_none_of_its_threads(stack, tmp_path):
    url = stack.start_api()
    api = psutil.Process(stack.workers["api"].pid)
    key = create_key("crowd", rate_limit_per_minute=100_000)
    crowd = RETURN_MEMORY_AFTER + 40  # some may leave before their call is held
    clips = [tone_wav(tmp_path / f"{k}.wav", seconds=0.2).read_bytes() for k in range(crowd)]
    threads_idle, since = api.num_threads(), _now()

    async def hold_then_leave() -> int:
        async with httpx.AsyncClient(base_url=url, timeout=None, limits=httpx.Limits(max_connections=crowd + 5),
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            calls = [asyncio.create_task(client.post("/v1/chat/completions", json=_body(c, k)))
                     for k, c in enumerate(clips)]
            await _made(crowd, since)
            assert not [c for c in calls if c.done()], "a call ended while its job waits"
            threads_held = api.num_threads()
            for call in calls:
                call.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        return threads_held

    threads_held = asyncio.run(hold_then_leave())
    # Its thread pool's 40, less a few other threads that may start meanwhile (uvloop's
    # resolver pool of 4 on a first name lookup), and a worker anyio keeps.
    assert threads_held > threads_idle + 10, "making the crowd's jobs started no threads: nothing to check"
    deadline = time.monotonic() + 120
    while (threads := api.num_threads()) > threads_idle + 6:  # before: all of them, for as long as it ran
        assert time.monotonic() < deadline, f"{threads} threads, {threads_idle} before the crowd came"
        time.sleep(0.5)
