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
from workers.dispatch import send_step
from workers.perception.audio_io import file_sha256


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
    jobs = [
        Job(batch_id=batch.id, custom_id=i.custom_id, audio_id=audio_ids[assets[i.audio]["sha256"]],
            question=i.question, choices=i.choices, options=request.options | i.options,
            item_metadata=i.metadata, reference_answer=i.answer)
        for i in request.items
    ]
    session.add_all(jobs)
    session.flush()
    steps = [Step(job_id=j.id, iteration=0, kind=StepKind.PERCEIVE_CPU) for j in jobs]
    session.add_all(steps)
    session.flush()
    return batch.id, [s.id for s in steps]


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
    for step_id in step_ids:
        send_step(step_id, StepKind.PERCEIVE_CPU)


def submit(name: str, items: list[Item], options: dict, source: str | None = None) -> UUID:
    """Create the batch, then send each job's first message (after the commit)."""
    batch_id, step_ids = create_batch(BatchRequest(name, items, options, source))
    enqueue_first_steps(step_ids)
    return batch_id
