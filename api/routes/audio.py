"""/v1/audio: upload audio files (streamed into the store, size-limited; one or many a request),
ask which are held already, and read an upload back."""

from datetime import datetime, timedelta, timezone
from uuid import UUID

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.deps import CallerDep, SessionDep
from api.intake.audio_ingest import put_staged, staged_file, store_staged
from api.intake.tenant_limits import check_storage_room
from api.intake.upload_stream import ReceivedFile, ReceivedParts, UploadMalformed, UploadTooLarge, receive_parts
from api.schemas import KnownAudio, UploadList, UploadOut
from core.settings import get_settings
from models import AudioAsset, Upload
from models.db import session_scope
from models.tenant import lock_tenant
from storage.factory import audio_store

router = APIRouter(prefix="/v1/audio", tags=["audio"])

_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary"}},
        }}},
    }
}


@router.post("", status_code=201, response_model=UploadOut, openapi_extra=_MULTIPART_BODY,
             responses={413: {"description": "the file is over the upload limit"},
                        422: {"description": "not a multipart upload with a 'file' part, or empty"}})
async def upload(request: Request, caller: CallerDep) -> UploadOut:
    """Stream the `file` part into the store; returns the upload id to reference in batch items."""
    parts = await _receive(request, max_files=1)
    # Off the event loop: waiting on the tenant's lock or an S3 put must not stall others' requests.
    return (await run_in_threadpool(_store_uploads, caller, parts.files))[0]


@router.post("/bulk", status_code=201, response_model=UploadList, openapi_extra=_MULTIPART_BODY,
             responses={413: {"description": "a file over the upload limit, or too many files"},
                        422: {"description": "not multipart, no 'file' part, or an empty file"}})
async def upload_many(request: Request, caller: CallerDep) -> UploadList:
    """Several files in one request, each in its own part named `file` (up to
    AGR_MAX_FILES_PER_UPLOAD): one upload each, in the order of the parts. All or none."""
    parts = await _receive(request, max_files=get_settings().max_files_per_upload)
    return UploadList(data=await run_in_threadpool(_store_uploads, caller, parts.files))


@router.post("/known", response_model=UploadList)
def known(body: KnownAudio, session: SessionDep, caller: CallerDep) -> UploadList:
    """Of these sha256 digests, the ones this tenant has uploaded already (and not yet
    expired): their oldest such upload each, to reference instead of uploading the file
    again (the oldest, so one more upload of the same bytes does not change the answer, nor
    a re-run's submission). Only the tenant's own uploads answer: another tenant's files
    are never confirmed."""
    fresh_after = datetime.now(timezone.utc) - timedelta(seconds=get_settings().upload_retention_s)
    rows = session.execute(
        select(Upload, AudioAsset).join(AudioAsset, AudioAsset.id == Upload.audio_id)
        .where(Upload.tenant_id == caller.tenant_id, AudioAsset.sha256.in_(set(body.sha256)),
               Upload.created_at > fresh_after)
        .order_by(AudioAsset.sha256, Upload.created_at, Upload.id)
        .distinct(AudioAsset.sha256)
    ).all()
    return UploadList(data=[_upload_out(row, asset) for row, asset in rows])


async def _receive(request: Request, max_files: int) -> ReceivedParts:
    try:
        return await receive_parts(request, audio_store().staging_dir(), get_settings().max_audio_bytes, max_files)
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except UploadMalformed as exc:
        raise HTTPException(422, str(exc)) from None


def _store_uploads(caller, received: list[ReceivedFile]) -> list[UploadOut]:
    """Every file stored and given an upload, in one transaction."""
    staged = [staged_file(r.path, r.filename, r.sha256, r.bytes) for r in received]
    try:
        # Into the store first, holding no lock or pooled connection while it is written.
        staged = list(put_staged(staged).values())
        with session_scope() as session:
            tenant = lock_tenant(session, caller.tenant_id)
            assert tenant is not None  # the caller's key names it (a foreign key), and tenants are never deleted
            check_storage_room(session, tenant, staged)
            audio_ids = store_staged(session, caller.tenant_id, staged)
            rows = [Upload(tenant_id=caller.tenant_id, audio_id=audio_ids[s.sha256], filename=s.name[:500])
                    for s in staged]
            session.add_all(rows)
            session.flush()
            assets = {a.id: a for a in session.scalars(select(AudioAsset)
                                                       .where(AudioAsset.id.in_(set(audio_ids.values()))))}
            return [_upload_out(row, assets[row.audio_id]) for row in rows]
    finally:
        for item in staged:
            item.discard()


@router.get("/{upload_id}", response_model=UploadOut, responses={404: {"description": "no such upload"}})
def read(upload_id: UUID, session: SessionDep, caller: CallerDep) -> UploadOut:
    row = session.scalar(select(Upload).where(Upload.id == upload_id, Upload.tenant_id == caller.tenant_id))
    if row is None:
        raise HTTPException(404, f"no upload {upload_id}")
    return _upload_out(row, row.audio)


def _upload_out(row: Upload, asset) -> UploadOut:
    return UploadOut(id=row.id, filename=row.filename, sha256=asset.sha256, bytes=asset.bytes,
                     duration_s=asset.duration_s, created_at=row.created_at)
