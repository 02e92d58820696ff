"""Request and response bodies. Names follow the OpenAI Batch API where they fit."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field

from models.status import BatchStatus, JobStatus

Pipeline = Literal["agr", "cascade", "direct"]
InputFormat = Literal["auto", "jsonl", "mmar", "mmau"]


def _no_nul(value: str) -> str:
    # Postgres stores no NUL in text (and none in what it reads out of json): refused here,
    # not a 500 at the insert. (A lone surrogate is refused by pydantic's str itself.)
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


def _stored_text(max_length: int):
    """A string Postgres can store (no NUL) of at most `max_length` characters."""
    return Annotated[str, Field(max_length=max_length), AfterValidator(_no_nul)]


BatchName = _stored_text(200)  # batches.name
AudioDir = _stored_text(1000)
# As the OpenAI Batch API: metadata keys up to 64 characters, values up to 512.
MetadataKey = _stored_text(64)
MetadataValue = _stored_text(512)


class UploadOut(BaseModel):
    id: UUID
    object: Literal["audio"] = "audio"
    filename: str
    sha256: str
    bytes: int
    duration_s: float | None
    created_at: datetime


class BatchCreate(BaseModel):
    input: str = Field(description="the file's text: our JSONL items, an MMAR JSONL file or an MMAU JSON file",
                       max_length=200_000_000)
    input_format: InputFormat = "auto"
    audio_dir: AudioDir | None = Field(None, description="folder inside the tenant's audio root that paths "
                                                         "are relative to")
    name: BatchName | None = None
    pipeline: Pipeline = "agr"
    max_iters: int | None = Field(None, ge=0, le=10)
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=16)
    completion_window: str | None = Field(None, pattern=r"^\d{1,6}[smhd]$",
                                          description="e.g. 24h; unfinished jobs expire after it")


class RequestCounts(BaseModel):
    total: int
    queued: int
    in_progress: int
    completed: int  # succeeded
    failed: int  # errored
    cancelled: int
    expired: int


class BatchOut(BaseModel):
    id: UUID
    object: Literal["batch"] = "batch"
    name: str
    status: BatchStatus
    pipeline: str
    options: dict[str, Any]
    metadata: dict[str, Any]
    source: str | None
    created_at: datetime
    expires_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    ended_at: datetime | None
    request_counts: RequestCounts
    output_file: str
    error_file: str


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchOut]
    has_more: bool


class JobOut(BaseModel):
    id: UUID
    object: Literal["job"] = "job"
    batch_id: UUID
    custom_id: str
    status: JobStatus
    question: str
    choices: list[str]
    answer: str | None
    raw_answer: str | None
    normalisation: str | None
    confidence: float | None
    reasoning: str | None
    reference_answer: str | None
    correct: bool | None = Field(None, description="the answer against the reference by the benchmarks' "
                                                   "token rule; null without an answer or a reference")
    error: str | None
    metadata: dict[str, Any]
    options: dict[str, Any]
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobOut]
    has_more: bool
    last_id: str | None = Field(None, description="pass as `after` for the next page")


class ErrorOut(BaseModel):
    detail: Any
