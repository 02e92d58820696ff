"""GPU workers on one queue never queue behind each other's row locks (issue 16).

A GPU worker takes batch-mates from its queue's window (workers/runtime/gpu_batch.py). Two such
workers look at the same window, in the same order; if the second waited on the rows the
first is claiming, they would take turns instead of both being busy. These tests hold a
claim's row locks open in another transaction, as a worker mid-claim does, and check from
Postgres itself (pg_stat_activity: a backend waiting on a lock) that the other claimer
never waits, and still gets steps of its own. In seconds, against the real Postgres and
Redis, without worker processes.
"""

import threading
import time

import pytest
from sqlalchemy import func, select, text

from core.settings import get_settings
from models import Job, JobStatus, Step, StepAttempt, StepKind, StepStatus
from models.db import get_engine, session_scope
from tests.stack import question_item, tone_wav


@pytest.fixture
def settings(monkeypatch, database_url, broker_url):
    monkeypatch.setenv("AGR_GPU_BATCH_WAIT_S", "0")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


def _gpu_steps_in_window(tmp_path, count: int) -> list[int]:
    """`count` jobs, each with one queued GPU step whose message is out (in the window),
    in the order of their messages."""
    from api.intake.submission import BatchRequest, create_batch
    from workers.runtime import outbox

    items = [question_item(f"g{i}", tone_wav(tmp_path / f"{i}.wav")) for i in range(count)]
    _, ids = create_batch(BatchRequest("gpu-claims", items, {}))
    with session_scope() as session:
        session.execute(Step.__table__.update().where(Step.id.in_(ids)).values(kind=StepKind.PERCEIVE_GPU))
    assert outbox.send_now(ids) == count
    with session_scope() as session:
        return list(session.scalars(select(Step.id).where(Step.id.in_(ids)).order_by(Step.sent_seq)))


def _lock_waiters() -> int:
    """Backends of this test's database waiting on a lock right now."""
    with get_engine().connect() as conn:
        return conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                "AND wait_event_type = 'Lock'"))


def _run_until_done_or_waiting(work):
    """Run `work` in a thread until it returns or its transaction waits on a lock (whichever
    Postgres shows first); returns (finished, result)."""
    result, error = [], []

    def target():
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while thread.is_alive() and _lock_waiters() == 0:
        assert time.monotonic() < deadline, "the claim neither finished nor waited"
        thread.join(0.02)
    finished = not thread.is_alive()
    return thread, finished, result, error


def _hold_row_locks(step_ids: list[int]):
    """A transaction holding these steps' rows locked, as another worker's claim does midway."""
    conn = get_engine().connect()
    transaction = conn.begin()
    conn.execute(text("SELECT id FROM steps WHERE id = ANY(:ids) ORDER BY id FOR UPDATE"), {"ids": step_ids})
    return conn, transaction


def test_a_gpu_worker_takes_other_batch_mates_while_another_holds_the_first_ones_locked(settings, tmp_path):
    from workers.runtime.gpu_batch import claim_waiting

    ids = _gpu_steps_in_window(tmp_path, 6)
    conn, held = _hold_row_locks(ids[:3])  # worker A, claiming the window's first three
    try:
        thread, finished, claims, error = _run_until_done_or_waiting(lambda: claim_waiting(3, 0.0))
        assert finished, "worker B waited on worker A's row locks (pg_stat_activity shows a lock wait)"
        assert not error, error
        assert [c.step_id for c in claims[0]] == ids[3:]  # the next three, in message order
    finally:
        held.rollback()
        conn.close()
        thread.join(30)
    with session_scope() as session:
        rows = session.execute(select(Step.id, Step.status, Step.attempts, Step.claimed_seq, Job.status, Job.attempts)
                               .join(Job, Job.id == Step.job_id).where(Step.id.in_(ids)).order_by(Step.sent_seq)).all()
        audited = session.scalars(select(StepAttempt.step_id).where(StepAttempt.step_id.in_(ids),
                                                                    StepAttempt.outcome.is_(None))).all()
    # The claims are the usual fenced leases: attempt 1, running, the job started, audited.
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows[3:]] == [
        (StepStatus.RUNNING, 1, None, JobStatus.IN_PROGRESS, 1)] * 3
    assert [(r[1], r[2]) for r in rows[:3]] == [(StepStatus.QUEUED, 0)] * 3  # A's, untouched
    assert sorted(audited) == sorted(ids[3:])


def test_two_gpu_workers_claiming_at_once_share_the_window_without_overlap(settings, tmp_path):
    from workers.runtime.gpu_batch import claim_waiting

    ids = _gpu_steps_in_window(tmp_path, 8)
    start = threading.Barrier(2)
    taken: dict[str, list[int]] = {}

    def worker(name):
        start.wait()
        taken[name] = [c.step_id for c in claim_waiting(4, 0.0)]

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(taken["a"] + taken["b"]) == sorted(ids)  # both busy, nothing taken twice
    assert len(taken["a"]) == len(taken["b"]) == 4
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Step).where(
            Step.id.in_(ids), Step.status == StepStatus.RUNNING, Step.attempts == 1)) == 8


def test_batch_mates_are_only_untried_window_steps_of_live_jobs(settings, tmp_path):
    from workers.runtime.gpu_batch import claim_waiting

    ids = _gpu_steps_in_window(tmp_path, 5)
    tried, cancelled, due, excluded, fine = ids
    with session_scope() as session:
        session.execute(Step.__table__.update().where(Step.id == tried).values(attempts=1))
        session.execute(Step.__table__.update().where(Step.id == due).values(send_due_at=func.now()))
        job_id = session.scalar(select(Step.job_id).where(Step.id == cancelled))
        session.execute(Job.__table__.update().where(Job.id == job_id).values(status=JobStatus.CANCELLED))
    assert [c.step_id for c in claim_waiting(5, 0.0, exclude={excluded})] == [fine]


def test_a_claim_woken_by_its_message_waits_for_a_sender_holding_its_row(settings, tmp_path):
    """The other side: a step's own message may arrive while its sender's transaction still
    holds the row (it sends before it commits). That claim must wait, not skip: skipping
    would drop the message and leave the step for the sweeper's lost-message pass."""
    from workers.runtime.step_claim import claim_step

    ids = _gpu_steps_in_window(tmp_path, 1)
    with session_scope() as session:
        seq = session.scalar(select(Step.sent_seq).where(Step.id == ids[0]))
    conn, held = _hold_row_locks(ids)
    try:
        thread, finished, claims, error = _run_until_done_or_waiting(lambda: claim_step(ids[0], seq))
        assert not finished  # it waits on the row
    finally:
        held.commit()
        conn.close()
    thread.join(30)
    assert not error, error
    assert claims[0] is not None and claims[0].attempt == 1
