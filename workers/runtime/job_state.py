"""Ending a job, and its batch once the last job ends."""

from typing import cast

from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.orm import Session

from models import Batch, BatchStatus, Job, JobStatus
from models.status import TERMINAL_JOB_STATUSES

BATCHES = cast(Table, Batch.__table__)  # typed FromClause; a declarative model's is a Table
CLOSE_IF_DONE = (
    update(BATCHES)
    .where(BATCHES.c.id == bindparam("batch_id"),
           ~exists().where(Job.batch_id == bindparam("batch_id"), Job.status.not_in(TERMINAL_JOB_STATUSES)))
    .values(status=BatchStatus.COMPLETED, completed_at=func.now())
)


def finish_job_with_error(session: Session, job: Job, message: str) -> None:
    if job.status.is_terminal:
        return  # cancelled or expired meanwhile: that is the job's outcome
    job.status = JobStatus.ERRORED
    job.error = message
    job.finished_at = func.now()
    close_batch_if_done(session, job)


def close_batch_if_done(session: Session, job: Job) -> None:
    """Mark the batch completed when no job of it is left unfinished."""
    session.flush()  # make this job's new status visible to the query below
    close_batch_if_done_by_id(session, job.batch_id)


def close_batch_if_done_by_id(session: Session, batch_id) -> None:
    """The same, for a job whose end is written already (in this transaction).

    The batch row is locked first, by a statement of its own, so two jobs finishing at
    once cannot both see the other as unfinished and leave the batch open forever: the
    look at its jobs is a later statement, whose snapshot (read committed) includes the
    job that held the lock before.
    """
    status = session.scalar(select(BATCHES.c.status).where(BATCHES.c.id == batch_id).with_for_update())
    if status != BatchStatus.IN_PROGRESS:
        return
    session.execute(CLOSE_IF_DONE, {"batch_id": batch_id})
