"""/v1/jobs: one job's status and answer, its whole evidence chain, and its audio."""

import mimetypes
from pathlib import PurePosixPath
from uuid import UUID

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from sqlalchemy import select

from api.audio_ingest import granted
from api.deps import CallerDep, SessionDep
from api.evidence_chain import evidence_chain
from api.presenters import job_out
from api.schemas import JobOut
from core.audio_store import ObjectMissing, audio_store
from models import Batch, Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
NOT_FOUND = {404: {"description": "no such job for this key's tenant"}}


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
def audio(job_id: UUID, session: SessionDep, caller: CallerDep) -> FileResponse:
    """The job's audio as it was submitted (the stored copy), for listening to the spans its
    evidence cites."""
    job = _owned(session, caller.tenant_id, job_id)
    if not granted(session, caller.tenant_id, job.audio_id):
        raise HTTPException(404, f"the audio of job {job_id} is no longer stored")
    try:
        path = audio_store().local_file(job.audio.sha256)
    except ObjectMissing:
        raise HTTPException(404, f"the audio of job {job_id} is no longer stored") from None
    name = PurePosixPath(job.audio_name or "audio").name
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, filename=name, content_disposition_type="inline")


def _owned(session, tenant_id, job_id: UUID) -> Job:
    job = session.scalar(
        select(Job).join(Batch, Batch.id == Job.batch_id).where(Job.id == job_id, Batch.tenant_id == tenant_id)
    )
    if job is None:
        raise HTTPException(404, f"no job {job_id}")
    return job
