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
passed, or `failed` with every bad line in `errors`. An intake claims a batch under a
lease (`intake_claim`, `intake_claimed_until`, renewed while it checks), in a short
transaction taken FOR UPDATE SKIP LOCKED: two processes never check one batch, no
transaction stays open while files are read, a cancel meanwhile is never blocked (the
check's result is then dropped), and a process that dies mid-check leaves the batch to
any intake once its lease lapses. A batch whose checks keep dying fails after
AGR_INTAKE_MAX_ATTEMPTS of them, instead of holding up every batch behind it; a check cut
short by the infrastructure (core/transient_errors.py: a full staging disk, a database
blip, an object store's 503) spends no attempt and is tried again after a backoff.

Tenants take turns: the next batch checked is the oldest waiting one of the tenant whose
latest check began longest ago (or never), so one tenant's pile of large files holds
another's small one behind at most the check in progress.
"""

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import cast
from uuid import UUID, uuid4

from fastapi import HTTPException
from sqlalchemy import func, or_, select, update

from api.intake.audio_ingest import StagedAudio, put_items
from api.intake.batch_input import SubmissionInvalid, parse_lines, resolve_audio
from api.intake.submission import BatchRequest, create_batch, discard_staged, enqueue_first_steps
from api.intake.tenant_audio import gone_since_resolved, resolver_for
from api.intake.tenant_limits import check_queue_room, check_storage_room
from api.keys import Caller
from core.settings import get_settings
from core.transient_errors import is_transient
from models import Batch, BatchStatus, InputFile, Tenant
from models.db import session_scope
from models.tenant import lock_tenant
from workers.method.mechanisms import resolved
from workers.method.pipelines import Pipeline

log = logging.getLogger(__name__)

# A check cut short by the infrastructure waits this long before the next, doubling.
TRANSIENT_FIRST_WAIT_S, TRANSIENT_WAIT_AT_MOST_S = 0.5, 60.0


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
    interface: str = "native"  # models.batch.BatchInterface
    answer_samples: int | None = None  # None: the pipeline's default
    mechanisms: dict | None = None  # crosscheck's switches (workers/method/mechanisms.py); None: all on

    def options(self) -> dict:
        max_iters = get_settings().max_iters if self.max_iters is None else self.max_iters
        samples = {} if self.answer_samples is None else {"answer_samples": self.answer_samples}
        # Every switch is recorded, on or off, so a batch says what it ran with (agr eval's labels).
        switches = resolved(self.pipeline, self.mechanisms)
        return {"pipeline": self.pipeline, "max_iters": max_iters} | samples | (
            {"mechanisms": switches} if switches else {})

    def intake(self) -> dict:
        """What a `validating` batch keeps until it is checked (the rest is on its row)."""
        return {"input_format": self.input_format, "audio_dir": self.audio_dir,
                "completion_window": self.completion_window, "name_given": self.name is not None}


def prepare(caller: Caller, text: str, submission: Submission, idempotency_key: str | None = None,
            request_sha256: str | None = None) -> BatchRequest:
    """The validated request, its files staged; SubmissionInvalid names every bad line."""
    settings = get_settings()
    if unavailable := Pipeline(submission.pipeline).why_unavailable():
        raise SubmissionInvalid([unavailable])
    parsed, errors = parse_lines(text, submission.input_format, settings.batch_max_items)
    with session_scope() as session:  # read only, and over before any file is read
        resolver = resolver_for(session, caller, parsed, submission.audio_dir)
    try:
        items = resolve_audio(parsed, resolver, tuple(errors))
    except BaseException:
        resolver.discard()
        raise
    items = put_items(items)  # into the store now, with no lock or transaction held
    window = submission.completion_window or settings.default_completion_window
    return BatchRequest(
        name=submission.name or f"batch of {len(items)}", items=items, options=submission.options(),
        tenant_id=caller.tenant_id, metadata=submission.metadata, completion_window=parse_window(window),
        idempotency_key=idempotency_key, request_sha256=request_sha256, interface=submission.interface,
    )


def commit(session, request: BatchRequest, batch: Batch | None = None) -> tuple[UUID, list[int]]:
    """The batch written (into `batch` when it was made `validating`) after the tenant's
    limits are checked under its lock; returns (batch id, step ids). HTTPException (429,
    413) when a limit refuses it."""
    try:
        assert request.tenant_id is not None  # every caller builds the request for an API caller's tenant
        tenant = lock_tenant(session, request.tenant_id)
        assert tenant is not None  # the caller's key or batch names it (a foreign key); tenants are never deleted
        _check_uploads_still_held(session, request)
        check_queue_room(session, tenant, len(request.items))
        # An API request's audio is all staged (its resolver stages each reference): no path.
        check_storage_room(session, tenant, cast(list[StagedAudio], [i.audio for i in request.items]))
    except BaseException:
        discard_staged(request.items)
        raise
    return create_batch(request, session, batch)


def _check_uploads_still_held(session, request: BatchRequest) -> None:
    """Uploads were looked up before the lock: refuse those retention deleted since (their
    jobs would find no audio)."""
    stored = [i.audio for i in request.items if isinstance(i.audio, StagedAudio) and i.audio.upload]
    if gone := gone_since_resolved(session, request.tenant_id, stored):
        names = sorted({g.name for g in gone})
        raise SubmissionInvalid([f"{len(names)} upload(s) expired while the submission was checked, e.g. "
                                 f"{', '.join(names[:5])}: upload them again"])


def record_for_intake(session, caller: Caller, file_id: UUID, submission: Submission,
                      idempotency_key: str | None, request_sha256: str) -> Batch:
    """A `validating` batch for an uploaded file; the intake checks it after the commit."""
    # FOR KEY SHARE: a DELETE of the file waits for this batch (and then refuses: it is
    # being checked), or this waits for the DELETE and finds no file; never a broken link.
    found = session.scalar(select(InputFile.id).where(InputFile.id == file_id, InputFile.tenant_id == caller.tenant_id)
                           .with_for_update(key_share=True))
    if found is None:
        raise HTTPException(422, {"message": "the submission is refused", "errors": [f"no file {file_id}"]})
    waiting = session.scalar(select(func.count()).where(Batch.tenant_id == caller.tenant_id,
                                                        Batch.status == BatchStatus.VALIDATING))
    most = get_settings().max_validating_batches
    if waiting >= most:  # one tenant's pile of files must not keep every intake from the others'
        raise HTTPException(429, f"{waiting} batches of this tenant are waiting to be checked (at most {most}, "
                                 "AGR_MAX_VALIDATING_BATCHES): try again once one is", headers={"Retry-After": "10"})
    batch = Batch(name=submission.name or "batch", options=submission.options(), tenant_id=caller.tenant_id,
                  status=BatchStatus.VALIDATING, batch_metadata=submission.metadata, input_file_id=file_id,
                  intake=submission.intake(), idempotency_key=idempotency_key, request_sha256=request_sha256,
                  interface=submission.interface)
    session.add(batch)
    session.flush()
    return batch


def validate_next() -> UUID | None:
    """Check the oldest `validating` batch no live intake holds; returns its id (None:
    nothing waiting). The check runs under a lease with no transaction open (it may read
    50,000 files); its result is written in one short transaction at the end, unless the
    batch was cancelled meanwhile."""
    claim = _claim_next()
    if not isinstance(claim, _Claim):
        return claim  # None, or the id of a batch failed for too many attempts
    try:
        with _LeaseKept(claim):
            request = prepare(claim.caller, claim.text, claim.submission, claim.idempotency_key,
                              claim.request_sha256)
        step_ids = _write_batch(claim, request)
    except SubmissionInvalid as exc:
        _write_refusal(claim, exc.errors)
        return claim.batch_id
    except Exception as exc:
        if is_transient(exc):
            _release(claim, exc, transient=True)  # no attempt spent: tried again after a backoff
            return claim.batch_id
        _release(claim, exc)  # the next pass tries again, up to AGR_INTAKE_MAX_ATTEMPTS checks
        raise
    log.info("intake: batch %s checked: %s", claim.batch_id, "queued" if step_ids else "refused or cancelled")
    enqueue_first_steps(step_ids)  # after the commit, as for an inline submission
    return claim.batch_id


@dataclass(frozen=True)
class _Claim:
    """A `validating` batch this intake holds the lease on, with what its check needs."""

    batch_id: UUID
    token: UUID
    caller: Caller
    text: str
    submission: Submission
    idempotency_key: str | None
    request_sha256: str | None


def _claim_next() -> "_Claim | UUID | None":
    settings = get_settings()
    with session_scope() as session:
        batch = session.scalar(_next_in_turn())
        if batch is None:
            return None
        if batch.intake_attempts >= settings.intake_max_attempts:
            # Each check died (a process killed by it, or an error nobody foresaw): refused,
            # so it stops blocking every batch behind it.
            last = (batch.intake or {}).get("last_error") or "the checking process stopped"
            _refuse(batch, [f"the submission could not be checked ({batch.intake_attempts} attempts; last: {last})"])
            return batch.id
        batch.intake_claim, batch.intake_attempts = uuid4(), batch.intake_attempts + 1
        batch.intake_started_at = func.now()
        batch.intake_claimed_until = func.now() + timedelta(seconds=settings.intake_lease_s)
        return _Claim(batch.id, batch.intake_claim, _caller_of(session, batch), _input_text(session, batch),
                      _submission_of(batch), batch.idempotency_key, batch.request_sha256)


def _next_in_turn():
    """The waiting batch to check next, tenants taking turns: the oldest waiting batch of
    the tenant whose latest check began longest ago (or never)."""
    waiting = Batch.status == BatchStatus.VALIDATING
    waiting_tenants = select(Batch.tenant_id).where(waiting)
    turns = (select(Batch.tenant_id, func.max(Batch.intake_started_at).label("last"))
             .where(Batch.intake_started_at.is_not(None), Batch.tenant_id.in_(waiting_tenants))
             .group_by(Batch.tenant_id).subquery())
    free = or_(Batch.intake_claimed_until.is_(None), Batch.intake_claimed_until < func.now())
    return (select(Batch).outerjoin(turns, turns.c.tenant_id == Batch.tenant_id)
            .where(waiting, free)
            .order_by(turns.c.last.asc().nulls_first(), Batch.created_at)
            .limit(1).with_for_update(skip_locked=True, of=Batch))


class _LeaseKept:
    """Renews the claim's lease every third of AGR_INTAKE_LEASE_S while the check runs."""

    def __init__(self, claim: _Claim):
        self.claim, self._done = claim, threading.Event()
        self._thread = threading.Thread(target=self._renew, name="batch-intake-lease", daemon=True)

    def __enter__(self) -> "_LeaseKept":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _renew(self) -> None:
        lease_s = get_settings().intake_lease_s
        while not self._done.wait(lease_s / 3):
            try:
                with session_scope() as session:
                    session.execute(update(Batch).where(Batch.id == self.claim.batch_id,
                                                        Batch.intake_claim == self.claim.token)
                                    .values(intake_claimed_until=func.now() + timedelta(seconds=lease_s)))
            except Exception:  # a database blip: the next renewal, or the final write, tells
                log.warning("intake: renewing the lease on batch %s failed", self.claim.batch_id, exc_info=True)


def _held(session, claim: _Claim) -> Batch | None:
    """The batch, locked after its tenant (the order DELETE takes them), if it is still
    `validating` under this claim: cancelled, or taken over after a lapsed lease, it is not."""
    lock_tenant(session, claim.caller.tenant_id)
    batch = session.scalar(select(Batch).where(Batch.id == claim.batch_id).with_for_update())
    if batch is None or batch.status != BatchStatus.VALIDATING or batch.intake_claim != claim.token:
        return None
    return batch


def _write_batch(claim: _Claim, request: BatchRequest) -> list[int]:
    try:
        with session_scope() as session:
            batch = _held(session, claim)
            if batch is None:
                return []
            try:
                with session.begin_nested():  # a refusal undoes what the commit wrote, not the row's lock
                    _, step_ids = commit(session, request, batch)
            except SubmissionInvalid as exc:  # an upload expired while the batch was checked
                _refuse(batch, exc.errors)
                return []
            except HTTPException as exc:  # a tenant's limit
                _refuse(batch, [exc.detail if isinstance(exc.detail, str) else str(exc.detail)])
                return []
            batch.intake = batch.intake_claim = batch.intake_claimed_until = None
            return step_ids
    finally:
        discard_staged(request.items)  # stored by now, or not to be: either way the copies go


def _write_refusal(claim: _Claim, errors: list[str]) -> None:
    with session_scope() as session:
        if (batch := _held(session, claim)) is not None:
            _refuse(batch, errors)


def _release(claim: _Claim, exc: Exception, transient: bool = False) -> None:
    """Give the batch back after an error, noting it for the refusal that follows the last
    attempt: at once after an unforeseen error; after a backoff, its attempt not spent,
    after a transient one."""
    said = f"{type(exc).__name__}: {exc}"[:500]
    try:
        with session_scope() as session:
            if (batch := _held(session, claim)) is None:
                return
            intake = (batch.intake or {}) | {"last_error": said}
            batch.intake_claimed_until = None
            if transient:
                blips = intake.get("transient_failures", 0)
                wait_s = min(TRANSIENT_WAIT_AT_MOST_S, TRANSIENT_FIRST_WAIT_S * 2 ** blips)
                intake["transient_failures"] = blips + 1
                batch.intake_attempts -= 1
                batch.intake_claimed_until = func.now() + timedelta(seconds=wait_s)
                log.warning("intake: batch %s: %s; checking it again in %.1f s (no attempt spent)",
                            claim.batch_id, said, wait_s)
            batch.intake = intake
    except Exception:  # the database is down too: the lease lapses and another pass retries
        log.warning("intake: could not give batch %s back", claim.batch_id, exc_info=True)


def _refuse(batch: Batch, errors: list[str]) -> None:
    batch.status, batch.errors, batch.ended_at, batch.intake = BatchStatus.FAILED, errors, func.now(), None
    batch.intake_claim = batch.intake_claimed_until = None
    # Its key is freed: the same request again (once the tenant has room, or an expired
    # upload is sent again) makes a new batch instead of answering this failed one.
    batch.idempotency_key = None


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
                      batch.options.get("max_iters"), batch.batch_metadata or {}, intake.get("completion_window"),
                      batch.interface, batch.options.get("answer_samples"), batch.options.get("mechanisms"))


def parse_window(text: str) -> timedelta:
    """A completion window ("24h", "90m") as a duration."""
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[text[-1]]
    return timedelta(**{unit: int(text[:-1])})


INTAKE_THREAD = "batch-intake"  # the name of the thread that checks submitted files

class IntakeLoop:
    """The API process's intake thread: checks `validating` batches one after another,
    woken at once by this process's own submissions, and every AGR_INTAKE_POLL_S for
    those another process recorded (or left behind when it died)."""

    def __init__(self):
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=INTAKE_THREAD, daemon=True)

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
