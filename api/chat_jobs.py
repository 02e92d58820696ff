"""A chat completion's job: made once per request, found again by every retry of it.

Each request becomes a batch of one job (`interface` chat), keyed by the client's
Idempotency-Key or, without one, by the sha256 of the request body. A harness that times
out and sends the same request again attaches to the job the first made, running or
finished, instead of queuing a second; the key reused for a different body is a 409.
Only a job that ended without an answer (errored, cancelled, expired) lets a retry make
a new one.
"""

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from api.batch_input import Item, SubmissionInvalid
from api.batch_intake import commit, parse_window
from api.chat_audio import stage_chat_audio
from api.chat_request import ChatQuestion, invalid
from api.keys import Caller
from api.openai_errors import OpenAIError
from api.submission import BatchRequest, enqueue_first_steps
from core.settings import get_settings
from models import Batch, Job, JobStatus
from models.batch import BatchInterface
from models.db import session_scope

CHAT_ENDPOINT = "/v1/chat/completions"
ENDED_UNANSWERED = (JobStatus.ERRORED, JobStatus.CANCELLED, JobStatus.EXPIRED)
CUSTOM_ID = "chat"


@dataclass(frozen=True)
class ChatJob:
    job_id: UUID
    batch_id: UUID
    attached: bool  # an earlier request's job, found again


def job_for(caller: Caller, question: ChatQuestion, request_sha256: str, key: str | None) -> ChatJob:
    """The job answering this request: the one an earlier identical request made, or a new one."""
    key = key or f"chat:{request_sha256}"
    if (earlier := _earlier(caller, key, request_sha256)) is not None:
        return earlier
    settings = get_settings()
    if question.pipeline == "direct" and not settings.alm_model:
        raise invalid("the direct model needs an audio-language model (AGR_ALM_MODEL) on this service", "model")
    staged = stage_chat_audio(question.audio, caller.tenant_id)
    metadata = {"model": question.model} | ({"context": question.context[:4000]} if question.context else {})
    max_iters = settings.max_iters if question.max_iters is None else question.max_iters
    request = BatchRequest(
        name=f"chat: {question.question[:150]}", items=[Item(CUSTOM_ID, staged, question.question, question.choices,
                                                             None, metadata)],
        options={"pipeline": question.pipeline, "max_iters": max_iters}, tenant_id=caller.tenant_id,
        metadata={"endpoint": CHAT_ENDPOINT}, completion_window=parse_window(settings.default_completion_window),
        idempotency_key=key, request_sha256=request_sha256, interface=BatchInterface.CHAT,
    )
    try:
        with session_scope() as session:
            batch_id, step_ids = commit(session, request)
    except SubmissionInvalid as exc:  # its upload expired meanwhile
        raise invalid(exc.errors[0], "messages", "file_not_found") from None
    except IntegrityError:  # the same request, sent again at once, made it first
        if (earlier := _earlier(caller, key, request_sha256)) is not None:
            return earlier
        raise
    enqueue_first_steps(step_ids)  # after the commit: no message without its state
    with session_scope() as session:
        job_id = session.scalar(select(Job.id).where(Job.batch_id == batch_id))
    return ChatJob(job_id, batch_id, attached=False)


def _earlier(caller: Caller, key: str, request_sha256: str) -> ChatJob | None:
    with session_scope() as session:
        found = session.execute(select(Batch, Job).join(Job, Job.batch_id == Batch.id)
                                .where(Batch.tenant_id == caller.tenant_id, Batch.idempotency_key == key)
                                .with_for_update(of=Batch)).one_or_none()
        if found is None:
            return None
        batch, job = found
        if batch.request_sha256 != request_sha256:
            raise OpenAIError(409, "this Idempotency-Key was used for a different request", code="idempotency_conflict")
        if job.status in ENDED_UNANSWERED:
            batch.idempotency_key = None  # freed: this retry makes a new job
            return None
        return ChatJob(job.id, batch.id, attached=True)
