"""Bringing audio into the service's store: each file is read once, copied to a staging
file while it is hashed, and named by the sha256 of those bytes (storage/audio_store.py).

A tenant's file is opened beneath its audio root without following links
(storage/open_beneath.py) and read at submit only; from then on the service reads the
stored copy. `put_staged` puts the objects in the store before any transaction (a put is
content-addressed and idempotent: S3's HEAD and PUT hold no lock and no pooled
connection); `store_staged` then grants the tenant its assets inside the submitting
transaction, holding each asset's row, and cancels any pending deletion of those bytes.
A deletion already done since the put (workers/runtime/object_deletions.py) means the bytes are
gone: the submission fails with RetryLater (503; the intake retries), so no job names a
deleted object. An object put for a submission that is then refused is collected as an
orphan.
"""

import hashlib
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from uuid import UUID

import soundfile as sf
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from core.settings import get_settings
from core.transient_errors import RetryLater
from models import AudioAsset, AudioDeletion, AudioGrant
from storage.factory import audio_store
from storage.open_beneath import open_beneath

BLOCK = 1 << 20


@dataclass(frozen=True, eq=False)
class StagedAudio:
    """One file's bytes on their way into the store (or already there: an upload)."""

    name: str  # how its submitter named it: the only name jobs show
    sha256: str
    bytes: int
    header: dict = field(default_factory=dict)  # format, duration_s, sample_rate, channels (None: unreadable)
    staged: Path | None = None  # the copy to put; None when the object is stored already
    upload: bool = False  # an upload's object, named by the submission (not put by it)

    def discard(self) -> None:
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)


def stage_beneath(root: Path, relative: str) -> StagedAudio:
    """A tenant's file under its root (ValueError with the reason when it cannot be read)."""
    fd = open_beneath(root, relative)
    with os.fdopen(fd, "rb") as source:
        return _stage(source, relative)


def stage_path(path: Path) -> StagedAudio:
    """A file named by the operator on this machine (the local CLI, benchmarks)."""
    try:
        with path.open("rb") as source:
            return _stage(source, str(path))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None


def stage_stream(source, name: str) -> StagedAudio:
    """Audio read from a file-like object (bytes sent inline, a fetched URL)."""
    return _stage(source, name)


def staged_file(path: Path, name: str, sha256: str, size: int) -> StagedAudio:
    """A file already hashed while it was received (an upload streamed to staging)."""
    return StagedAudio(name, sha256, size, header_facts(path), path)


def stored_upload(asset: AudioAsset, filename: str) -> StagedAudio:
    return StagedAudio(filename, asset.sha256, asset.bytes, {}, None, upload=True)


def _stage(source, name: str) -> StagedAudio:
    limit = get_settings().max_audio_bytes
    digest, size = hashlib.sha256(), 0
    handle, tmp = tempfile.mkstemp(dir=audio_store().staging_dir(), prefix=".staging-")
    try:
        with os.fdopen(handle, "wb") as sink:
            while block := source.read(BLOCK):
                size += len(block)
                if size > limit:
                    raise ValueError(f"{name}: over the limit of {limit} bytes (AGR_MAX_AUDIO_BYTES)")
                digest.update(block)
                sink.write(block)
        # An empty file is stored too: its job fails with the reason, the batch goes on.
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return StagedAudio(name, digest.hexdigest(), size, header_facts(Path(tmp)), Path(tmp))


def header_facts(path: Path) -> dict:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError):
        return {}  # unreadable header: perception fails that job with the reason
    return {"format": info.format, "duration_s": info.duration, "sample_rate": info.samplerate,
            "channels": info.channels}


ROWS_PER_STATEMENT = 5000  # 7 parameters a row; Postgres takes at most 65,535 per statement


def put_staged(staged: list[StagedAudio]) -> dict[StagedAudio, StagedAudio]:
    """Each staged file put into the store (its staged copy consumed), before any
    transaction; returns each item's stored form (staged None)."""
    _put_all([(item.sha256, item.staged) for item in staged if item.staged is not None])
    return {item: replace(item, staged=None) if item.staged is not None else item for item in staged}


def _put_all(items: list[tuple[str, Path]]) -> None:
    """The items put AGR_STORE_PUTS_PER_REQUEST at a time: an S3 put is two round trips
    (HEAD, PUT), so 5,000 files one after another at 200 ms each took half an hour. The
    lanes are this call's own: one tenant's large upload never queues another's put. On a
    failure the puts not begun are dropped, those running finish, and the error is raised."""
    store, lanes = audio_store(), min(len(items), get_settings().store_puts_per_request)
    if lanes <= 1:
        for sha256, path in items:
            store.put(sha256, path)
        return
    with ThreadPoolExecutor(lanes, thread_name_prefix="store-put") as pool:
        puts = [pool.submit(store.put, sha256, path) for sha256, path in items]
        try:
            for put in as_completed(puts):
                put.result()
        except BaseException:
            for put in puts:
                put.cancel()
            raise


def put_items(items: list) -> list:
    """Items (api/intake/batch_input.Item) with their staged audio put into the store, before any
    transaction; on a failure the staged copies not yet put are discarded."""
    staged = list({item.audio: None for item in items if isinstance(item.audio, StagedAudio)})
    try:
        stored = put_staged(staged)
    except BaseException:
        for audio in staged:
            audio.discard()
        raise
    return [replace(item, audio=stored.get(item.audio, item.audio)) if isinstance(item.audio, StagedAudio)
            else item for item in items]


def store_staged(session, tenant_id: UUID | None, staged: list[StagedAudio]) -> dict[str, int]:
    """Every file granted to the tenant (put first if the caller did not: put_staged);
    returns {sha256: asset id}. The asset rows stay locked until the caller's transaction
    ends (see the module's note). RetryLater when bytes put earlier were deleted since."""
    by_digest = {s.sha256: s for s in staged}
    ids = _lock_assets(session, sorted(by_digest.values(), key=lambda s: s.sha256))
    store = audio_store()
    for item in by_digest.values():
        if item.staged is not None:  # a caller that staged inside its own transaction; put_items is better
            store.put(item.sha256, item.staged)
    _cancel_deletions(session, sorted(by_digest))
    grants = [{"tenant_id": tenant_id, "audio_id": i} for i in ids.values()]
    for start in range(0, len(grants), ROWS_PER_STATEMENT):
        session.execute(insert(AudioGrant).values(grants[start : start + ROWS_PER_STATEMENT])
                        .on_conflict_do_nothing())
    return ids


def _cancel_deletions(session, digests: list[str]) -> None:
    """Pending deletions of these bytes are cancelled (this transaction holds their asset
    rows now); one done since the bytes were put means they are gone."""
    gone = [digest for digest, done_at in session.execute(
        delete(AudioDeletion).where(AudioDeletion.sha256.in_(digests))
        .returning(AudioDeletion.sha256, AudioDeletion.done_at)) if done_at is not None]
    if gone:
        raise RetryLater(f"{len(gone)} stored audio object(s) were deleted by retention while this submission "
                         f"was stored (e.g. sha256 {gone[0]}): send it again")


def _lock_assets(session, staged: list[StagedAudio]) -> dict[str, int]:
    """Each digest's asset row, made if new, locked either way (in digest order, so two
    submits sharing objects cannot deadlock)."""
    ids = {}
    for start in range(0, len(staged), ROWS_PER_STATEMENT):
        rows = [_row(s) for s in staged[start : start + ROWS_PER_STATEMENT]]
        upsert = insert(AudioAsset).values(rows)
        # DO UPDATE, not DO NOTHING: it locks an existing row as well, and returns its id.
        found = session.execute(upsert.on_conflict_do_update(index_elements=["sha256"],
                                                             set_={"sha256": upsert.excluded.sha256})
                                .returning(AudioAsset.sha256, AudioAsset.id))
        ids.update(found.all())
    return ids


def _row(item: StagedAudio) -> dict:
    header = {"format": None, "duration_s": None, "sample_rate": None, "channels": None} | item.header
    return {"sha256": item.sha256, "bytes": item.bytes, **header}


def granted(session, tenant_id: UUID | None, audio_id: int) -> bool:
    """Whether the tenant may read the object."""
    return session.scalar(select(AudioGrant.id).where(AudioGrant.tenant_id.is_not_distinct_from(tenant_id),
                                                      AudioGrant.audio_id == audio_id)) is not None
