"""What a step needs to know about its job, read in one short transaction."""

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from core.settings import get_settings
from models import AudioAsset, Iteration, Job, Step
from models.db import session_scope
from workers.perception.tools.base import PlannedCall, calls_from_json


@dataclass(frozen=True)
class JobContext:
    job_id: UUID
    question: str
    choices: list[str]
    max_iters: int
    audio_path: str
    audio_sha256: str
    pipeline: str = "agr"
    catalogue_version: str | None = None  # its tool catalogue; None: submitted before one was stored


def load_job(job_id: UUID) -> JobContext:
    with session_scope() as session:
        job, audio = session.execute(
            select(Job, AudioAsset).join(AudioAsset, AudioAsset.id == Job.audio_id).where(Job.id == job_id)
        ).one()
        max_iters = job.options.get("max_iters", get_settings().max_iters)
        pipeline = job.options.get("pipeline", "agr")
        return JobContext(job.id, job.question, list(job.choices), int(max_iters), audio.path, audio.sha256,
                          pipeline, job.catalogue_version)


def load_step_calls(step_id: int) -> list[PlannedCall] | None:
    """The calls stored on a perception step when it was made (None: made before they were)."""
    with session_scope() as session:
        rows = session.scalar(select(Step.calls).where(Step.id == step_id))
    return None if rows is None else calls_from_json(rows)


def load_iteration(job_id: UUID, index: int) -> Iteration:
    with session_scope() as session:
        return session.execute(
            select(Iteration).where(Iteration.job_id == job_id, Iteration.index == index)
        ).scalar_one()
