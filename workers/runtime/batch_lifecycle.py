"""Stopping a batch early: cancel (asked by its owner) and expiry (its window passed).

Both keep every finished result. Jobs not yet ended are marked cancelled or expired at
once, so no new step of theirs is claimed (a claim skips ended jobs); a step already
running finishes its work, but its result is dropped at commit (workers/runtime/step_runner.py).
A cancelled batch reads `cancelling` until no step of it is still running.

Ending a batch takes its locks in the order every worker takes them (lock_for_ending): a
worker's commit locks its job, then the batch (to close it or settle its cancel), so
locking the batch first and its jobs after deadlocked against the reasoning worker's
commits (seen as a 503 on cancel with a thread pool committing tens of jobs at once).
"""

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from models import Batch, BatchStatus, Job, JobStatus, Step, StepStatus
from models.status import TERMINAL_JOB_STATUSES

OPEN_BATCH_STATUSES = (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS)


def cancel_batch(session: Session, batch: Batch) -> None:
    """Cancel the batch's unfinished jobs; idempotent, and a no-op on an ended batch."""
    if batch.status not in OPEN_BATCH_STATUSES:
        return
    _end_unfinished_jobs(session, batch, JobStatus.CANCELLED, "cancelled before it finished")
    batch.status = BatchStatus.CANCELLING
    batch.cancelled_at = func.now()
    session.flush()
    settle_cancelling(session, batch)


def settle_cancelling(session: Session, batch: Batch) -> None:
    """cancelling -> cancelled once no step of the batch is running any more."""
    if batch.status != BatchStatus.CANCELLING:
        return
    # A lapsed lease counts as stopped: its worker died and nobody will retry an ended job.
    running = session.scalar(select(exists().where(
        Step.job_id == Job.id, Job.batch_id == batch.id, Step.status == StepStatus.RUNNING,
        Step.lease_expires_at > func.now())))
    if not running:
        batch.status = BatchStatus.CANCELLED
        batch.ended_at = func.now()


def expire_if_due(session: Session, batch: Batch) -> bool:
    """Expire an open batch whose window has passed; True when it did."""
    if batch.status not in OPEN_BATCH_STATUSES or batch.expires_at is None:
        return False
    due = session.scalar(select(func.now() >= batch.expires_at))
    if not due:
        return False
    _end_unfinished_jobs(session, batch, JobStatus.EXPIRED, "the batch expired before this job finished")
    batch.status = BatchStatus.EXPIRED
    batch.ended_at = func.now()
    return True


def lock_for_ending(session: Session, batch: Batch) -> None:
    """Lock the batch's unfinished jobs (in id order), then the batch itself, and read its
    status afresh: what cancel and expiry need before they change anything."""
    session.execute(
        select(Job.id)
        .where(Job.batch_id == batch.id, Job.status.not_in(TERMINAL_JOB_STATUSES))
        .order_by(Job.id)
        .with_for_update()
    )
    session.refresh(batch, with_for_update=True)


def sweep_batches(session: Session) -> int:
    """The sweeper's share: expire due batches, settle cancelling ones. Returns how many changed."""
    candidates = session.scalars(
        select(Batch).where(
            ((Batch.status.in_(OPEN_BATCH_STATUSES)) & (Batch.expires_at <= func.now()))
            | (Batch.status == BatchStatus.CANCELLING)
        )
    ).all()
    changed = 0
    for batch in candidates:
        lock_for_ending(session, batch)
        before = batch.status
        if not expire_if_due(session, batch):
            settle_cancelling(session, batch)
        changed += batch.status != before
    return changed


def _end_unfinished_jobs(session: Session, batch: Batch, status: JobStatus, reason: str) -> None:
    session.execute(
        update(Job)
        .where(Job.batch_id == batch.id, Job.status.not_in(TERMINAL_JOB_STATUSES))
        .values(status=status, error=reason, finished_at=func.now())
    )
