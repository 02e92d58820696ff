"""What a step needs to know about its job, read in one short transaction."""

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select

from core.settings import get_settings
from models import AudioAsset, Iteration, Job
from models.db import session_scope


@dataclass(frozen=True)
class JobContext:
    job_id: UUID
    question: str
    choices: list[str]
    max_iters: int
    audio_path: str
    audio_sha256: str
    pipeline: str = "agr"


def load_job(job_id: UUID) -> JobContext:
    with session_scope() as session:
        job, audio = session.execute(
            select(Job, AudioAsset).join(AudioAsset, AudioAsset.id == Job.audio_id).where(Job.id == job_id)
        ).one()
        max_iters = job.options.get("max_iters", get_settings().max_iters)
        pipeline = job.options.get("pipeline", "agr")
        return JobContext(job.id, job.question, list(job.choices), int(max_iters), audio.path, audio.sha256,
                          pipeline)


def load_iteration(job_id: UUID, index: int) -> Iteration:
    with session_scope() as session:
        return session.execute(
            select(Iteration).where(Iteration.job_id == job_id, Iteration.index == index)
        ).scalar_one()
