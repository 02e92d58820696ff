"""Deleting stored audio objects after the commit that released them.

Retention and batch deletes release objects inside their transaction by recording an
AudioDeletion and removing the asset row; nothing touches the store there, so no tenant
lock is held over store I/O, and a transaction that fails to commit leaves its rows and
objects as they were. After the commit the deletions are worked off here (by the
sweeper, and by the API right after a batch delete answers), one object per short
transaction holding only that deletion's row:

- bytes stored again since (an asset row has the digest) keep their object: the
  deletion is dropped;
- otherwise the object goes and the deletion is marked done; a store that fails leaves
  it pending for the next pass. A submit that put the same bytes before taking its locks
  sees the done mark and tries again (api/intake/audio_ingest.py), so no job names a deleted object.

Objects no row references (a submission refused after its files were put, a process
killed between put and commit) are found by listing the store: past AGR_ORPHAN_GRACE_S
with no asset row, they get a deletion too.
"""

import logging
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from core.settings import get_settings
from models import AudioAsset, AudioDeletion
from models.db import session_scope
from storage.factory import audio_store

log = logging.getLogger(__name__)

DONE_KEPT_S = 86400.0  # a done mark outlives any submit that put the bytes before it
CHECKED_AT_ONCE = 1000


def request_deletions(session, digests: list[str]) -> None:
    """Record that these objects are to go, once the caller's transaction commits."""
    if digests:
        rows = [{"sha256": d} for d in sorted(set(digests))]
        upsert = insert(AudioDeletion).values(rows)
        session.execute(upsert.on_conflict_do_update(index_elements=["sha256"],
                                                     set_={"requested_at": func.now(), "done_at": None}))


def work_off(limit: int = 1000) -> int:
    """Delete up to `limit` pending objects; returns how many went. A store error leaves
    that deletion pending (logged) and goes on with the others."""
    store, deleted = audio_store(), 0
    failed: set[str] = set()  # digests the store failed to delete: left for a later pass
    for _ in range(limit):
        with session_scope() as session:
            pending = session.scalar(select(AudioDeletion).where(AudioDeletion.done_at.is_(None),
                                                                 AudioDeletion.sha256.not_in(failed))
                                     .order_by(AudioDeletion.requested_at).limit(1)
                                     .with_for_update(skip_locked=True))
            if pending is None:
                break
            if session.scalar(select(AudioAsset.id).where(AudioAsset.sha256 == pending.sha256)) is not None:
                session.delete(pending)  # stored again since: the object stays
                continue
            try:
                store.delete(pending.sha256)
            except Exception as exc:
                log.warning("deleting stored object %s failed (%s): tried again later", pending.sha256, exc)
                failed.add(pending.sha256)
                continue
            pending.done_at = func.now()
            deleted += 1
    with session_scope() as session:
        session.execute(delete(AudioDeletion).where(
            AudioDeletion.done_at < func.now() - timedelta(seconds=DONE_KEPT_S)))
    if deleted or failed:
        log.info("object deletions: %d deleted, %d left for a later pass", deleted, len(failed))
    return deleted


def collect_orphans() -> int:
    """Record a deletion for every stored object older than AGR_ORPHAN_GRACE_S that no
    asset row names; returns how many."""
    before = datetime.now(timezone.utc) - timedelta(seconds=get_settings().orphan_grace_s)
    candidates, found = [], 0
    for digest, modified in audio_store().digests():
        if modified < before:
            candidates.append(digest)
        if len(candidates) >= CHECKED_AT_ONCE:
            found += _orphans_recorded(candidates)
            candidates = []
    found += _orphans_recorded(candidates)
    if found:
        log.info("object deletions: %d stored object(s) no row names, to be deleted", found)
    return found


def _orphans_recorded(digests: list[str]) -> int:
    if not digests:
        return 0
    with session_scope() as session:
        named = set(session.scalars(select(AudioAsset.sha256).where(AudioAsset.sha256.in_(digests))))
        orphans = [d for d in digests if d not in named]
        request_deletions(session, orphans)
    return len(orphans)
