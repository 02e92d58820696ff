"""Database rows as the API shows them: batches with live counts, jobs, result lines."""

from typing import Any

from sqlalchemy import Row, func, select, true
from sqlalchemy.orm import Session

from api.schemas import BatchError, BatchErrors, BatchOut, JobOut, OpenAIBatch, RequestCounts
from evaluation.scoring import score_item
from models import Batch, BatchStatus, Job, JobStatus
from models.batch import BatchInterface

ENDED = (BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED)  # for good
OUTPUT_FILE_PREFIX, ERROR_FILE_PREFIX = "file-batch-output-", "file-batch-errors-"


def request_counts(session: Session, batch_id) -> RequestCounts:
    return counts_by_batch(session, [batch_id])[batch_id]


def counts_by_batch(session: Session, batch_ids) -> dict:
    """Each batch's live counts, by one aggregate over jobs(batch_id, status) for all of
    them (an index-only scan): a page of 100 batches is one statement, not 100."""
    ids = list(batch_ids)
    rows: dict = {batch_id: {} for batch_id in ids}
    if ids:
        for batch_id, status, count in session.execute(
            select(Job.batch_id, Job.status, func.count()).where(Job.batch_id.in_(ids))
            .group_by(Job.batch_id, Job.status)
        ):
            rows[batch_id][status] = count
    return {batch_id: _counts(found) for batch_id, found in rows.items()}


def batch_with_counts(session: Session, tenant_id, batch_id) -> tuple[Batch, RequestCounts] | None:
    """The tenant's batch and its live counts in one statement (a status poll's only one
    besides the key's): the counts by a LATERAL aggregate on jobs(batch_id, status)."""
    counted = (select(*(func.count().filter(Job.status == status).label(status.value) for status in JobStatus))
               .where(Job.batch_id == Batch.id).lateral("counts"))
    row = session.execute(select(Batch, counted).join(counted, true())
                          .where(Batch.id == batch_id, Batch.tenant_id == tenant_id)).one_or_none()
    if row is None:
        return None
    batch, *per_status = row
    return batch, _counts({status: n for status, n in zip(JobStatus, per_status) if n})


def _counts(rows: dict) -> RequestCounts:
    n = lambda status: rows.get(status, 0)  # noqa: E731
    return RequestCounts(
        total=sum(rows.values()), queued=n(JobStatus.QUEUED), in_progress=n(JobStatus.IN_PROGRESS),
        completed=n(JobStatus.SUCCEEDED), failed=n(JobStatus.ERRORED),
        cancelled=n(JobStatus.CANCELLED), expired=n(JobStatus.EXPIRED),
    )


def batch_out(session: Session, batch: Batch, counts: RequestCounts | None = None) -> BatchOut:
    """The batch as the API shows it; `counts` when the caller has them already (a listing
    counts its whole page at once), else counted now."""
    return BatchOut(
        id=batch.id, name=batch.name, status=batch.status,
        pipeline=batch.options.get("pipeline", "agr"), options=batch.options,
        metadata=batch.batch_metadata or {}, source=batch.source, created_at=batch.created_at,
        expires_at=batch.expires_at, completed_at=batch.completed_at, cancelled_at=batch.cancelled_at,
        ended_at=batch.ended_at, request_counts=request_counts(session, batch.id) if counts is None else counts,
        output_file=f"/v1/batches/{batch.id}/output", error_file=f"/v1/batches/{batch.id}/errors",
        input_file_id=batch.input_file_id, errors=batch_errors(batch.errors),
    )


def present(session: Session, batch: Batch, counts: RequestCounts | None = None, view: str | None = None):
    """The batch in the shape its API shows (`view` overrides): ours, or the OpenAI Batch
    API's for a batch made through it."""
    view = view or ("openai" if batch.interface == BatchInterface.BATCH_API else "native")
    return openai_batch_out(session, batch, counts) if view == "openai" else batch_out(session, batch, counts)


def openai_batch_out(session: Session, batch: Batch, counts: RequestCounts | None = None) -> OpenAIBatch:
    """As the OpenAI Batch API's batch object: the same rows, its names and Unix times. The
    output and error files are named once the batch has ended (and has such lines)."""
    counts = request_counts(session, batch.id) if counts is None else counts
    ended, status = batch.status in ENDED, batch.status
    unanswered = counts.failed + counts.cancelled + counts.expired
    at = lambda when: int(when.timestamp()) if when is not None else None  # noqa: E731
    return OpenAIBatch(
        id=batch.id, endpoint="/v1/chat/completions", errors=batch_errors(batch.errors),
        input_file_id=str(batch.input_file_id) if batch.input_file_id else None,
        completion_window=_window(batch), status=status,
        output_file_id=f"{OUTPUT_FILE_PREFIX}{batch.id}" if ended and counts.completed else None,
        error_file_id=f"{ERROR_FILE_PREFIX}{batch.id}" if ended and unanswered else None,
        created_at=at(batch.created_at), in_progress_at=at(batch.in_progress_at), expires_at=at(batch.expires_at),
        finalizing_at=at(batch.completed_at), completed_at=at(batch.completed_at),
        failed_at=at(batch.ended_at) if status == BatchStatus.FAILED else None,
        expired_at=at(batch.ended_at) if status == BatchStatus.EXPIRED else None,
        cancelling_at=at(batch.cancelled_at),
        cancelled_at=at(batch.ended_at) if status == BatchStatus.CANCELLED else None,
        request_counts=counts, metadata=batch.batch_metadata or {}, name=batch.name,
        pipeline=batch.options.get("pipeline", "agr"),
        output_file=f"/v1/batches/{batch.id}/output", error_file=f"/v1/batches/{batch.id}/errors",
    )


def _window(batch: Batch) -> str:
    """The window asked for: the expiry's distance from when the batch began running."""
    if batch.expires_at is None or batch.in_progress_at is None:
        return (batch.intake or {}).get("completion_window") or "24h"
    seconds = round((batch.expires_at - batch.in_progress_at).total_seconds())
    unit, size = next((u, n) for u, n in (("h", 3600), ("m", 60), ("s", 1)) if seconds % n == 0)
    return f"{seconds // size}{unit}"


def batch_errors(errors: list[str] | None) -> BatchErrors | None:
    """A refused batch's problems, each with its line number when it names one ("line 7: ...")."""
    if errors is None:
        return None
    return BatchErrors(data=[BatchError(message=e, line=_line_of(e)) for e in errors])


def _line_of(error: str) -> int | None:
    where, _, _ = error.partition(":")
    kind, _, number = where.partition(" ")
    return int(number) if kind in ("line", "item") and number.isdigit() else None


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id, batch_id=job.batch_id, custom_id=job.custom_id, status=job.status,
        question=job.question, choices=job.choices, answer=job.answer, raw_answer=job.raw_answer,
        normalisation=job.normalisation, confidence=job.confidence, reasoning=job.reasoning,
        reference_answer=job.reference_answer, correct=correctness(job), error=job.error, vote=job.vote,
        decision=job.decision,
        metadata=job.item_metadata or {},
        options=job.options or {}, attempts=job.attempts, created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at,
    )


def correctness(job: Job) -> bool | None:
    """The answer right or wrong by the official token rule; None for a job without an
    answer (running, errored, cancelled) or without a reference answer."""
    if job.reference_answer is None or job.status != JobStatus.SUCCEEDED:
        return None
    return score_item(benchmark_item(job), prediction_of(job)).correct


def result_line(job: Job) -> dict:
    """One line of the output or error file: the item as submitted, and what became of it.
    Enough to score it or export it in a benchmark's format without another request.
    `job` may be a row of RESULT_COLUMNS instead (the files are read as columns, in chunks)."""
    return {
        "custom_id": job.custom_id, "job_id": str(job.id), "status": str(job.status),
        "answer": job.answer, "raw_answer": job.raw_answer, "normalisation": job.normalisation,
        "confidence": job.confidence, "reasoning": job.reasoning, "error": job.error,
        "question": job.question, "choices": job.choices, "reference_answer": job.reference_answer,
        "metadata": job.item_metadata or {},
    }


# The columns result_line, and benchmark_item with prediction_of, read: selected as rows
# (same names, same values), the files and the score need no ORM objects.
RESULT_COLUMNS = (Job.custom_id, Job.id, Job.status, Job.answer, Job.raw_answer, Job.normalisation,
                  Job.confidence, Job.reasoning, Job.error, Job.question, Job.choices, Job.reference_answer,
                  Job.item_metadata, Job.options, Job.created_at)  # the last two: the Batch API's lines
SCORE_COLUMNS = (Job.custom_id, Job.question, Job.choices, Job.reference_answer, Job.item_metadata,
                 Job.status, Job.answer, Job.raw_answer)


def benchmark_item(job: Job | Row[Any]) -> dict:
    """The job as a benchmark item, for evaluation.scoring (or a row of SCORE_COLUMNS)."""
    return {"id": job.custom_id, "question": job.question, "choices": job.choices,
            "answer": job.reference_answer, **(job.item_metadata or {})}


def prediction_of(job: Job | Row[Any]) -> str | None:
    """What the benchmark scripts would read: the mapped choice, else the raw reply;
    None (no prediction) for a job that never answered. (A row of SCORE_COLUMNS will do.)"""
    if job.status != JobStatus.SUCCEEDED:
        return None
    return job.answer if job.answer is not None else (job.raw_answer or "")
