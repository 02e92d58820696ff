"""Ending a job, and its batch once the last job ends."""

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from models import Batch, BatchStatus, Job, JobStatus
from models.status import TERMINAL_JOB_STATUSES


def finish_job_with_error(session: Session, job: Job, message: str) -> None:
    if job.status.is_terminal:
        return  # cancelled or expired meanwhile: that is the job's outcome
    job.status = JobStatus.ERRORED
    job.error = message
    job.finished_at = func.now()
    close_batch_if_done(session, job)


def close_batch_if_done(session: Session, job: Job) -> None:
    """Mark the batch completed when no job of it is left unfinished.

    The batch row is locked first so two jobs finishing at once cannot both see the
    other as unfinished and leave the batch open forever.
    """
    batch = session.get(Batch, job.batch_id, with_for_update=True)
    if batch.status != BatchStatus.IN_PROGRESS:
        return
    session.flush()  # make this job's new status visible to the query below
    unfinished = session.scalar(
        select(
            exists().where(Job.batch_id == batch.id, Job.status.not_in(TERMINAL_JOB_STATUSES))
        )
    )
    if not unfinished:
        batch.status = BatchStatus.COMPLETED
        batch.completed_at = func.now()
