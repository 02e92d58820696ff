"""Read-only views of a batch for people: live status counts and the scored results."""

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, select

from models import Batch, BatchStatus, Iteration, Job, JobStatus, Step, StepStatus
from models.db import session_scope


class UnknownBatch(LookupError):
    pass


@dataclass(frozen=True)
class Progress:
    total: int
    counts: dict[JobStatus, int]
    batch_done: bool
    steps_done: int = 0  # jobs take several steps each: this moves while `finished` waits
    running: dict[str, int] | None = None  # step kind -> steps running now

    @property
    def activity(self) -> str:
        """One line for people: job counts, steps done, and what is running now."""
        counts = " ".join(f"{s}={n}" for s, n in sorted(self.counts.items()))
        now = ", ".join(f"{kind}×{n}" for kind, n in sorted((self.running or {}).items()))
        return f"{counts} · {self.steps_done} steps done" + (f" · running: {now}" if now else "")

    @property
    def finished(self) -> int:
        return sum(n for status, n in self.counts.items() if status.is_terminal)


def batch_progress(batch_id: UUID) -> Progress:
    with session_scope() as session:
        rows = session.execute(
            select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status)
        ).all()
        status = session.scalar(select(Batch.status).where(Batch.id == batch_id))
        steps = session.execute(
            select(Step.kind, Step.status, func.count()).join(Job, Job.id == Step.job_id)
            .where(Job.batch_id == batch_id, Step.status.in_([StepStatus.DONE, StepStatus.RUNNING]))
            .group_by(Step.kind, Step.status)
        ).all()
    if status is None:
        raise UnknownBatch(f"no batch {batch_id} in this database")
    counts = {JobStatus(s): n for s, n in rows}
    done = sum(n for _, s, n in steps if s == StepStatus.DONE)
    running = {str(kind): n for kind, s, n in steps if s == StepStatus.RUNNING}
    return Progress(sum(counts.values()), counts, status == BatchStatus.COMPLETED, done, running)


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
    with session_scope() as session:  # the columns shown, not whole jobs
        rows = session.execute(
            select(Job.custom_id, Job.status, Job.answer, Job.reference_answer, Job.normalisation,
                   refinement_rounds, Job.error).where(Job.batch_id == batch_id).order_by(Job.custom_id)
        ).all()
    return [JobResult(*row) for row in rows]


def accuracy(results: list[JobResult]) -> float | None:
    scored = [r for r in results if r.reference is not None]
    return sum(r.correct for r in scored) / len(scored) if scored else None
