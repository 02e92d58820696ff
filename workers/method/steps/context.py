"""What a step needs to know about its job, read in one short transaction: one statement
of the columns it uses (no ORM entities), its job's and the iteration it reads together."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import and_, literal, select

from core.settings import get_settings
from models import AudioAsset, Batch, Iteration, Job, Step
from models.db import session_scope
from workers.method.perception.tools.base import PlannedCall, calls_from_json
from workers.method.pipelines import DEFAULT_PIPELINE, Pipeline
from workers.method.verdict import Verdict


@dataclass(frozen=True)
class JobContext:
    job_id: UUID
    question: str
    choices: list[str]
    max_iters: int
    audio_name: str  # as its submitter named it, for messages
    audio_sha256: str  # the stored object's name: what perception reads
    pipeline: Pipeline = Pipeline()  # its name and crosscheck's switches
    catalogue_version: str | None = None  # its tool catalogue; None: submitted before one was stored
    tenant_id: UUID | None = None  # whose job (None: the local CLI's): scopes its perception cache
    answer_samples: int = 1  # how many times the answering agent is asked (its answers voted on)


@dataclass(frozen=True)
class IterationView:
    """An iteration as a step reads it (models/iteration.py)."""

    document: str
    evidence: list[dict[str, Any]]
    verdict: Verdict | None  # None: not judged yet
    tool_plan: list[dict[str, Any]] | None


_JOB_COLUMNS = (Job.id, Job.question, Job.choices, Job.options, Job.audio_name, Job.catalogue_version,
                AudioAsset.sha256, Batch.tenant_id)
_ITERATION_COLUMNS = (Iteration.id.label("iteration_id"), Iteration.document, Iteration.evidence,
                      Iteration.verdict, Iteration.tool_plan)


def _job_query(job_id: UUID, *extra):
    return (select(*_JOB_COLUMNS, *extra).join(AudioAsset, AudioAsset.id == Job.audio_id)
            .join(Batch, Batch.id == Job.batch_id).where(Job.id == job_id))


def _with_iteration(query, job_id: UUID, index: int | None):
    on = and_(Iteration.job_id == job_id, Iteration.index == index) if index is not None else literal(False)
    return query.outerjoin(Iteration, on)


def _job(row) -> JobContext:
    max_iters = row.options.get("max_iters", get_settings().max_iters)
    pipeline = Pipeline(row.options.get("pipeline", DEFAULT_PIPELINE), row.options.get("mechanisms"))
    samples = row.options.get("answer_samples") or pipeline.default_answer_samples()
    if pipeline.switched_off("self_consistency"):
        samples = 1
    return JobContext(row.id, row.question, list(row.choices), int(max_iters),
                      row.audio_name or f"audio {row.sha256[:12]}", row.sha256,
                      pipeline, row.catalogue_version, row.tenant_id, int(samples))


def _iteration(row) -> IterationView | None:
    if row.iteration_id is None:
        return None
    return IterationView(row.document, row.evidence, Verdict.from_json(row.verdict), row.tool_plan)


def load_job(job_id: UUID) -> JobContext:
    with session_scope() as session:
        return _job(session.execute(_job_query(job_id)).one())


def load_job_and_iteration(job_id: UUID, index: int) -> tuple[JobContext, IterationView]:
    """A reasoning step's context: its job and the iteration it reads, in one statement."""
    with session_scope() as session:
        row = session.execute(_with_iteration(_job_query(job_id, *_ITERATION_COLUMNS), job_id, index)).one()
    iteration = _iteration(row)
    if iteration is None:
        raise LookupError(f"job {job_id} has no iteration {index}")
    return _job(row), iteration


def load_round(job_id: UUID, step_id: int, iteration: int) -> tuple[JobContext, list[PlannedCall] | None,
                                                                     IterationView | None]:
    """A perception round's context, in one statement: its job, the calls stored on its
    step (None: made before they were) and the iteration before it (None for the first)."""
    query = _job_query(job_id, Step.calls, *_ITERATION_COLUMNS).join(Step, and_(Step.id == step_id,
                                                                                Step.job_id == Job.id))
    with session_scope() as session:
        row = session.execute(_with_iteration(query, job_id, iteration - 1 if iteration else None)).one()
    calls = None if row.calls is None else calls_from_json(row.calls)
    before = _iteration(row)
    if iteration and before is None:
        raise LookupError(f"job {job_id} has no iteration {iteration - 1} for round {iteration} to follow")
    return _job(row), calls, before


def load_iteration(job_id: UUID, index: int) -> Iteration:
    with session_scope() as session:
        return session.execute(
            select(Iteration).where(Iteration.job_id == job_id, Iteration.index == index)
        ).scalar_one()
