"""Read-only views of a batch for people: live status counts and the scored results."""

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, select

from models import Batch, BatchStatus, Iteration, Job, JobStatus
from models.db import session_scope


class UnknownBatch(LookupError):
    pass


@dataclass(frozen=True)
class Progress:
    total: int
    counts: dict[JobStatus, int]
    batch_done: bool

    @property
    def finished(self) -> int:
        return sum(n for status, n in self.counts.items() if status.is_terminal)


def batch_progress(batch_id: UUID) -> Progress:
    with session_scope() as session:
        rows = session.execute(
            select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
        ).all()
        status = session.scalar(select(Batch.status).where(Batch.id == batch_id))
    if status is None:
        raise UnknownBatch(f"no batch {batch_id} in this database")
    counts = {JobStatus(s): n for s, n in rows}
    return Progress(sum(counts.values()), counts, status == BatchStatus.COMPLETED)


@dataclass(frozen=True)
class JobResult:
    custom_id: str
    status: JobStatus
    answer: str | None
    reference: str | None
    normalisation: str | None
    iterations: int
    error: str | None

    @property
    def correct(self) -> bool:
        # Exact match with the verbatim choice text: an errored or unmapped job is wrong,
        # never silently counted as its first choice.
        return self.status == JobStatus.SUCCEEDED and self.answer is not None and self.answer == self.reference


def batch_results(batch_id: UUID) -> list[JobResult]:
    refinement_rounds = (
        select(func.count()).where(Iteration.job_id == Job.id).correlate(Job).scalar_subquery()
    )
    with session_scope() as session:
        rows = session.execute(
            select(Job, refinement_rounds).where(Job.batch_id == batch_id).order_by(Job.custom_id)
        ).all()
    return [
        JobResult(j.custom_id, j.status, j.answer, j.reference_answer, j.normalisation, n, j.error)
        for j, n in rows
    ]


def accuracy(results: list[JobResult]) -> float | None:
    scored = [r for r in results if r.reference is not None]
    return sum(r.correct for r in scored) / len(scored) if scored else None
