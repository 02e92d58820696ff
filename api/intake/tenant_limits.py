"""A tenant's standing limits: unfinished items and stored bytes, checked atomically.

A check counts and a later insert adds; two concurrent submits could both pass the count.
So each check runs after `lock_tenant`, which holds the tenant's row until the submitting
transaction ends: one tenant's submits and uploads take turns, other tenants' do not wait.
"""

from fastapi import HTTPException
from sqlalchemy import func, select

from api.intake.audio_ingest import StagedAudio
from models import AudioAsset, AudioGrant, Batch, Job, Tenant
from models.status import TERMINAL_JOB_STATUSES


def check_queue_room(session, tenant: Tenant, adding: int) -> None:
    unfinished = session.scalar(
        select(func.count()).select_from(Job).join(Batch, Batch.id == Job.batch_id)
        .where(Batch.tenant_id == tenant.id, Job.status.not_in(TERMINAL_JOB_STATUSES))
    )
    if unfinished + adding > tenant.max_queued_items:
        raise HTTPException(429, f"{unfinished} unfinished item(s) already queued; adding {adding} would pass "
                                 f"this tenant's limit of {tenant.max_queued_items}")


def check_storage_room(session, tenant: Tenant, staged: list[StagedAudio]) -> None:
    """Each tenant is charged for the bytes of every object it may read, whether or not
    another tenant stored the same bytes (so the charge says nothing about others)."""
    granted = (select(AudioAsset.sha256, AudioAsset.bytes).join(AudioGrant, AudioGrant.audio_id == AudioAsset.id)
               .where(AudioGrant.tenant_id == tenant.id))
    used = session.scalar(select(func.coalesce(func.sum(granted.subquery().c.bytes), 0)))
    adding_by_digest = {s.sha256: s.bytes for s in staged}
    held = set()
    digests = list(adding_by_digest)
    for start in range(0, len(digests), 10_000):  # one statement per 10,000, not one row per held object
        held.update(session.scalars(select(AudioAsset.sha256).join(AudioGrant, AudioGrant.audio_id == AudioAsset.id)
                                    .where(AudioGrant.tenant_id == tenant.id,
                                           AudioAsset.sha256.in_(digests[start : start + 10_000]))))
    adding = sum(b for digest, b in adding_by_digest.items() if digest not in held)
    if used + adding > tenant.max_stored_bytes:
        raise HTTPException(413, f"storing {adding} more byte(s) of audio would pass this tenant's quota of "
                                 f"{tenant.max_stored_bytes} bytes ({used} in use); delete batches or uploads first")
