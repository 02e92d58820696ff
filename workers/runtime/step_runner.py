"""Running one step: claim, work, commit its output and successor, then enqueue.

Order matters. The successor step row is written in the same transaction as this step's
output, its message due in the outbox (workers/runtime/outbox.py), and only after that commit is
its queue's window topped up: a crash anywhere leaves either nothing done (the step is
re-run) or a persisted successor, due, that the next top-up sends. Never a message
pointing at state that does not exist. A claim tops up its own queue's window too: its
message left it. Both ask whether the window has room in their own transaction, so the
top-up's own transaction is paid only when it will send (once per half a window).
"""

import logging
from typing import cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.dialects.postgresql import insert

from core.database_outage import through_outage
from core.settings import get_settings
from models import Batch, Job, JobStatus, Step, StepKind, StepStatus
from models.db import session_scope
from models.status import TERMINAL_JOB_STATUSES
from workers.method.perception.tools.base import calls_as_json
from workers.method.steps import NextStep, StepHandler, handler_for
from workers.runtime import attempt_log, outbox
from workers.runtime.batch_lifecycle import settle_cancelling
from workers.runtime.job_state import close_batch_if_done_by_id, finish_job_with_error
from workers.runtime.lease import LeaseLost, LeaseRenewal, lease_heartbeat
from workers.runtime.routing import queue_of
from workers.runtime.step_claim import StepClaim, claim_in, fenced

log = logging.getLogger(__name__)

STEPS = cast(Table, Step.__table__)  # typed FromClause; a declarative model's is a Table

_ENDED = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_JOB_STATUSES))


def run_step(step_id: int, message_seq: int | None = None) -> None:
    claim = claim_with_patience(step_id, message_seq)
    if claim is None:
        return
    handler = handler_for(claim.kind)
    with lease_heartbeat(claim) as lease:
        try:
            # Through a database outage the work is started again once it is back: what it
            # had paid for (LLM replies, tool results) was stored and is reused.
            result = through_outage(lambda: handler.execute(claim), f"running step {claim.step_id}",
                                    give_up=lambda: lease.raise_if_lost(claim))
        except LeaseLost as exc:
            log.warning("%s; its work stopped", exc)
            return
        except Exception as exc:  # every failure is recorded; the attempt counter bounds retries
            fail_attempt(claim, exc)
            return
        settle(claim, result, lease)


def claim_with_patience(step_id: int, message_seq: int | None = None) -> StepClaim | None:
    """The claim, waiting out a database outage with the message still held (unacked),
    so it is neither lost nor sent twice. A claim made tops up its queue's window: the
    next due step's message goes out while this one works."""
    claim, room = through_outage(lambda: _claim(step_id, message_seq), f"claiming step {step_id}")
    if room:
        assert claim is not None  # _claim finds room only with a claim made
        outbox.top_up([queue_of(claim.kind)])
    return claim


def _claim(step_id: int, message_seq: int | None) -> tuple[StepClaim | None, bool]:
    """The claim, and whether its queue's window has room for a top-up now."""
    with session_scope() as session:
        claim = claim_in(session, step_id, message_seq)
        return claim, claim is not None and outbox.has_room(session, queue_of(claim.kind))


def settle(claim: StepClaim, result, lease: LeaseRenewal) -> None:
    """Commit a step's result with its successor, then top up the successor's queue. The
    lease is still renewed meanwhile, so a commit waiting out a database outage keeps it."""
    try:
        successor = through_outage(lambda: _commit(claim, handler_for(claim.kind), result),
                                   f"committing step {claim.step_id}", give_up=lambda: lease.raise_if_lost(claim))
    except LeaseLost as exc:
        log.warning("%s; its result is dropped", exc)
        return
    except Exception as exc:
        fail_attempt(claim, exc)
        return
    if successor is not None:
        outbox.top_up([queue_of(successor)])  # if its window is full, a later top-up sends it


# The fenced end of an execution, in one statement: the step marked done only while this
# execution owns it, then its job locked (step, then job: the one order of locks), and the
# attempt's audit row ended, saying whether the job had ended meanwhile; its status and batch
# come back. No row: the fence did not match.
FINISH = text(f"""
WITH done AS (
    UPDATE steps SET status = 'done', finished_at = now(), updated_at = now()
    WHERE id = :step_id AND attempts = :attempt AND status = 'running'
    RETURNING job_id
), job AS (
    SELECT j.status, j.batch_id FROM jobs j JOIN done ON j.id = done.job_id FOR UPDATE OF j
), ended AS (
    UPDATE step_attempts
    SET outcome = CASE WHEN (SELECT status FROM job) IN ({_ENDED}) THEN :ended_outcome ELSE 'done' END,
        ended_at = now()
    WHERE step_id = :step_id AND attempt = :attempt AND outcome IS NULL AND EXISTS (SELECT 1 FROM done)
)
SELECT status, batch_id FROM job
""")
JOB_ENDED_OUTCOME = "done; its job had ended, so nothing follows"


def _commit(claim: StepClaim, handler: StepHandler, result) -> StepKind | None:
    """Commit the result and persist the successor step; returns the successor's kind if
    its queue's window has room for a top-up now (otherwise a later top-up sends it)."""
    with session_scope() as session:
        finished = session.execute(FINISH, {"step_id": claim.step_id, "attempt": claim.attempt,
                                            "ended_outcome": JOB_ENDED_OUTCOME}).first()
        if finished is None:
            # Our lease lapsed and another execution took the step over: its result wins.
            session.rollback()
            log.warning("step %s attempt %s lost its lease; result dropped", claim.step_id, claim.attempt)
            return None
        if JobStatus(finished.status).is_terminal:
            # Cancelled or expired while this step worked: the step is settled, but the job
            # keeps its status and gets no successor.
            handler.keep_partial(session, claim, result)
            _settle_cancelled_batch(session, claim.job_id)
            return None
        next_step = handler.commit(session, claim, result)
        if next_step is None:  # the job ended with this step: its batch may have too
            close_batch_if_done_by_id(session, finished.batch_id)
            return None
        persist_step(session, claim.job_id, next_step)
        return next_step.kind if outbox.has_room(session, queue_of(next_step.kind)) else None


def _settle_cancelled_batch(session, job_id) -> None:
    batch = session.scalar(select(Batch).join(Job, Job.batch_id == Batch.id).where(Job.id == job_id)
                           .with_for_update(of=Batch))
    session.flush()  # this step's done status counts as no longer running
    settle_cancelling(session, batch)


def persist_step(session, job_id, next_step: NextStep) -> int:
    """Insert the step row once, with the calls it will make; a replay finds the existing
    row (its calls as first stored) and returns its id."""
    calls = None if next_step.calls is None else calls_as_json(next_step.calls)
    step_id = session.scalar(
        insert(STEPS)  # a Core statement: no ORM bookkeeping for one row
        .values(job_id=job_id, iteration=next_step.iteration, kind=next_step.kind, calls=calls)
        .on_conflict_do_nothing(index_elements=["job_id", "iteration", "kind"])
        .returning(STEPS.c.id)
    )
    if step_id is None:
        step_id = session.scalar(
            select(Step.id).where(
                Step.job_id == job_id,
                Step.iteration == next_step.iteration,
                Step.kind == next_step.kind,
            )
        )
    return step_id


def fail_attempt(claim: StepClaim, exc: BaseException) -> None:
    """Record the failed attempt; retry later with backoff, or error the job when spent."""
    log.error("step %s (%s) attempt %s failed", claim.step_id, claim.kind, claim.attempt, exc_info=exc)
    message = f"{type(exc).__name__}: {exc}"[:4000].replace("\x00", "\\x00")  # Postgres text takes no NUL
    through_outage(lambda: _record_failure(claim, message), f"recording step {claim.step_id}'s failure")


def _record_failure(claim: StepClaim, message: str) -> None:
    settings = get_settings()
    with session_scope() as session:
        step = session.execute(select(Step).where(fenced(claim)).with_for_update()).scalar_one_or_none()
        if step is None:
            return  # another execution owns the step now (or this record was made already)
        step.last_error = message
        attempt_log.ended(session, claim.step_id, claim.attempt, f"failed: {message}")
        step.lease_expires_at = None
        step.updated_at = func.now()
        if step.attempts >= settings.max_attempts:
            step.status = StepStatus.FAILED
            job = session.get(Job, claim.job_id, with_for_update=True)
            assert job is not None  # the step row locked above references it (a foreign key)
            finish_job_with_error(
                session,
                job,
                f"{step.kind} step (iteration {step.iteration}) failed after {step.attempts} "
                f"attempt(s); last error: {message}",
            )
            return
        step.status = StepStatus.QUEUED
        # The retry's message waits in the outbox, not in a worker's memory as a countdown;
        # the first top-up after it falls due sends it (the sweeper's, at the latest).
        step.send_due_at = outbox.due_in(settings.retry_backoff_s * 2 ** (claim.attempt - 1))
