"""/v1/batches: create from a file's text, read with live counts, list, page through its
jobs, download output and error files (partial while running and after cancel or expiry),
cancel, and score against the reference answers."""

import hashlib
from datetime import datetime, timezone
from typing import Annotated, Any, cast
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError

from api.deps import CallerDep, SessionDep
from api.front_door.result_files import ERROR_STATUSES, OUTPUT_STATUSES, RESULT_CHUNK, result_file
from api.intake.batch_input import SubmissionInvalid
from api.intake.batch_intake import Submission, commit, prepare, record_for_intake
from api.intake.submission import enqueue_first_steps
from api.keys import Caller
from api.presenters import (
    ENDED,
    SCORE_COLUMNS,
    batch_with_counts,
    benchmark_item,
    counts_by_batch,
    job_out,
    prediction_of,
    present,
)
from api.schemas import BatchCreate, BatchList, BatchOut, BatchView, JobList, OpenAIBatch, RequestCounts
from evaluation.scoring import report_of, score_item
from models import Batch, Job, JobStatus, Step, StepStatus
from models.batch import BatchInterface
from models.db import session_scope
from models.tenant import lock_tenant
from workers.runtime import object_deletions
from workers.runtime.batch_lifecycle import cancel_batch, expire_if_due, lock_for_ending
from workers.runtime.retention import delete_batch

router = APIRouter(prefix="/v1/batches", tags=["batches"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {  # as FastAPI types `responses`
    404: {"description": "no such batch for this key's tenant"}}
BatchShown = BatchOut | OpenAIBatch  # ours, or the OpenAI Batch API's for a batch made through it
VIEW = Query(description="native or openai: the shape to show; default, the shape of the API "
                               "that made the batch")


@router.post("", status_code=201, response_model=BatchShown,
             responses={200: {"model": BatchShown, "description": "the batch an earlier request with this "
                                                              "Idempotency-Key created"},
                        409: {"description": "Idempotency-Key reused for a different request"},
                        422: {"description": "the submission is refused whole; errors name each bad line"},
                        429: {"description": "rate limit, or too many unfinished items for this tenant"}})
def create(body: BatchCreate, request: Request, caller: CallerDep,
           idempotency_key: Annotated[str | None, Header(max_length=200)] = None):
    """Inline `input`: validate every line and every audio reference, then queue the whole
    batch (or nothing). `input_file_id`: the batch is recorded `validating` and checked
    off the request path (api/intake/batch_intake.py); poll it for `in_progress` or `failed`."""
    request_hash = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
    submission = _submission(body)
    if idempotency_key and (replay := _replay_now(caller, idempotency_key, request_hash)):
        return replay
    step_ids = []
    try:
        if body.input_file_id is not None:
            with session_scope() as session:
                batch_id = record_for_intake(session, caller, body.input_file_id, submission,
                                             idempotency_key, request_hash).id
        else:
            assert body.input is not None  # BatchCreate._one_input: exactly one of input and input_file_id
            prepared = _prepared(caller, body.input, submission, idempotency_key, request_hash)
            with session_scope() as session:  # the only write transaction: short, under the tenant's lock
                batch_id, step_ids = _refused_as_422(lambda: commit(session, prepared))
    except IntegrityError:
        if not idempotency_key:
            raise
        return _replay_now(caller, idempotency_key, request_hash)  # a concurrent request with the key won
    enqueue_first_steps(step_ids)  # only after the commit: no message without its state
    if body.input_file_id is not None and (intake := getattr(request.app.state, "intake", None)):
        intake.wake()  # else another process's intake finds it on its next poll
    with session_scope() as session:
        # Just made, not ended: only a delete racing this could take it (then a 500, as before).
        return present(session, cast(Batch, session.get(Batch, batch_id)))


def _submission(body: BatchCreate) -> Submission:
    """What the request asks for. With `endpoint` (the OpenAI Batch API's body) each line is
    a chat completion request, and the batch is shown as that API shows it."""
    fmt, interface = body.input_format, BatchInterface.NATIVE
    if body.endpoint is not None:
        fmt, interface = ("openai" if fmt == "auto" else fmt), BatchInterface.BATCH_API
    assert body.metadata is not None  # BatchCreate._one_input turns a null into {}
    return Submission(fmt, body.audio_dir, body.name, body.pipeline, body.max_iters, body.metadata,
                      body.completion_window, interface, body.answer_samples, body.mechanisms)


def _prepared(caller: Caller, text: str, submission: Submission, key: str | None, request_hash: str):
    return _refused_as_422(lambda: prepare(caller, text, submission, key, request_hash))


def _refused_as_422(step):
    try:
        return step()
    except SubmissionInvalid as exc:
        raise HTTPException(422, {"message": str(exc).splitlines()[0], "errors": exc.errors}) from None


def _replay_now(caller: Caller, key: str, request_hash: str) -> JSONResponse | None:
    with session_scope() as session:
        return _replay(session, caller, key, request_hash)


@router.get("", response_model=BatchList)
def list_batches(session: SessionDep, caller: CallerDep, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                 after: UUID | None = None, view: Annotated[BatchView | None, VIEW] = None) -> BatchList:
    """Newest first; pass the last id you saw as `after` for the next page. Chat
    completions' batches of one are not listed (their jobs are: GET /v1/jobs/{id})."""
    query = select(Batch).where(Batch.tenant_id == caller.tenant_id, Batch.interface != BatchInterface.CHAT)
    if after is not None:
        pivot = _owned(session, caller, after)
        # A row comparison in SQL (a Python tuple's `<` would drop the id tie-break), on
        # the index batches(tenant_id, created_at, id).
        query = query.where(tuple_(Batch.created_at, Batch.id)
                            # tuple_ binds plain values at run time; its stubs take expressions only
                            < tuple_(pivot.created_at, pivot.id))  # type: ignore[arg-type]
    batches = session.scalars(query.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit + 1)).all()
    page = batches[:limit]
    counts = counts_by_batch(session, [b.id for b in page])  # the whole page's counts in one statement
    return BatchList(data=[present(session, b, counts[b.id], view) for b in page], has_more=len(batches) > limit,
                     first_id=page[0].id if page else None, last_id=page[-1].id if page else None)


@router.get("/{batch_id}", response_model=BatchShown, responses=NOT_FOUND)
def read(batch_id: UUID, session: SessionDep, caller: CallerDep, view: Annotated[BatchView | None, VIEW] = None):
    found = batch_with_counts(session, caller.tenant_id, batch_id)  # the poll's one statement
    if found is None:
        raise HTTPException(404, f"no batch {batch_id}")
    counts: RequestCounts | None  # None: counted again by present
    batch, counts = found
    if batch.expires_at is not None and batch.expires_at <= datetime.now(timezone.utc):
        # Expiry is applied when it is seen, not only on the sweeper's next pass.
        lock_for_ending(session, batch)
        if expire_if_due(session, batch):
            session.flush()
            session.refresh(batch)
        counts = None  # counted again, under the lock
    return present(session, batch, counts, view)


@router.post("/{batch_id}/cancel", response_model=BatchShown, responses=NOT_FOUND)
def cancel(batch_id: UUID, session: SessionDep, caller: CallerDep, view: Annotated[BatchView | None, VIEW] = None):
    """Stop the batch: unfinished jobs are cancelled, finished results are kept."""
    batch = _owned(session, caller, batch_id)
    lock_for_ending(session, batch)
    if not expire_if_due(session, batch):
        cancel_batch(session, batch)
    session.flush()
    session.refresh(batch)
    return present(session, batch, view=view)


@router.delete("/{batch_id}", responses={**NOT_FOUND, 409: {"description": "the batch has not ended: cancel it "
                                                                       "first, or wait for its running steps"}})
def remove(batch_id: UUID, caller: CallerDep, after: BackgroundTasks) -> dict:
    """Delete an ended batch: its jobs, their evidence, and the audio objects no other job or
    upload of this tenant uses (uploads are kept until they expire). The objects go from the
    store after the answer (and the commit), not under the tenant's lock; the sweeper
    finishes what fails (workers/runtime/object_deletions.py)."""
    with session_scope() as session:  # committed before the answer says it is done
        lock_tenant(session, caller.tenant_id)  # retention and the tenant's submits take turns
        batch = session.scalar(select(Batch).where(Batch.id == batch_id, Batch.tenant_id == caller.tenant_id)
                               .with_for_update())
        if batch is None:  # never there, another tenant's, or deleted by a request just before
            raise HTTPException(404, f"no batch {batch_id}")
        if batch.status not in ENDED:  # only an ended batch is deleted
            raise HTTPException(409, f"batch {batch_id} is {batch.status}: cancel it first, then delete it")
        if _has_running_steps(session, batch_id):
            # An expired batch's steps may still be finishing: deleting under them would
            # take their rows in the opposite order to their workers.
            raise HTTPException(409, f"batch {batch_id} still has running steps; try again shortly",
                                headers={"Retry-After": "10"})
        objects = delete_batch(session, batch)
    if objects:
        after.add_task(object_deletions.work_off)
    return {"id": str(batch_id), "object": "batch.deleted", "deleted": True, "audio_objects_deleted": objects}


def _has_running_steps(session, batch_id: UUID) -> bool:
    return session.scalar(select(Step.id).join(Job, Job.id == Step.job_id)
                          .where(Job.batch_id == batch_id, Step.status == StepStatus.RUNNING).limit(1)) is not None


@router.get("/{batch_id}/jobs", response_model=JobList, responses=NOT_FOUND)
def list_jobs(batch_id: UUID, session: SessionDep, caller: CallerDep,
              status: JobStatus | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              after: Annotated[str | None, Query(max_length=200, description="a custom_id")] = None) -> JobList:
    """The batch's jobs in custom_id order, optionally only those with one status."""
    _owned(session, caller, batch_id)
    query = select(Job).where(Job.batch_id == batch_id)
    if status is not None:
        query = query.where(Job.status == status)
    if after is not None:
        query = query.where(Job.custom_id > after)
    jobs = session.scalars(query.order_by(Job.custom_id).limit(limit + 1)).all()
    page = jobs[:limit]
    return JobList(data=[job_out(j) for j in page], has_more=len(jobs) > limit,
                   last_id=page[-1].custom_id if page else None)


@router.get("/{batch_id}/output", responses={**NOT_FOUND, 200: {"content": {"application/x-ndjson": {}}}})
def output_file(batch_id: UUID, session: SessionDep, caller: CallerDep) -> Response:
    """JSONL, one line per succeeded job so far (complete once the batch has ended)."""
    return _result_file(session, caller, batch_id, OUTPUT_STATUSES)


@router.get("/{batch_id}/errors", responses={**NOT_FOUND, 200: {"content": {"application/x-ndjson": {}}}})
def error_file(batch_id: UUID, session: SessionDep, caller: CallerDep) -> Response:
    """JSONL, one line per errored, cancelled or expired job, with the reason. Always exists
    (empty when nothing failed)."""
    return _result_file(session, caller, batch_id, ERROR_STATUSES)


@router.get("/{batch_id}/score", responses=NOT_FOUND)
def score_batch(batch_id: UUID, session: SessionDep, caller: CallerDep,
                rule: Annotated[str, Query(pattern="^(token|letter)$")] = "token",
                items: Annotated[bool, Query(description="also name the batch and list each scored item: its "
                                                         "id, job_id, correct (null: no prediction) and groups")]
                = False) -> dict:
    """Accuracy against the submitted reference answers, by the benchmarks' own rule, overall
    and per modality, category, sub-category and difficulty; `official` drops items without
    a prediction (as the benchmark scripts do), `strict` counts them wrong. With
    `items=true` two fields more: `batch` (its id, name, pipeline and options, to label a
    comparison of batches) and `items`, each scored item (to compare batches over their
    common items, or to judge the right answers' traces)."""
    batch = _owned(session, caller, batch_id)
    # Only the columns scoring reads, through a server-side cursor a chunk at a time: one
    # statement whatever the size, and no ORM object per job.
    rows = session.execute(select(*SCORE_COLUMNS, Job.id).where(Job.batch_id == batch_id).order_by(Job.custom_id)
                           .execution_options(yield_per=RESULT_CHUNK))
    scored, job_ids, unscorable = [], [], 0
    for row in rows:
        item = benchmark_item(row)
        if item.get("answer") is None:
            unscorable += 1
            continue
        scored.append(score_item(item, prediction_of(row), rule))
        job_ids.append(row.id)
    report = report_of(scored, rule, unscorable).as_json()
    if items:
        report["batch"] = {"id": str(batch.id), "name": batch.name,
                           "pipeline": batch.options.get("pipeline", "agr"), "options": batch.options}
        report["items"] = [{**s.as_json(), "job_id": str(job_id)} for s, job_id in zip(scored, job_ids)]
    return report


def _result_file(session, caller: Caller, batch_id: UUID, statuses) -> Response:
    _owned(session, caller, batch_id)
    return result_file(session, batch_id, statuses)


def _owned(session, caller: Caller, batch_id: UUID) -> Batch:
    """The batch if it belongs to the caller's tenant; 404 otherwise (never 403: another
    tenant's ids must not be confirmed to exist)."""
    batch = session.scalar(select(Batch).where(Batch.id == batch_id, Batch.tenant_id == caller.tenant_id))
    if batch is None:
        raise HTTPException(404, f"no batch {batch_id}")
    return batch


def _replay(session, caller: Caller, key: str, request_hash: str) -> JSONResponse | None:
    """The batch an earlier request with this Idempotency-Key made (200), 409 if that request
    was a different one, or None when the key is new."""
    earlier = session.scalar(select(Batch).where(Batch.tenant_id == caller.tenant_id, Batch.idempotency_key == key))
    if earlier is None:
        return None
    if earlier.request_sha256 != request_hash:
        raise HTTPException(409, "this Idempotency-Key was used for a different request")
    return JSONResponse(present(session, earlier).model_dump(mode="json"), status_code=200)
