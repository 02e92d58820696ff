"""/v1/audio: upload an audio file (streamed into the store, size-limited) and read it back."""

from uuid import UUID

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from sqlalchemy import select

from api.deps import CallerDep, SessionDep
from api.schemas import UploadOut
from api.audio_ingest import staged_file, store_staged
from api.tenant_limits import check_storage_room
from models.tenant import lock_tenant
from api.upload_stream import UploadMalformed, UploadTooLarge, receive_file
from core.audio_store import audio_store
from core.settings import get_settings
from models import AudioAsset, Upload
from models.db import session_scope

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
    try:
        received = await receive_file(request, audio_store().staging_dir(), get_settings().max_audio_bytes)
    except UploadTooLarge as exc:
        raise HTTPException(413, str(exc)) from None
    except UploadMalformed as exc:
        raise HTTPException(422, str(exc)) from None
    # Off the event loop: waiting on the tenant's lock or an S3 put must not stall others' requests.
    return await run_in_threadpool(_store_upload, caller, received)


def _store_upload(caller, received) -> UploadOut:
    staged = staged_file(received.path, received.filename, received.sha256, received.bytes)
    try:
        with session_scope() as session:
            check_storage_room(session, lock_tenant(session, caller.tenant_id), [staged])
            audio_id = store_staged(session, caller.tenant_id, [staged])[staged.sha256]
            row = Upload(tenant_id=caller.tenant_id, audio_id=audio_id, filename=received.filename[:500])
            session.add(row)
            session.flush()
            return _upload_out(row, session.get(AudioAsset, audio_id))
    finally:
        staged.discard()


@router.get("/{upload_id}", response_model=UploadOut, responses={404: {"description": "no such upload"}})
def read(upload_id: UUID, session: SessionDep, caller: CallerDep) -> UploadOut:
    row = session.scalar(select(Upload).where(Upload.id == upload_id, Upload.tenant_id == caller.tenant_id))
    if row is None:
        raise HTTPException(404, f"no upload {upload_id}")
    return _upload_out(row, row.audio)


def _upload_out(row: Upload, asset) -> UploadOut:
    return UploadOut(id=row.id, filename=row.filename, sha256=asset.sha256, bytes=asset.bytes,
                     duration_s=asset.duration_s, created_at=row.created_at)
