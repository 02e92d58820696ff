"""Request and response bodies. Names follow the OpenAI Batch API where they fit."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, model_validator

from models.status import BatchStatus, JobStatus
from workers.method.mechanisms import MECHANISMS, resolved

Pipeline = Literal["agr", "cascade", "direct", "crosscheck"]
InputFormat = Literal["auto", "jsonl", "mmar", "mmau", "openai"]
BatchView = Literal["native", "openai"]


def _no_nul(value: str) -> str:
    # Postgres stores no NUL in text (and none in what it reads out of json): refused here,
    # not a 500 at the insert. (A lone surrogate is refused by pydantic's str itself.)
    if "\x00" in value:
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


# Each a string Postgres can store (no NUL) of at most so many characters.
BatchName = Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]  # batches.name
AudioDir = Annotated[str, Field(max_length=1000), AfterValidator(_no_nul)]
# As the OpenAI Batch API: metadata keys up to 64 characters, values up to 512.
MetadataKey = Annotated[str, Field(max_length=64), AfterValidator(_no_nul)]
MetadataValue = Annotated[str, Field(max_length=512), AfterValidator(_no_nul)]


class UploadOut(BaseModel):
    id: UUID
    object: Literal["audio"] = "audio"
    filename: str
    sha256: str
    bytes: int
    duration_s: float | None
    created_at: datetime


class UploadList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UploadOut]


class KnownAudio(BaseModel):
    sha256: list[Annotated[str, Field(pattern="^[0-9a-f]{64}$")]] = Field(
        max_length=10_000, description="the digests of files about to be uploaded")


class FileOut(BaseModel):
    """As the OpenAI Files API's file object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int  # Unix seconds, as OpenAI's
    filename: str
    purpose: str  # batch; batch_output for a batch's output and error files
    status: Literal["processed"] = "processed"
    sha256: str | None = None


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileOut]


class BatchCreate(BaseModel):
    @model_validator(mode="after")
    def _known_mechanisms(self):
        resolved(self.pipeline, self.mechanisms)  # ValueError: a 422 naming the switch
        return self

    input: str | None = Field(None, description="the file's text: our JSONL items, an MMAR JSONL file or an "
                                                "MMAU JSON file (or give input_file_id)", max_length=200_000_000)
    input_file_id: UUID | None = Field(None, description="a file uploaded with POST /v1/files (purpose batch): "
                                                         "the batch is `validating` until every line is checked")
    input_format: InputFormat = "auto"
    audio_dir: AudioDir | None = Field(None, description="folder inside the tenant's audio root that paths "
                                                         "are relative to")
    name: BatchName | None = None
    pipeline: Pipeline = "agr"
    max_iters: int | None = Field(None, ge=0, le=10)
    answer_samples: int | None = Field(None, ge=1, le=15, description="the answering agent asked this many times "
                                                                     "and the answers voted on (default: 1 for agr, "
                                                                     "AGR_CROSSCHECK_ANSWER_SAMPLES for crosscheck)")
    mechanisms: dict[str, bool] | None = Field(None, max_length=16, description=(
        "crosscheck only: switch its mechanisms off for an ablation, e.g. {\"agreement_gate\": false}; each is on "
        "unless switched off. Known: " + "; ".join(f"{k}: {v}" for k, v in MECHANISMS.items())))
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default_factory=dict, max_length=16,
                                                              description="null is taken as {} (as OpenAI does)")
    completion_window: str | None = Field(None, pattern=r"^\d{1,6}[smhd]$",
                                          description="e.g. 24h; unfinished jobs expire after it")
    endpoint: Literal["/v1/chat/completions"] | None = Field(
        None, description="the OpenAI Batch API's: each line a chat completion request; the batch is then "
                          "shown as that API shows it")

    @model_validator(mode="after")
    def _one_input(self):
        self.metadata = self.metadata or {}
        if (self.input is None) == (self.input_file_id is None):
            raise ValueError("give exactly one of `input` (the text) and `input_file_id`")
        return self


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
    input_file_id: UUID | None = None
    errors: "BatchErrors | None" = Field(None, description="a `failed` batch: why, line by line")


class OpenAIBatch(BaseModel):
    """A batch as the OpenAI Batch API shows it (times in Unix seconds), with ours beside."""

    id: UUID
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: "BatchErrors | None"
    input_file_id: str | None
    completion_window: str
    status: BatchStatus
    output_file_id: str | None
    error_file_id: str | None
    created_at: int
    in_progress_at: int | None
    expires_at: int | None
    finalizing_at: int | None
    completed_at: int | None
    failed_at: int | None
    expired_at: int | None
    cancelling_at: int | None
    cancelled_at: int | None
    request_counts: RequestCounts
    metadata: dict[str, Any]
    name: str
    pipeline: str
    output_file: str = Field(description="our JSONL of every succeeded item so far, while it runs too")
    error_file: str


class BatchError(BaseModel):
    code: Literal["invalid_item"] = "invalid_item"
    message: str
    line: int | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError]


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchOut | OpenAIBatch]
    has_more: bool
    first_id: UUID | None = None
    last_id: UUID | None = Field(None, description="pass as `after` for the next page")


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
    vote: dict[str, Any] | None = Field(None, description="with several answer samples: each answer's votes, "
                                                           "the margin and the dissent")
    decision: dict[str, Any] | None = Field(None, description="crosscheck: how the answer was decided: the audio "
                                                               "models' agreement, or the text-side answer against "
                                                               "the audio model's and the arbitration")
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


BatchOut.model_rebuild()  # its `errors` names BatchErrors, defined after it
OpenAIBatch.model_rebuild()
