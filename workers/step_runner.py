"""Running one step: claim, work, commit its output and successor, then enqueue.

Order matters. The successor step row is written in the same transaction as this step's
output, and only after that commit is its message sent: a crash anywhere leaves either
nothing done (the step is re-run) or a persisted successor whose message the sweeper
will (re)send. Never a message pointing at state that does not exist.
"""

import logging

from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from core.settings import get_settings
from models import Batch, Job, Step, StepKind, StepStatus
from models.db import session_scope
from workers.batch_lifecycle import settle_cancelling
from workers.dispatch import send_step
from workers.job_state import finish_job_with_error
from workers.step_claim import StepClaim, claim_step, fenced, lease_heartbeat
from workers.perception.tools.base import calls_as_json
from workers.steps import NextStep, handler_for

log = logging.getLogger(__name__)


def run_step(step_id: int) -> None:
    claim = claim_step(step_id)
    if claim is None:
        return
    try:
        with lease_heartbeat(claim):
            result = handler_for(claim.kind).execute(claim)
    except Exception as exc:  # every failure is recorded; the attempt counter bounds retries
        fail_attempt(claim, exc)
        return
    settle(claim, result)


def settle(claim: StepClaim, result) -> None:
    """Commit a step's result with its successor, then send the successor's message."""
    try:
        successor = _commit(claim, handler_for(claim.kind), result)
    except Exception as exc:
        fail_attempt(claim, exc)
        return
    if successor is not None:
        try:
            send_step(*successor)
        except KombuOperationalError as exc:
            # The successor is persisted; the broker is down past the send's retries. The
            # sweeper sends it later (at once if the broker comes back empty). Raising here
            # would leave the other steps of a GPU batch unsettled.
            log.warning("step %s committed; its successor's message was not sent: %s", claim.step_id, exc)


def _commit(claim: StepClaim, handler, result) -> tuple[int, StepKind] | None:
    with session_scope() as session:
        owned = session.execute(
            update(Step)
            .where(fenced(claim))
            .values(status=StepStatus.DONE, finished_at=func.now(), updated_at=func.now())
        ).rowcount
        if not owned:
            # Our lease lapsed and another execution took the step over: its result wins.
            session.rollback()
            log.warning("step %s attempt %s lost its lease; result dropped", claim.step_id, claim.attempt)
            return None
        if _job_ended(session, claim.job_id):
            # Cancelled or expired while this step worked: the step is settled, but the job
            # keeps its status and gets no successor.
            _settle_cancelled_batch(session, claim.job_id)
            return None
        next_step = handler.commit(session, claim, result)
        if next_step is None:
            return None
        return persist_step(session, claim.job_id, next_step), next_step.kind


def _job_ended(session, job_id) -> bool:
    status = session.scalar(select(Job.status).where(Job.id == job_id).with_for_update())
    return status is not None and status.is_terminal


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
        insert(Step)
        .values(job_id=job_id, iteration=next_step.iteration, kind=next_step.kind, calls=calls)
        .on_conflict_do_nothing(index_elements=["job_id", "iteration", "kind"])
        .returning(Step.id)
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
    settings = get_settings()
    message = f"{type(exc).__name__}: {exc}"[:4000]
    with session_scope() as session:
        step = session.execute(select(Step).where(fenced(claim)).with_for_update()).scalar_one_or_none()
        if step is None:
            return  # another execution owns the step now
        step.last_error = message
        step.lease_expires_at = None
        step.updated_at = func.now()
        if step.attempts >= settings.max_attempts:
            step.status = StepStatus.FAILED
            job = session.get(Job, claim.job_id, with_for_update=True)
            finish_job_with_error(
                session,
                job,
                f"{step.kind} step (iteration {step.iteration}) failed after {step.attempts} "
                f"attempt(s); last error: {message}",
            )
            return
        step.status = StepStatus.QUEUED
    delay = settings.retry_backoff_s * 2 ** (claim.attempt - 1)
    send_step(claim.step_id, claim.kind, countdown=delay)
