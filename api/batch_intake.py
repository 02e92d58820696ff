"""Validating a submission, with no write transaction open while it is read.

Checking a batch reads every line and, for paths in a tenant's audio root, every file
(hashed and staged once per distinct file). None of that holds a lock or a write
transaction: `prepare` reads what it needs from Postgres in short read-only sessions,
then `commit` takes the tenant's lock and writes the batch, its jobs and first steps in
one short transaction.

A small batch comes inline (`input`) and is checked inside its request. A large one
comes as an uploaded file (`input_file_id`): its request only records the batch,
`validating`, and an intake thread in every API process (`IntakeLoop`) checks it
afterwards, as the OpenAI Batch API does: `in_progress` once every line and file
passed, or `failed` with every bad line in `errors`. The batch row is the durable
record: an intake takes it FOR UPDATE SKIP LOCKED, so two processes never check one
batch, and one that dies mid-check (its transaction rolled back) leaves it `validating`
for the next pass of any of them.
"""

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from fastapi import HTTPException
from sqlalchemy import func, select

from api.batch_input import SubmissionInvalid, parse_lines, resolve_audio
from api.keys import Caller
from api.submission import BatchRequest, create_batch, discard_staged, enqueue_first_steps
from api.tenant_audio import resolver_for
from api.tenant_limits import check_queue_room, check_storage_room
from core.settings import get_settings
from models import Batch, BatchStatus, InputFile, Tenant
from models.db import session_scope
from models.tenant import lock_tenant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """What a batch request asks for, besides its text."""

    input_format: str
    audio_dir: str | None
    name: str | None
    pipeline: str
    max_iters: int | None
    metadata: dict
    completion_window: str | None

    def options(self) -> dict:
        max_iters = get_settings().max_iters if self.max_iters is None else self.max_iters
        return {"pipeline": self.pipeline, "max_iters": max_iters}

    def intake(self) -> dict:
        """What a `validating` batch keeps until it is checked (the rest is on its row)."""
        return {"input_format": self.input_format, "audio_dir": self.audio_dir,
                "completion_window": self.completion_window, "name_given": self.name is not None}


def prepare(caller: Caller, text: str, submission: Submission, idempotency_key: str | None = None,
            request_sha256: str | None = None) -> BatchRequest:
    """The validated request, its files staged; SubmissionInvalid names every bad line."""
    settings = get_settings()
    if submission.pipeline == "direct" and not settings.alm_model:
        raise SubmissionInvalid(["the direct pipeline needs an audio-language model (AGR_ALM_MODEL)"])
    parsed, errors = parse_lines(text, submission.input_format, settings.batch_max_items)
    with session_scope() as session:  # read only, and over before any file is read
        resolver = resolver_for(session, caller, parsed, submission.audio_dir)
    try:
        items = resolve_audio(parsed, resolver, tuple(errors))
    except BaseException:
        resolver.discard()
        raise
    window = submission.completion_window or settings.default_completion_window
    return BatchRequest(
        name=submission.name or f"batch of {len(items)}", items=items, options=submission.options(),
        tenant_id=caller.tenant_id, metadata=submission.metadata, completion_window=_duration(window),
        idempotency_key=idempotency_key, request_sha256=request_sha256,
    )


def commit(session, request: BatchRequest, batch: Batch | None = None) -> tuple[UUID, list[int]]:
    """The batch written (into `batch` when it was made `validating`) after the tenant's
    limits are checked under its lock; returns (batch id, step ids). HTTPException (429,
    413) when a limit refuses it."""
    try:
        tenant = lock_tenant(session, request.tenant_id)
        check_queue_room(session, tenant, len(request.items))
        check_storage_room(session, tenant, [i.audio for i in request.items])
    except BaseException:
        discard_staged(request.items)
        raise
    return create_batch(request, session, batch)


def record_for_intake(session, caller: Caller, file_id: UUID, submission: Submission,
                      idempotency_key: str | None, request_sha256: str) -> Batch:
    """A `validating` batch for an uploaded file; the intake checks it after the commit."""
    found = session.scalar(select(InputFile.id).where(InputFile.id == file_id, InputFile.tenant_id == caller.tenant_id))
    if found is None:
        raise HTTPException(422, {"message": "the submission is refused", "errors": [f"no file {file_id}"]})
    batch = Batch(name=submission.name or "batch", options=submission.options(), tenant_id=caller.tenant_id,
                  status=BatchStatus.VALIDATING, batch_metadata=submission.metadata, input_file_id=file_id,
                  intake=submission.intake(), idempotency_key=idempotency_key, request_sha256=request_sha256)
    session.add(batch)
    session.flush()
    return batch


def validate_next() -> UUID | None:
    """Check the oldest `validating` batch no other intake holds; returns its id (None:
    nothing waiting). The batch row stays locked while it is checked; nothing else is
    written until the end."""
    step_ids: list[int] = []
    with session_scope() as session:
        batch = session.scalar(select(Batch).where(Batch.status == BatchStatus.VALIDATING)
                               .order_by(Batch.created_at).limit(1).with_for_update(skip_locked=True))
        if batch is None:
            return None
        batch_id = batch.id
        try:
            request = prepare(_caller_of(session, batch), _input_text(session, batch), _submission_of(batch),
                              batch.idempotency_key, batch.request_sha256)
            with session.begin_nested():  # a refusal undoes what the commit wrote, not the row's lock
                _, step_ids = commit(session, request, batch)
        except SubmissionInvalid as exc:
            _refuse(batch, exc.errors)
        except HTTPException as exc:  # a tenant's limit
            _refuse(batch, [exc.detail if isinstance(exc.detail, str) else str(exc.detail)])
        else:
            batch.intake = None
    log.info("intake: batch %s checked: %s", batch_id, "queued" if step_ids else "refused")
    enqueue_first_steps(step_ids)  # after the commit, as for an inline submission
    return batch_id


def _refuse(batch: Batch, errors: list[str]) -> None:
    batch.status, batch.errors, batch.ended_at, batch.intake = BatchStatus.FAILED, errors, func.now(), None


def _caller_of(session, batch: Batch) -> Caller:
    tenant = session.get(Tenant, batch.tenant_id)
    root = Path(tenant.audio_root) if tenant.audio_root else None
    return Caller(None, tenant.id, tenant.name, root, tenant.rate_limit_per_minute, tenant.max_queued_items)


def _input_text(session, batch: Batch) -> str:
    return session.scalar(select(InputFile.content).where(InputFile.id == batch.input_file_id))


def _submission_of(batch: Batch) -> Submission:
    intake = batch.intake or {}
    return Submission(intake.get("input_format", "auto"), intake.get("audio_dir"),
                      batch.name if intake.get("name_given") else None, batch.options.get("pipeline", "agr"),
                      batch.options.get("max_iters"), batch.batch_metadata or {}, intake.get("completion_window"))


def _duration(text: str) -> timedelta:
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[text[-1]]
    return timedelta(**{unit: int(text[:-1])})


class IntakeLoop:
    """The API process's intake thread: checks `validating` batches one after another,
    woken at once by this process's own submissions, and every AGR_INTAKE_POLL_S for
    those another process recorded (or left behind when it died)."""

    def __init__(self):
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-intake", daemon=True)

    def start(self) -> "IntakeLoop":
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        poll_s = get_settings().intake_poll_s
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and validate_next() is not None:
                    pass
            except Exception:
                log.exception("intake: checking a batch failed; trying again in %.1f s", poll_s)
            self._wake.wait(poll_s)
            self._wake.clear()
