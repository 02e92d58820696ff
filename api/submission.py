"""Turning validated items into a batch of queued jobs.

The batch, its audio assets, jobs and first steps are committed in one transaction, and
only after that commit are the first messages sent: a crash in between leaves persisted
steps whose messages the sweeper sends, never a message without its state.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from uuid import UUID

import soundfile as sf
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from api.batch_input import Item
from models import AudioAsset, Batch, BatchStatus, Job, Step, StepKind
from models.db import session_scope
from workers import outbox
from workers.perception import catalogue
from workers.perception.audio_io import file_sha256
from workers.perception.tools.base import calls_as_json
from workers.pipelines import DEFAULT_PIPELINE, first_round_calls


@dataclass(frozen=True)
class BatchRequest:
    name: str
    items: list[Item]
    options: dict  # pipeline, max_iters
    source: str | None = None
    tenant_id: UUID | None = None
    metadata: dict = field(default_factory=dict)
    completion_window: timedelta | None = None  # None: never expires
    idempotency_key: str | None = None
    request_sha256: str | None = None


def create_batch(request: BatchRequest, session=None) -> tuple[UUID, list[int]]:
    """Persist the batch with every job and its first step; returns (batch id, step ids)."""
    if session is None:
        with session_scope() as session:
            return create_batch(request, session)
    assets = {item.audio: _asset_values(item.audio) for item in request.items}
    expires_at = None
    if request.completion_window is not None:
        expires_at = datetime.now(timezone.utc) + request.completion_window
    batch = Batch(name=request.name, options=request.options, source=request.source,
                  status=BatchStatus.IN_PROGRESS, tenant_id=request.tenant_id,
                  batch_metadata=request.metadata, expires_at=expires_at,
                  idempotency_key=request.idempotency_key, request_sha256=request.request_sha256)
    session.add(batch)
    session.flush()
    audio_ids = _upsert_assets(session, assets)
    # What every job will do is fixed now, from this process's tools and settings: the
    # tools its agents are shown and its coarse round's calls with their models.
    tools = catalogue.current()
    catalogue.store(session, tools)
    jobs = [
        Job(batch_id=batch.id, custom_id=i.custom_id, audio_id=audio_ids[assets[i.audio]["sha256"]],
            question=i.question, choices=i.choices, options=request.options | i.options,
            item_metadata=i.metadata, reference_answer=i.answer, catalogue_version=tools.version)
        for i in request.items
    ]
    session.add_all(jobs)
    session.flush()
    first_calls = _FirstCalls(tools)
    steps = [Step(job_id=j.id, iteration=0, kind=StepKind.PERCEIVE_CPU, calls=first_calls.of(j)) for j in jobs]
    session.add_all(steps)
    session.flush()
    return batch.id, [s.id for s in steps]


class _FirstCalls:
    """Each job's coarse-round calls, as stored on its first step. Only the `direct`
    pipeline's depend on the question: the others' are worked out once per batch."""

    def __init__(self, tools):
        self.tools, self._by_pipeline = tools, {}

    def of(self, job: Job) -> list[dict]:
        pipeline = job.options.get("pipeline", DEFAULT_PIPELINE)
        if pipeline == "direct" or pipeline not in self._by_pipeline:
            calls = calls_as_json(first_round_calls(pipeline, job.question, job.choices, self.tools))
            if pipeline == "direct":
                return calls
            self._by_pipeline[pipeline] = calls
        return self._by_pipeline[pipeline]


def _asset_values(path: Path) -> dict:
    values = {"sha256": file_sha256(path), "path": str(path), "bytes": path.stat().st_size,
              "format": None, "duration_s": None, "sample_rate": None, "channels": None}
    try:
        info = sf.info(str(path))
        values |= {"format": info.format, "duration_s": info.duration,
                   "sample_rate": info.samplerate, "channels": info.channels}
    except (sf.LibsndfileError, RuntimeError):
        pass  # unreadable header: perception will fail that job with the reason
    return values


ROWS_PER_STATEMENT = 5000  # 7 parameters a row; Postgres takes at most 65,535 per statement


def _upsert_assets(session, assets: dict) -> dict[str, int]:
    rows = list({v["sha256"]: v for v in assets.values()}.values())
    ids = {}
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        session.execute(insert(AudioAsset).values(chunk).on_conflict_do_nothing(index_elements=["sha256"]))
        found = session.execute(
            select(AudioAsset.sha256, AudioAsset.id).where(AudioAsset.sha256.in_([r["sha256"] for r in chunk]))
        )
        ids.update(found.all())
    return ids


def upsert_asset(session, path: Path) -> AudioAsset:
    """The asset row for a stored file (an existing one when the content was seen before)."""
    values = _asset_values(path)
    _upsert_assets(session, {path: values})
    return session.scalar(select(AudioAsset).where(AudioAsset.sha256 == values["sha256"]))


def enqueue_first_steps(step_ids: list[int]) -> None:
    # The rows were made with their messages due (the outbox): sent now, or by the
    # sweeper's relay if this process dies first.
    outbox.send_now(step_ids)


def submit(name: str, items: list[Item], options: dict, source: str | None = None) -> UUID:
    """Create the batch, then send each job's first message (after the commit)."""
    batch_id, step_ids = create_batch(BatchRequest(name, items, options, source))
    enqueue_first_steps(step_ids)
    return batch_id
