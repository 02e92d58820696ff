"""Retention: deleting a batch with everything of its jobs, expiring uploads no job uses,
and dropping stored audio objects nobody may read any more.

An object goes when its last grant does (models/audio.py): a tenant's grant goes when
none of its jobs or uploads references the object. Retention holds the tenant's row
(models/tenant.lock_tenant), as the tenant's submits and uploads do, so it never judges a
grant unused while that tenant is making a job for it. An asset row nothing references is
deleted while it is locked, and its object's deletion recorded in the same transaction;
the object itself goes after the commit (workers/runtime/object_deletions.py), so no store I/O
runs under the tenant's lock and a failed commit deletes nothing. A submit of the same
bytes meanwhile cancels the deletion, or finds it done and tries again (api/intake/audio_ingest.py).
"""

import logging
from datetime import timedelta
from uuid import UUID

from sqlalchemy import delete, exists, func, select

from core.settings import get_settings
from models import AudioAsset, AudioGrant, Batch, Iteration, Job, LLMCall, Step, StepAttempt, ToolCall, Upload
from models.db import session_scope
from models.tenant import lock_tenant
from workers.runtime.object_deletions import request_deletions

log = logging.getLogger(__name__)


def delete_batch(session, batch: Batch) -> int:
    """Delete the (ended) batch, its jobs and all their rows; returns how many audio
    objects went with them. The caller holds the tenant's lock."""
    jobs = select(Job.id).where(Job.batch_id == batch.id).scalar_subquery()
    audio_ids = set(session.scalars(select(Job.audio_id).where(Job.batch_id == batch.id).distinct()))
    steps = select(Step.id).where(Step.job_id.in_(jobs)).scalar_subquery()
    session.execute(delete(StepAttempt).where(StepAttempt.step_id.in_(steps)))
    for model in (Step, ToolCall, LLMCall, Iteration):
        session.execute(delete(model).where(model.job_id.in_(jobs)))
    session.execute(delete(Job).where(Job.batch_id == batch.id))
    session.delete(batch)
    session.flush()
    return release_audio(session, batch.tenant_id, audio_ids)


def expire_uploads(limit: int = 1000) -> int:
    """Delete uploads older than AGR_UPLOAD_RETENTION_S that no job of their tenant uses
    (the sweeper's loop calls this), a tenant at a time under its lock; returns how many
    audio objects went with them."""
    age = timedelta(seconds=get_settings().upload_retention_s)
    expired = (Upload.created_at < func.now() - age) & ~_used_by_jobs(Upload.tenant_id, Upload.audio_id)
    with session_scope() as session:
        tenants = list(session.scalars(select(Upload.tenant_id).where(expired).distinct().limit(limit)))
    uploads = deleted = 0
    for tenant_id in tenants:
        with session_scope() as session:
            lock_tenant(session, tenant_id)
            rows = session.execute(select(Upload.id, Upload.audio_id).where(expired, Upload.tenant_id == tenant_id)
                                   .limit(limit)).all()
            session.execute(delete(Upload).where(Upload.id.in_([r.id for r in rows])))
            deleted += release_audio(session, tenant_id, {r.audio_id for r in rows})
            uploads += len(rows)
    if uploads:
        log.info("retention: %d upload(s) expired, %d audio object(s) deleted", uploads, deleted)
    return deleted


def release_audio(session, tenant_id: UUID | None, audio_ids: set[int]) -> int:
    """Drop the tenant's grants on these objects that none of its jobs or uploads uses any
    more, then the objects left with no grant; returns how many objects were deleted."""
    if not audio_ids:
        return 0
    unused = (AudioGrant.tenant_id.is_not_distinct_from(tenant_id) & AudioGrant.audio_id.in_(audio_ids)
              & ~_used_by_jobs(AudioGrant.tenant_id, AudioGrant.audio_id)
              & ~exists().where(Upload.tenant_id == AudioGrant.tenant_id, Upload.audio_id == AudioGrant.audio_id))
    released = list(session.scalars(delete(AudioGrant).where(unused).returning(AudioGrant.audio_id)))
    return _delete_ungranted(session, released)


def _used_by_jobs(tenant_id, audio_id):
    return exists().where(Job.audio_id == audio_id, Job.batch_id == Batch.id,
                          Batch.tenant_id.is_not_distinct_from(tenant_id))


def _delete_ungranted(session, audio_ids: list[int]) -> int:
    if not audio_ids:
        return 0
    unreferenced = (~exists().where(AudioGrant.audio_id == AudioAsset.id)
                    & ~exists().where(Job.audio_id == AudioAsset.id)
                    & ~exists().where(Upload.audio_id == AudioAsset.id))
    assets = session.execute(
        select(AudioAsset.id, AudioAsset.sha256).where(AudioAsset.id.in_(audio_ids), unreferenced)
        .with_for_update(skip_locked=True)  # locked: a submit is granting it right now
    ).all()
    request_deletions(session, [digest for _, digest in assets])
    session.execute(delete(AudioAsset).where(AudioAsset.id.in_([a.id for a in assets])))
    return len(assets)
