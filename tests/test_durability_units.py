"""Edge cases of the durable pipeline, in seconds: the lease, the outbox, the sweeper and
the GPU batch pipeline against the real Postgres and Redis, without worker processes.
The full-stack versions of these faults are in tests/test_chaos.py and tests/test_backlog.py."""

import json
import threading
import time
from base64 import b64decode

import pytest
import redis
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from core.broker_redis import queue_keys
from core.database_outage import through_outage
from core.settings import get_settings
from models import Step, StepKind, StepStatus
from models.db import session_scope
from tests.stack import question_item, tone_wav


@pytest.fixture
def settings(monkeypatch, database_url, broker_url):
    """Set AGR_ settings for this test's own process (the code under test reads them)."""

    def configure(**values):
        for key, value in values.items():
            monkeypatch.setenv(f"AGR_{key.upper()}", str(value))
        get_settings.cache_clear()

    yield configure
    monkeypatch.undo()
    get_settings.cache_clear()


def _steps(tmp_path, count: int, kind: StepKind = StepKind.PERCEIVE_CPU, tenant_id=None) -> list[int]:
    """A batch of `count` jobs, each with one queued step of `kind`, their messages unsent."""
    from api.intake.submission import BatchRequest, create_batch

    items = [question_item(f"q{i}", tone_wav(tmp_path / f"{i}.wav")) for i in range(count)]
    _, ids = create_batch(BatchRequest("units", items, {}, tenant_id=tenant_id))
    if kind != StepKind.PERCEIVE_CPU:
        with session_scope() as session:
            session.execute(update(Step).where(Step.id.in_(ids)).values(kind=kind))
    return ids


def _messages(queue: str, priority_list: int = 0) -> list[int]:
    """The step ids of the messages waiting in one priority list of `queue`, oldest first."""
    client = redis.Redis.from_url(get_settings().broker_url)
    raw = client.lrange(queue_keys(queue)[priority_list], 0, -1)
    return [json.loads(b64decode(json.loads(m)["body"]))[0][0] for m in reversed(raw)]


def _by_number(ids: list[int]) -> list[int]:
    """The steps in the order their messages were sent (their numbers' order)."""
    with session_scope() as session:
        return list(session.scalars(select(Step.id).where(Step.id.in_(ids)).order_by(Step.sent_seq)))


def _step(step_id: int) -> Step:
    with session_scope() as session:
        return session.get(Step, step_id)


# --- waiting out the database -------------------------------------------------------------

def test_an_unreachable_database_is_waited_out_and_a_refusal_is_not(settings):
    settings(database_outage_tolerance_s=30)
    tries = []

    def flaky():
        tries.append(time.monotonic())
        if len(tries) < 3:
            raise OperationalError("SELECT 1", {}, Exception("connection refused"))
        return "answered"

    assert through_outage(flaky, "a test") == "answered" and len(tries) == 3

    refused = []

    def refusal():
        refused.append(1)
        raise IntegrityError("INSERT", {}, Exception("NUL byte"))

    with pytest.raises(IntegrityError):
        through_outage(refusal, "a test")
    assert refused == [1]  # a refused statement is not tried again


def test_waiting_out_an_outage_is_bounded(settings):
    settings(database_outage_tolerance_s=0.5)

    def down():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    started = time.monotonic()
    with pytest.raises(OperationalError):
        through_outage(down, "a test")
    assert time.monotonic() - started < 10


# --- the lease -----------------------------------------------------------------------------

def test_a_lease_renewal_retries_through_failures_and_notices_a_takeover(settings, tmp_path, monkeypatch):
    from workers.runtime.lease import LeaseLost, LeaseRenewal
    from workers.runtime.step_claim import claim_step

    settings(step_lease_s=3, step_lease_renew_s=0.2)
    (step_id,) = _steps(tmp_path, 1)
    claim = claim_step(step_id)
    real = LeaseRenewal._renew_once
    failures = {"left": 8}  # ~2 s of failed renewals: most of the lease

    def blip(self, live):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("UPDATE steps", {}, Exception("server closed the connection"))
        return real(self, live)

    monkeypatch.setattr(LeaseRenewal, "_renew_once", blip)
    renewal = LeaseRenewal([claim]).start()
    try:
        _wait(lambda: failures["left"] == 0, "the failed renewals")
        time.sleep(1.5)  # past the original lease: only a renewal after the blip keeps it
        renewal.confirm(claim)
        with session_scope() as session:
            live = session.scalar(select(Step.lease_expires_at > text("now()")).where(Step.id == step_id))
        assert live and renewal._thread.is_alive()

        with session_scope() as session:  # another execution takes the step over
            session.execute(update(Step).where(Step.id == step_id).values(attempts=Step.attempts + 1))
        _wait(lambda: renewal.lost(claim), "the renewal to notice the takeover")
        with pytest.raises(LeaseLost):
            renewal.confirm(claim)
    finally:
        renewal.stop()


def test_paid_work_waits_while_the_lease_is_in_doubt(settings, tmp_path, monkeypatch):
    """No renewal reaching the database for most of a lease: another worker might take
    the step soon, so no new paid call starts until a renewal says whose it is."""
    from workers.runtime.lease import LeaseRenewal
    from workers.runtime.step_claim import claim_step

    settings(step_lease_s=1, step_lease_renew_s=0.2)
    (step_id,) = _steps(tmp_path, 1)
    claim = claim_step(step_id)
    down = threading.Event()
    down.set()
    real = LeaseRenewal._renew_once

    def maybe_down(self, live):
        if down.is_set():
            raise OperationalError("UPDATE steps", {}, Exception("connection refused"))
        return real(self, live)

    monkeypatch.setattr(LeaseRenewal, "_renew_once", maybe_down)
    renewal = LeaseRenewal([claim]).start()
    try:
        time.sleep(1.0)  # in doubt now
        confirmed = threading.Event()
        waiter = threading.Thread(target=lambda: (renewal.confirm(claim), confirmed.set()))
        waiter.start()
        time.sleep(0.5)
        assert not confirmed.is_set()
        down.clear()  # the database is back, nobody took the step: the lease is ours again
        waiter.join(timeout=10)
        assert confirmed.is_set()
    finally:
        renewal.stop()


# --- the outbox ------------------------------------------------------------------------------

def test_each_queued_step_has_at_most_one_message_out(settings, tmp_path):
    from workers.runtime import outbox

    ids = _steps(tmp_path, 3)
    assert outbox.send_now(ids) == 3
    assert outbox.send_now(ids) == 0  # taken already: no second message
    assert outbox.top_up(least=1) == 0
    assert _messages("perception-cpu", priority_list=2) == _by_number(ids)  # normal priority, in order
    assert [_step(i).sends for i in ids] == [1, 1, 1]


def test_a_commit_whose_send_never_happened_is_sent_by_the_next_top_up(settings, tmp_path):
    from workers.runtime import outbox

    (step_id,) = _steps(tmp_path, 1)  # committed with its message due: the crash came before the send
    assert outbox.top_up() == 1  # whoever tops the window up next
    assert _messages("perception-cpu", priority_list=2) == [step_id]  # its first message: in its turn
    assert _step(step_id).send_due_at is None


def test_the_window_is_filled_in_turns_across_tenants_then_batches(settings, tmp_path):
    from models import Tenant
    from workers.runtime import outbox
    from workers.runtime.step_claim import claim_step

    settings(dispatch_window=6)
    with session_scope() as session:
        a, b = Tenant(name=f"a-{tmp_path.name}"), Tenant(name=f"b-{tmp_path.name}")
        session.add_all([a, b])
    a1, a2 = _steps(tmp_path, 4, tenant_id=a.id), _steps(tmp_path, 4, tenant_id=a.id)  # its two batches
    b1 = _steps(tmp_path, 4, tenant_id=b.id)  # queued last

    assert outbox.top_up() == 6  # the window; the rest waits in Postgres
    assert outbox.top_up(least=1) == 0
    # Tenants in turn (the longest waiting first), and a tenant's batches in turn.
    assert _messages("perception-cpu", priority_list=2) == [a1[0], b1[0], a2[0], b1[1], a1[1], b1[2]]
    for step_id in (a1[0], a2[0], a1[1]):  # a's three are claimed: room for three more
        claim_step(step_id, message_seq=_step(step_id).sent_seq)
    assert outbox.top_up(least=1) == 3
    # b has its three out still: the room is a's, its batches in turn.
    assert _messages("perception-cpu", priority_list=2)[6:] == [a1[2], a2[1], a1[3]]


def test_a_failed_attempts_retry_waits_in_postgres_not_in_a_worker(settings, tmp_path):
    from workers.runtime import outbox
    from workers.runtime.step_claim import claim_step
    from workers.runtime.step_runner import fail_attempt

    settings(retry_backoff_s=1.5)
    (step_id,) = _steps(tmp_path, 1)
    outbox.send_now([step_id])
    redis.Redis.from_url(get_settings().broker_url).delete(*queue_keys("perception-cpu"))  # taken by a worker
    fail_attempt(claim_step(step_id), RuntimeError("tool crashed"))
    step = _step(step_id)
    assert (step.status, step.attempts) == (StepStatus.QUEUED, 1) and step.send_due_at is not None
    assert outbox.top_up(least=1) == 0  # not due yet: no countdown message anywhere
    _wait(lambda: outbox.top_up(least=1) == 1, "the retry to fall due", timeout=20)
    assert _messages("perception-cpu", priority_list=0) == [step_id]  # it had its turn once: urgent


# --- the sweeper -----------------------------------------------------------------------------

def test_a_message_lost_in_a_busy_queue_is_re_sent_ahead_of_the_backlog(settings, tmp_path):
    from workers.runtime import outbox
    from workers.runtime.step_claim import claim_step
    from workers.runtime.sweeper import Sweeper

    settings(lost_message_after_s=0.5)
    made = _steps(tmp_path, 5)
    outbox.send_now(made)
    ids = _by_number(made)  # in the queue's order
    client = redis.Redis.from_url(get_settings().broker_url)
    normal = queue_keys("perception-cpu")[2]
    client.rpop(normal)  # the first message: taken by a worker that died before claiming
    client.rpop(normal)  # the second: consumed in order, and claimed through it
    claim_step(ids[1], message_seq=_step(ids[1]).sent_seq)
    sweeper = Sweeper(last_pass_at=time.monotonic())
    assert sweeper.sweep().lost_messages == 0  # the claim is too recent to say yet
    time.sleep(1.0)
    report = sweeper.sweep()

    assert report.lost_messages == 1  # the three behind are waiting, not lost
    assert _messages("perception-cpu", priority_list=0) == [ids[0]]  # urgent: ahead of the backlog
    assert _messages("perception-cpu", priority_list=2) == ids[2:]
    assert _step(ids[0]).sends == 2


def test_a_lost_urgent_message_is_found_by_its_empty_lane_behind_a_busy_one(settings, tmp_path):
    """The urgent lane is empty and the normal one holds a backlog: a message lost from the
    urgent lane is not waiting behind anything, whatever the other lane holds."""
    from workers.runtime import outbox
    from workers.runtime.sweeper import Sweeper

    settings(lost_message_after_s=0.5)
    lost, *backlog = _steps(tmp_path, 4)
    outbox.send_now([lost], urgent=True)
    outbox.send_now(backlog)
    backlog = _by_number(backlog)
    redis.Redis.from_url(get_settings().broker_url).delete(queue_keys("perception-cpu")[0])
    time.sleep(1.0)
    assert Sweeper(last_pass_at=time.monotonic()).sweep().lost_messages == 1
    assert _messages("perception-cpu", priority_list=0) == [lost]
    assert _messages("perception-cpu", priority_list=2) == backlog


def test_a_step_taken_without_its_message_does_not_mark_earlier_ones_lost(settings, tmp_path):
    """A GPU worker takes batch-mates from Postgres ahead of their messages: such a claim
    says nothing about how far the queue's consumers have got."""
    from workers.runtime import outbox
    from workers.runtime.step_claim import claim_step
    from workers.runtime.sweeper import Sweeper

    settings(lost_message_after_s=0.5)
    made = _steps(tmp_path, 3, kind=StepKind.PERCEIVE_GPU)
    outbox.send_now(made)
    ids = _by_number(made)
    claim_step(ids[2])  # a batch-mate: no message woke it
    time.sleep(1.0)
    assert Sweeper(last_pass_at=time.monotonic()).sweep().lost_messages == 0
    assert _messages("perception", priority_list=2) == ids


def test_after_a_gap_a_lapsed_lease_gets_one_more_lease_before_it_is_taken_back(settings, tmp_path):
    from workers.runtime.step_claim import claim_step
    from workers.runtime.sweeper import Sweeper

    settings(step_lease_s=2)  # and Postgres has been up longer than that
    (step_id,) = _steps(tmp_path, 1)
    claim_step(step_id)

    def lapse():
        with session_scope() as session:
            session.execute(update(Step).where(Step.id == step_id)
                            .values(lease_expires_at=text("now() - interval '1 second'")))

    lapse()
    # Its last pass was longer than a lease ago: the database was unreachable, and the
    # step's worker may have waited out the same outage.
    sweeper = Sweeper(last_pass_at=time.monotonic() - get_settings().step_lease_s - 1)
    report = sweeper.sweep()
    assert (report.leases_extended, report.lapsed_leases) == (1, 0)
    assert _step(step_id).status == StepStatus.RUNNING
    lapse()  # nobody renewed it in that lease: its worker is dead
    report = sweeper.sweep()
    assert report.lapsed_leases == 1 and _step(step_id).status == StepStatus.QUEUED
    assert _messages("perception-cpu", priority_list=0) == [step_id]


def test_a_sweeper_just_started_takes_back_a_lapsed_lease_at_once(settings, tmp_path):
    """Only the sweeper restarted (`agr resume` after a crash): the database stayed up, so
    the workers were renewing all along, and what lapsed is dead."""
    from workers.runtime.step_claim import claim_step
    from workers.runtime.sweeper import Sweeper

    settings(step_lease_s=2)  # and Postgres has been up longer than that
    (step_id,) = _steps(tmp_path, 1)
    claim_step(step_id)
    with session_scope() as session:
        session.execute(update(Step).where(Step.id == step_id)
                        .values(lease_expires_at=text("now() - interval '1 second'")))
    assert Sweeper().sweep().lapsed_leases == 1
    assert _step(step_id).status == StepStatus.QUEUED


def test_each_attempt_is_audited_with_how_it_ended(settings, tmp_path):
    from models import StepAttempt
    from workers.runtime.step_claim import claim_step
    from workers.runtime.step_runner import fail_attempt
    from workers.runtime.sweeper import Sweeper

    settings(step_lease_s=2)
    (step_id,) = _steps(tmp_path, 1)
    fail_attempt(claim_step(step_id), RuntimeError("tool crashed"))
    claim_step(step_id)
    with session_scope() as session:  # attempt 2's worker dies: its lease lapses
        session.execute(update(Step).where(Step.id == step_id)
                        .values(lease_expires_at=text("now() - interval '1 second'")))
    Sweeper().sweep()
    with session_scope() as session:
        log = session.execute(select(StepAttempt.attempt, StepAttempt.outcome, StepAttempt.worker)
                              .where(StepAttempt.step_id == step_id).order_by(StepAttempt.attempt)).all()
    assert [(a, o) for a, o, _ in log] == [(1, "failed: RuntimeError: tool crashed"),
                                          (2, "lapsed: its worker died or stopped renewing its lease")]
    assert all(w for _, _, w in log)


def test_steps_of_a_cancelled_job_are_settled_once_not_read_every_pass(settings, tmp_path):
    from models import Job, JobStatus
    from workers.runtime import outbox
    from workers.runtime.sweeper import Sweeper

    ids = _steps(tmp_path, 2)
    outbox.send_now(ids)
    with session_scope() as session:
        job = session.scalar(select(Step.job_id).where(Step.id == ids[0]))
        session.execute(update(Job).where(Job.id == job).values(status=JobStatus.CANCELLED))
    Sweeper(last_pass_at=time.monotonic()).sweep()
    cancelled, other = _step(ids[0]), _step(ids[1])
    assert (cancelled.status, cancelled.last_error) == (StepStatus.FAILED, "not run: its job was cancelled or expired first")
    assert other.status == StepStatus.QUEUED


def test_exactly_one_sweeper_holds_the_cluster_lock(settings):
    from workers.runtime.sweeper_loop import ClusterLock

    first, second = ClusterLock(), ClusterLock()
    assert first.held() and not second.held()
    first._drop()  # its connection closed: a crashed sweeper
    assert second.held() and not first.held()
    second._drop()


# --- the GPU batch pipeline ------------------------------------------------------------------

def test_a_gpu_pipeline_that_raises_ends_every_claim(settings, tmp_path, monkeypatch):
    from workers.method.steps import perceive_gpu
    from workers.runtime import gpu_batch

    settings(gpu_batch_size=3, gpu_batch_wait_s=0, step_lease_renew_s=0.2, max_attempts=3)
    ids = _steps(tmp_path, 3, kind=StepKind.PERCEIVE_GPU)
    monkeypatch.setattr(perceive_gpu, "prepare", lambda claims, size: perceive_gpu.GpuBatch(claims, {}, {}, [], []))

    def compute(batch):
        raise RuntimeError("injected: the model crashed")

    monkeypatch.setattr(perceive_gpu, "compute", compute)
    with pytest.raises(RuntimeError):
        gpu_batch.run_gpu_steps(ids[0])

    for step_id in ids:
        step = _step(step_id)
        assert (step.status, step.attempts) == (StepStatus.QUEUED, 1), step_id
        assert "injected" in step.last_error and step.send_due_at is not None  # its retry is due
    assert [t.name for t in threading.enumerate() if t.name.startswith("lease-")] == []


def _wait(condition, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
