"""What a step needs to know about its job, read in one short transaction."""

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from core.settings import get_settings
from models import AudioAsset, Batch, Iteration, Job, Step
from models.db import session_scope
from workers.perception.tools.base import PlannedCall, calls_from_json


@dataclass(frozen=True)
class JobContext:
    job_id: UUID
    question: str
    choices: list[str]
    max_iters: int
    audio_name: str  # as its submitter named it, for messages
    audio_sha256: str  # the stored object's name: what perception reads
    pipeline: str = "agr"
    catalogue_version: str | None = None  # its tool catalogue; None: submitted before one was stored
    tenant_id: UUID | None = None  # whose job (None: the local CLI's): scopes its perception cache


def load_job(job_id: UUID) -> JobContext:
    with session_scope() as session:
        return _job(session, job_id)


def _job(session, job_id: UUID) -> JobContext:
    job, audio, tenant_id = session.execute(
        select(Job, AudioAsset, Batch.tenant_id).join(AudioAsset, AudioAsset.id == Job.audio_id)
        .join(Batch, Batch.id == Job.batch_id).where(Job.id == job_id)
    ).one()
    max_iters = job.options.get("max_iters", get_settings().max_iters)
    return JobContext(job.id, job.question, list(job.choices), int(max_iters),
                      job.audio_name or f"audio {audio.sha256[:12]}", audio.sha256,
                      job.options.get("pipeline", "agr"), job.catalogue_version, tenant_id)


def load_job_and_iteration(job_id: UUID, index: int) -> tuple[JobContext, Iteration]:
    """A reasoning step's context: its job and the iteration it reads, in one transaction."""
    with session_scope() as session:
        return _job(session, job_id), _iteration(session, job_id, index)


def load_round(job_id: UUID, step_id: int, iteration: int) -> tuple[JobContext, list[PlannedCall] | None,
                                                                     Iteration | None]:
    """A perception round's context, in one transaction: its job, the calls stored on its
    step (None: made before they were) and the iteration before it (None for the first)."""
    with session_scope() as session:
        rows = session.scalar(select(Step.calls).where(Step.id == step_id))
        before = None if iteration == 0 else _iteration(session, job_id, iteration - 1)
        return _job(session, job_id), None if rows is None else calls_from_json(rows), before


def load_iteration(job_id: UUID, index: int) -> Iteration:
    with session_scope() as session:
        return _iteration(session, job_id, index)


def _iteration(session, job_id: UUID, index: int) -> Iteration:
    return session.execute(
        select(Iteration).where(Iteration.job_id == job_id, Iteration.index == index)
    ).scalar_one()
