"""/v1/jobs: one job's status and answer, its whole evidence chain, and its audio."""

import mimetypes
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import select

from api.deps import CallerDep, SessionDep
from api.evidence_chain import evidence_chain
from api.intake.audio_ingest import granted
from api.presenters import job_out
from api.schemas import JobOut
from models import Batch, Job
from storage.audio_store import LocalAudioStore, ObjectMissing
from storage.factory import audio_store

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {  # as FastAPI types `responses`
    404: {"description": "no such job for this key's tenant"}}


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def read(job_id: UUID, session: SessionDep, caller: CallerDep) -> JobOut:
    return job_out(_owned(session, caller.tenant_id, job_id))


@router.get("/{job_id}/evidence", responses=NOT_FOUND)
def evidence(job_id: UUID, session: SessionDep, caller: CallerDep) -> dict:
    """Each iteration's document, the planner's verdict, tool calls with args and outputs,
    LLM calls with prompts, replies, tokens and latency, and every step's timing."""
    job = _owned(session, caller.tenant_id, job_id)
    return {"job": job_out(job).model_dump(mode="json"), **evidence_chain(session, job)}


@router.get("/{job_id}/audio", responses={**NOT_FOUND, 200: {"content": {"audio/*": {}}}})
def audio(job_id: UUID, session: SessionDep, caller: CallerDep) -> Response:
    """The job's audio as it was submitted (the stored copy), for listening to the spans its
    evidence cites."""
    job = _owned(session, caller.tenant_id, job_id)
    if not granted(session, caller.tenant_id, job.audio_id):
        raise HTTPException(404, f"the audio of job {job_id} is no longer stored")
    name = _safe_name(job.audio_name)
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    store, digest = audio_store(), job.audio.sha256
    try:
        if isinstance(store, LocalAudioStore):  # a file: ranges, so the console's player can seek
            return FileResponse(store.local_file(digest), media_type=media_type, filename=name,
                                content_disposition_type="inline")
        stream = store.open(digest)  # streamed through, not copied into this process's cache
    except ObjectMissing:
        raise HTTPException(404, f"the audio of job {job_id} is no longer stored") from None
    return StreamingResponse(_chunks(stream), media_type=media_type,
                             headers={"Content-Length": str(job.audio.bytes),
                                      "Content-Disposition": f"inline; filename*=utf-8''{quote(name)}"})


def _chunks(stream, size: int = 1 << 20):
    with stream:
        while block := stream.read(size):
            yield block


def _safe_name(audio_name: str | None) -> str:
    """The file name a download offers: the last part of the submitter's name, printable."""
    name = PurePosixPath(audio_name or "audio").name
    return "".join(c for c in name if c.isprintable()) or "audio"


def _owned(session, tenant_id, job_id: UUID) -> Job:
    job = session.scalar(
        select(Job).join(Batch, Batch.id == Job.batch_id).where(Job.id == job_id, Batch.tenant_id == tenant_id)
    )
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job
