"""Held chat calls are woken by Postgres when their job ends: the trigger of migration 0011
notifies on commit, the API's listener wakes the waiting call, and it listens again after
its connection is cut (a database blip)."""

import asyncio
import time

from sqlalchemy import select, text, update

from api.front_door.job_end_listener import JobEndListener, Waiter
from models import Job, JobStatus
from models.db import session_scope
from tests.stack import planning_steps


def _ended(job_id, status: JobStatus) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=status))


def _wait_for(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)


def test_an_answered_job_wakes_its_waiter_and_the_listener_survives_a_cut_connection(database_url, tmp_path):
    batch_id, _ = planning_steps(tmp_path, "listened", 3)
    with session_scope() as session:
        first, second, cancelled = session.scalars(select(Job.id).where(Job.batch_id == batch_id)
                                                   .order_by(Job.custom_id)).all()
    listener = JobEndListener().start()
    try:
        _wait_for(listener.listening.is_set)

        assert asyncio.run(_woken(listener, first, lambda: _ended(first, JobStatus.SUCCEEDED)))
        # The database cuts the listener's connection: it listens again, and still wakes.
        with session_scope() as session:
            session.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE query = 'LISTEN agr_job_ended' AND datname = current_database()"))
        _wait_for(lambda: listener.connections >= 2 and listener.listening.is_set())
        assert asyncio.run(_woken(listener, second, lambda: _ended(second, JobStatus.ERRORED)))
        # Cancel announces nothing (it ends thousands of jobs at once): the call's poll sees it.
        assert not asyncio.run(_woken(listener, cancelled, lambda: _ended(cancelled, JobStatus.CANCELLED),
                                  seconds=2.0))
    finally:
        listener.stop()


async def _woken(listener, job_id, end, seconds: float = 60.0) -> bool:
    """Whether a waiter on the job was woken within `seconds` of `end` committing. (For a
    job whose end must not be announced a short wait is enough: a wrong announcement
    comes as fast as a right one, and a slow machine can only hide it, never invent it.)"""
    with Waiter(listener, job_id) as event:
        await asyncio.get_running_loop().run_in_executor(None, end)
        try:
            await asyncio.wait_for(event.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            return False
        return True
