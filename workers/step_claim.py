"""Claiming a step: the lease that makes at-least-once delivery safe.

A worker may run a step only while it holds the step's lease. The claim bumps the step's
attempt number, which doubles as a fencing token: every later write of that execution
names the attempt it belongs to, so a stale execution (one whose lease lapsed and whose
step was taken over) can never overwrite the newer one.
"""

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from sqlalchemy import func, select

from core.settings import get_settings
from models import Job, JobStatus, Step, StepKind, StepStatus
from models.db import session_scope
from workers import attempt_log
from workers.job_state import finish_job_with_error


@dataclass(frozen=True)
class StepClaim:
    step_id: int
    job_id: UUID
    iteration: int
    kind: StepKind
    attempt: int  # fencing token: this execution's attempt number


def claim_step(step_id: int, message_seq: int | None = None) -> StepClaim | None:
    """Take the step's lease, or return None when there is nothing (left) to do.
    `message_seq`: the number of the message that woke this claim (workers/outbox.py), None
    for a step taken from Postgres directly (a GPU batch-mate)."""
    settings = get_settings()
    # A running step's lease counts as live until a renewal interval past its expiry: its
    # worker may be renewing it right now, after waiting out a database outage.
    grace = timedelta(seconds=settings.lease_renew_interval_s)
    with session_scope() as session:
        row = session.execute(
            select(Step, Step.lease_expires_at + grace > func.now())
            .where(Step.id == step_id)
            .with_for_update()
        ).one_or_none()
        if row is None:
            return None
        step, lease_live = row
        if step.status in (StepStatus.DONE, StepStatus.FAILED):
            return None  # a duplicate or redelivered message: the work is already settled
        if step.status == StepStatus.RUNNING and lease_live:
            return None  # another worker holds the step and is alive
        job = session.get(Job, step.job_id, with_for_update=True)
        if job.status.is_terminal:
            return None
        if step.status == StepStatus.RUNNING:
            step.last_error = (
                f"attempt {step.attempts} of the {step.kind} step never finished: "
                "its worker died or stopped renewing its lease"
            )
            attempt_log.ended(session, step.id, step.attempts, attempt_log.LAPSED)
        if step.attempts >= settings.max_attempts:
            step.status = StepStatus.FAILED
            step.send_due_at = None
            finish_job_with_error(session, job, _give_up_message(step))
            return None
        step.status = StepStatus.RUNNING
        step.attempts += 1
        attempt_log.started(session, step.id, step.attempts)
        step.lease_expires_at = func.now() + timedelta(seconds=settings.step_lease_s)
        step.updated_at = step.claimed_at = func.now()
        # How far its queue's consumers have got, for the sweeper (workers/sweeper.py): only
        # a claim woken by the step's current message says where that message was.
        step.claimed_seq = message_seq if message_seq is not None and message_seq == step.sent_seq else None
        step.send_due_at = None  # a claimed step needs no message (one still due is moot)
        job.attempts += 1
        if job.status == JobStatus.QUEUED:
            job.status = JobStatus.IN_PROGRESS
            job.started_at = func.now()
        return StepClaim(step.id, step.job_id, step.iteration, step.kind, step.attempts)


def _give_up_message(step: Step) -> str:
    return (
        f"{step.kind} step (iteration {step.iteration}) failed after {step.attempts} "
        f"attempt(s); last error: {step.last_error or 'unknown'}"
    )


def fenced(claim: StepClaim):
    """WHERE clause matching the step only while this execution still owns it."""
    return (
        (Step.id == claim.step_id)
        & (Step.attempts == claim.attempt)
        & (Step.status == StepStatus.RUNNING)
    )
