"""A chat completion's job: made once per request, found again by every retry of it.

Each request becomes a batch of one job (`interface` chat), keyed by the client's
Idempotency-Key or, without one, by the sha256 of the request body. A harness that times
out and sends the same request again attaches to the job the first made, while it runs
and for AGR_CHAT_REPLAY_PERIOD_S after it answered, instead of queuing a second; the key
reused for a different body (or one a batch holds) is a 409. A job that ended without an
answer (errored, cancelled, expired), or answered longer ago than the replay period, gives its
key up: the request is then asked afresh.
"""

from datetime import datetime, timedelta, timezone
from typing import cast
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.intake.audio_ingest import put_items
from api.intake.batch_input import BATCH_API_ENDPOINT, Item, SubmissionInvalid
from api.intake.batch_intake import commit, parse_window
from api.intake.chat_audio import stage_chat_audio
from api.intake.chat_request import ChatQuestion, invalid
from api.intake.submission import BatchRequest, enqueue_first_steps
from api.keys import Caller
from api.openai_errors import OpenAIError
from core.settings import get_settings
from models import Batch, Job, JobStatus
from models.batch import BatchInterface
from models.db import session_scope

ENDED_UNANSWERED = (JobStatus.ERRORED, JobStatus.CANCELLED, JobStatus.EXPIRED)
CUSTOM_ID = "chat"


def job_for(caller: Caller, question: ChatQuestion, request_sha256: str, key: str | None) -> UUID:
    """The id of the job answering this request: the one an earlier identical request
    made, or a new one."""
    key = key or f"chat:{request_sha256}"
    for _ in range(2):  # a concurrent identical request may win the key, or end and free it
        if (earlier := _earlier(caller, key, request_sha256)) is not None:
            return earlier
        try:
            return _new_job(caller, question, request_sha256, key)
        except IntegrityError:
            continue
    raise OpenAIError(409, "this request is being made by another call at the same time; send it again",
                      code="idempotency_conflict", headers={"Retry-After": "1"})


def _new_job(caller: Caller, question: ChatQuestion, request_sha256: str, key: str) -> UUID:
    settings = get_settings()
    staged = stage_chat_audio(question.audio, caller.tenant_id)
    # Into the store before the transaction: the put holds no lock another request waits on.
    items = put_items([Item(CUSTOM_ID, staged, question.question, question.choices, None, question.item_metadata())])
    request = BatchRequest(
        name=f"chat: {question.question[:150]}", items=items,
        options={"max_iters": settings.max_iters} | question.item_options(), tenant_id=caller.tenant_id,
        metadata={"endpoint": BATCH_API_ENDPOINT}, completion_window=parse_window(settings.default_completion_window),
        idempotency_key=key, request_sha256=request_sha256, interface=BatchInterface.CHAT,
    )
    try:
        with session_scope() as session:
            batch_id, step_ids = commit(session, request)
    except SubmissionInvalid as exc:  # its upload expired meanwhile
        raise invalid(exc.errors[0], "messages", "file_not_found") from None
    enqueue_first_steps(step_ids)  # after the commit: no message without its state
    with session_scope() as session:
        # The batch just committed holds one job; only a delete racing this could take it (None, as before).
        return cast(UUID, session.scalar(select(Job.id).where(Job.batch_id == batch_id)))


def _earlier(caller: Caller, key: str, request_sha256: str) -> UUID | None:
    """The job an earlier request with this key made, if a retry should attach to it."""
    with session_scope() as session:
        batch = session.scalar(select(Batch).where(Batch.tenant_id == caller.tenant_id, Batch.idempotency_key == key)
                               .with_for_update())
        if batch is None:
            return None
        if batch.interface != BatchInterface.CHAT or batch.request_sha256 != request_sha256:
            raise OpenAIError(409, "this Idempotency-Key was used for a different request", code="idempotency_conflict")
        job = session.scalar(select(Job).where(Job.batch_id == batch.id))
        if job is not None and job.status not in ENDED_UNANSWERED and not _stale(job):
            return job.id
        batch.idempotency_key = None  # given up: this request makes a new job
        return None


def _stale(job: Job) -> bool:
    """Answered longer ago than a retry could still be asking for it."""
    period = timedelta(seconds=get_settings().chat_replay_period_s)
    return job.finished_at is not None and job.finished_at < datetime.now(timezone.utc) - period
