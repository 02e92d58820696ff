"""/v1/files: submission files, shaped like the OpenAI Files API (purpose `batch`), and the
output and error files of batches made through the OpenAI Batch API (purpose
`batch_output`: rendered from the batch's jobs when read, deleted with the batch).

A large batch arrives here first, streamed, then `POST /v1/batches` names it by
`input_file_id` and is validated off the request path (api/intake/batch_intake.py). The same
bytes uploaded again by the same tenant answer the file made the first time, so a
re-run of a submission finds the batch it made (its Idempotency-Key's request is the
same).
"""

import tempfile
from pathlib import Path
from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import defer
from starlette.concurrency import run_in_threadpool

from api.deps import CallerDep, SessionDep
from api.front_door.result_files import ERROR_STATUSES, OUTPUT_STATUSES, batch_api_lines, file_size, result_file
from api.intake.upload_stream import UploadMalformed, UploadTooLarge, receive_parts
from api.presenters import ERROR_FILE_PREFIX, OUTPUT_FILE_PREFIX
from api.schemas import FileList, FileOut
from core.settings import get_settings
from models import Batch, BatchStatus, InputFile
from models.db import session_scope

router = APIRouter(prefix="/v1/files", tags=["files"])
PURPOSES = ("batch",)
NOT_FOUND: dict[int | str, dict[str, Any]] = {  # as FastAPI types `responses`
    404: {"description": "no such file for this key's tenant"}}

_MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file", "purpose"],
            "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"enum": list(PURPOSES)}},
        }}},
    }
}


@router.post("", response_model=FileOut, openapi_extra=_MULTIPART_BODY,
             responses={413: {"description": "the file is over AGR_MAX_INPUT_FILE_BYTES"},
                        422: {"description": "no 'file' part, an unknown purpose, or not UTF-8 text"}})
async def upload(request: Request, caller: CallerDep) -> FileOut:
    """Stream a submission file in (the part `file`, with `purpose` = batch)."""
    limit = get_settings().max_input_file_bytes
    with tempfile.TemporaryDirectory(prefix="agr-input-") as folder:
        try:
            parts = await receive_parts(request, Path(folder), limit, max_files=1)
        except UploadTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except UploadMalformed as exc:
            raise HTTPException(422, str(exc)) from None
        purpose = parts.fields.get("purpose", "")
        if purpose not in PURPOSES:
            raise HTTPException(422, f"purpose {purpose!r}: use one of {', '.join(PURPOSES)}")
        return await run_in_threadpool(_store, caller.tenant_id, purpose, parts.files[0])


def _store(tenant_id: UUID, purpose: str, received) -> FileOut:
    with session_scope() as session:
        if (held := _by_digest(session, tenant_id, purpose, received.sha256)) is not None:
            return _file_out(held)  # the same bytes again: not read, not sent to Postgres again
    try:
        # Bytes decoded as they are (no newline translation), so the stored text is what
        # its sha256 and size describe, and GET .../content gives those bytes back.
        content = received.path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"{received.filename}: not UTF-8 text (byte {exc.start})") from None
    if "\x00" in content:
        raise HTTPException(422, f"{received.filename}: contains a NUL character")
    row = {"tenant_id": tenant_id, "purpose": purpose, "filename": received.filename[:500],
           "sha256": received.sha256, "bytes": received.bytes, "content": content}
    with session_scope() as session:
        session.execute(insert(InputFile).values(row).on_conflict_do_nothing())
        # The upsert leaves the row: only a delete racing it could take it (then a 500, as before).
        return _file_out(cast(InputFile, _by_digest(session, tenant_id, purpose, received.sha256)))


@router.get("", response_model=FileList)
def list_files(session: SessionDep, caller: CallerDep,
               purpose: Annotated[str, Query(pattern="^batch$")] = "batch",
               sha256: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None) -> FileList:
    """The tenant's file with these bytes (`sha256`), so a client uploads it only once;
    without `sha256`, its newest 100 files."""
    if sha256 is not None:
        found = _by_digest(session, caller.tenant_id, purpose, sha256)
        return FileList(data=[_file_out(found)] if found else [])
    rows = session.scalars(select(InputFile).options(defer(InputFile.content)).where(InputFile.tenant_id == caller.tenant_id,
                                                   InputFile.purpose == purpose)
                           .order_by(InputFile.created_at.desc()).limit(100))
    return FileList(data=[_file_out(r) for r in rows])


@router.get("/{file_id}", response_model=FileOut, responses=NOT_FOUND)
def read(file_id: str, session: SessionDep, caller: CallerDep) -> FileOut:
    if (made := _batch_file(session, caller.tenant_id, file_id)) is not None:
        batch, statuses = made
        return FileOut(id=file_id, bytes=file_size(session, batch.id, statuses, batch_api_lines),
                       created_at=int(batch.created_at.timestamp()), filename=f"{file_id}.jsonl",
                       purpose="batch_output")
    return _file_out(owned_file(session, caller.tenant_id, file_id))


@router.get("/{file_id}/content", responses={**NOT_FOUND, 200: {"content": {"application/x-ndjson": {}}}})
def content(file_id: str, session: SessionDep, caller: CallerDep) -> Response:
    if (made := _batch_file(session, caller.tenant_id, file_id)) is not None:
        batch, statuses = made
        return result_file(session, batch.id, statuses, batch_api_lines)
    return PlainTextResponse(owned_file(session, caller.tenant_id, file_id).content)


@router.delete("/{file_id}", responses={**NOT_FOUND, 400: {"description": "a batch's output file: delete the "
                                                                          "batch instead"},
                                        409: {"description": "a batch made from it is still being checked"}})
def remove(file_id: str, session: SessionDep, caller: CallerDep) -> dict:
    """Delete a submission file; batches made from it keep their jobs (and lose the link)."""
    if _batch_file(session, caller.tenant_id, file_id) is not None:
        raise HTTPException(400, "a batch's output and error files go with the batch: DELETE /v1/batches/{id}")
    row = owned_file(session, caller.tenant_id, file_id, for_update=True)
    if session.scalar(select(Batch.id).where(Batch.input_file_id == row.id, Batch.status == BatchStatus.VALIDATING)
                      .limit(1)) is not None:
        raise HTTPException(409, f"a batch made from file {file_id} is still being checked: wait for it, or "
                                 "cancel it first", headers={"Retry-After": "10"})
    session.delete(row)
    return {"id": file_id, "object": "file", "deleted": True}


def owned_file(session, tenant_id: UUID, file_id: str, for_update: bool = False) -> InputFile:
    query = select(InputFile).where(InputFile.id == _uuid(file_id), InputFile.tenant_id == tenant_id)
    row = session.scalar(query.with_for_update() if for_update else query)
    if row is None:
        raise HTTPException(404, f"no file {file_id}")
    return row


def _uuid(file_id: str) -> UUID | None:
    try:
        return UUID(file_id)
    except ValueError:
        return None  # matches no row: a 404 like any other unknown id


def _batch_file(session, tenant_id: UUID, file_id: str) -> tuple[Batch, tuple] | None:
    """The tenant's Batch API batch and the statuses of the lines this file holds, when
    `file_id` names its output or error file (api/presenters.py names them)."""
    for prefix, statuses in ((OUTPUT_FILE_PREFIX, OUTPUT_STATUSES), (ERROR_FILE_PREFIX, ERROR_STATUSES)):
        if file_id.startswith(prefix) and (batch_id := _uuid(file_id.removeprefix(prefix))) is not None:
            batch = session.scalar(select(Batch).where(Batch.id == batch_id, Batch.tenant_id == tenant_id))
            if batch is None:
                raise HTTPException(404, f"no file {file_id}")
            return batch, statuses
    return None


def _by_digest(session, tenant_id: UUID, purpose: str, sha256: str) -> InputFile | None:
    return session.scalar(select(InputFile).options(defer(InputFile.content))
                          .where(InputFile.tenant_id == tenant_id, InputFile.purpose == purpose,
                                                  InputFile.sha256 == sha256))


def _file_out(row: InputFile) -> FileOut:
    return FileOut(id=str(row.id), bytes=row.bytes, created_at=int(row.created_at.timestamp()),
                   filename=row.filename, purpose=row.purpose, sha256=row.sha256)
