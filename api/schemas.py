"""Request and response bodies. Names follow the OpenAI Batch API where they fit."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from models.status import BatchStatus, JobStatus

Pipeline = Literal["agr", "cascade", "direct"]
InputFormat = Literal["auto", "jsonl", "mmar", "mmau"]


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
    audio_dir: str | None = Field(None, max_length=1000,
                                  description="folder inside the tenant's audio root that paths are relative to")
    name: str | None = Field(None, max_length=200)
    pipeline: Pipeline = "agr"
    max_iters: int | None = Field(None, ge=0, le=10)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=16)
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
