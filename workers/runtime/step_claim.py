"""Claiming a step: the lease that makes at-least-once delivery safe.

A worker may run a step only while it holds the step's lease. The claim bumps the step's
attempt number, which doubles as a fencing token: every later write of that execution
names the attempt it belongs to, so a stale execution (one whose lease lapsed and whose
step was taken over) can never overwrite the newer one.

A claim is one short transaction: the step and its job locked by one statement, then one
statement that takes the lease, opens the attempt's audit row and starts the job. GPU
batch-mates (workers/runtime/gpu_batch.py) are picked and claimed by a single statement that
skips rows another transaction holds (`FOR UPDATE ... SKIP LOCKED`), reading the window's
partial index: two GPU workers on one queue take different steps and never wait on each
other's locks. A claim woken by its step's own message does wait for the row: its sender
may still hold it (it sends before it commits), and skipping would drop the message.
"""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import BigInteger, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY

from core.settings import get_settings
from models import Job, Step, StepKind, StepStatus
from models.db import session_scope
from models.status import TERMINAL_JOB_STATUSES
from workers.runtime import attempt_log
from workers.runtime.job_state import finish_job_with_error

_ENDED = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_JOB_STATUSES))

# Take the lease of the steps in `picked` (ids, locked by the caller's statement), open
# each attempt's audit row and start each job: one statement, one round trip. `seq`: the
# number of the message that woke the claim (only a claim woken by the step's current
# message says where its queue's consumers have got, for the sweeper).
_TAKE = """
claimed AS (
    UPDATE steps s SET status = 'running', attempts = s.attempts + 1,
           lease_expires_at = now() + make_interval(secs => :lease_s),
           updated_at = now(), claimed_at = now(), send_due_at = NULL,
           claimed_seq = CASE WHEN s.sent_seq = CAST(:seq AS bigint) THEN s.sent_seq END
    FROM picked WHERE s.id = picked.id
    RETURNING s.id, s.job_id, s.iteration, s.kind, s.attempts, s.sent_seq
), audited AS (
    INSERT INTO step_attempts (step_id, attempt, worker, started_at)
    SELECT id, attempts, :worker, now() FROM claimed
    ON CONFLICT (step_id, attempt) DO NOTHING
), started AS (
    UPDATE jobs j SET attempts = j.attempts + 1,
           status = CASE WHEN j.status = 'queued' THEN 'in_progress' ELSE j.status END,
           started_at = CASE WHEN j.status = 'queued' THEN now() ELSE j.started_at END
    FROM claimed WHERE j.id = claimed.job_id
)
SELECT id, job_id, iteration, kind, attempts FROM claimed ORDER BY sent_seq NULLS LAST, id
"""
CLAIM_ONE = text("WITH picked AS (SELECT CAST(:step_id AS bigint) AS id), " + _TAKE)
# GPU batch-mates: steps whose messages are out and unclaimed (the window, in message
# order: the fair order's choice), never tried (a step tried before runs alone, by its own
# message), of jobs not ended; locked rows are someone else's claim (or send): skipped.
CLAIM_BATCH_MATES = text(f"""
WITH picked AS (
    SELECT s.id FROM steps s JOIN jobs j ON j.id = s.job_id
    WHERE s.status = 'queued' AND s.kind = :kind AND s.send_due_at IS NULL AND s.sent_seq IS NOT NULL
      AND s.attempts = 0 AND j.status NOT IN ({_ENDED}) AND s.id <> ALL(:exclude)
    ORDER BY s.sent_seq
    LIMIT :limit
    FOR UPDATE OF s, j SKIP LOCKED
), {_TAKE}""").bindparams(bindparam("exclude", type_=ARRAY(BigInteger)))


@dataclass(frozen=True)
class StepClaim:
    step_id: int
    job_id: UUID
    iteration: int
    kind: StepKind
    attempt: int  # fencing token: this execution's attempt number


def claim_step(step_id: int, message_seq: int | None = None) -> StepClaim | None:
    """Take the step's lease, or return None when there is nothing (left) to do.
    `message_seq`: the number of the message that woke this claim (workers/runtime/outbox.py), None
    for a step taken from Postgres directly (a GPU batch-mate)."""
    with session_scope() as session:
        return claim_in(session, step_id, message_seq)


def claim_in(session, step_id: int, message_seq: int | None = None) -> StepClaim | None:
    """`claim_step` in the caller's transaction (which commits it)."""
    settings = get_settings()
    # A running step's lease counts as live until a renewal interval past its expiry: its
    # worker may be renewing it right now, after waiting out a database outage.
    grace = timedelta(seconds=settings.lease_renew_interval_s)
    row = session.execute(
        select(Step.status, Step.attempts, Step.kind, Step.iteration, Step.last_error,
               Step.lease_expires_at + grace > func.now(), Step.job_id, Job.status)
        .join(Job, Job.id == Step.job_id)
        .where(Step.id == step_id)
        .with_for_update(of=(Step, Job))  # step, then job: the order every lock is taken in
    ).one_or_none()
    if row is None:
        return None
    status, attempts, kind, iteration, last_error, lease_live, job_id, job_status = row
    if status in (StepStatus.DONE, StepStatus.FAILED):
        return None  # a duplicate or redelivered message: the work is already settled
    if status == StepStatus.RUNNING and lease_live:
        return None  # another worker holds the step and is alive
    if job_status.is_terminal:
        return None
    if status == StepStatus.RUNNING:
        last_error = (f"attempt {attempts} of the {kind} step never finished: "
                      "its worker died or stopped renewing its lease")
        session.execute(update(Step).where(Step.id == step_id).values(last_error=last_error))
        attempt_log.ended(session, step_id, attempts, attempt_log.LAPSED)
    if attempts >= settings.max_attempts:
        session.execute(update(Step).where(Step.id == step_id)
                        .values(status=StepStatus.FAILED, send_due_at=None, updated_at=func.now()))
        job = session.get(Job, job_id)  # locked above
        finish_job_with_error(session, job, _give_up_message(kind, iteration, attempts, last_error))
        return None
    claims = _take(session, CLAIM_ONE, step_id=step_id, seq=message_seq)
    return claims[0] if claims else None


def claim_batch_mates(kind: StepKind, limit: int, exclude=()) -> list[StepClaim]:
    """Claim up to `limit` untried steps of `kind` from its queue's window, in message
    order, skipping any row another transaction holds: never waits on a lock."""
    if limit <= 0:
        return []
    with session_scope() as session:
        return _take(session, CLAIM_BATCH_MATES, kind=kind.value, limit=limit, exclude=sorted(exclude), seq=None)


def _take(session, statement, **params) -> list[StepClaim]:
    rows = session.execute(statement, {"lease_s": get_settings().step_lease_s, "worker": attempt_log.worker(),
                                       **params}).all()
    return [StepClaim(r.id, r.job_id, r.iteration, StepKind(r.kind), r.attempts) for r in rows]


def _give_up_message(kind, iteration: int, attempts: int, last_error: str | None) -> str:
    return (
        f"{kind} step (iteration {iteration}) failed after {attempts} "
        f"attempt(s); last error: {last_error or 'unknown'}"
    )


def fenced(claim: StepClaim):
    """WHERE clause matching the step only while this execution still owns it."""
    return (
        (Step.id == claim.step_id)
        & (Step.attempts == claim.attempt)
        & (Step.status == StepStatus.RUNNING)
    )
