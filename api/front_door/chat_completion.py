"""A job as the OpenAI API shows a reply: a `chat.completion` (and its stream's chunks).

`message.content` is the short answer a harness scores: the verbatim choice text when the
question had choices (the benchmarks' token rule reads it), else the free answer (an
unmapped reply as it was given). The reasoning goes in `message.reasoning_content`, as
vLLM and DeepSeek return it, never in `content`: the job's trace, a line per step, then
the answering agent's reasoning (a stream sends the same, the trace as it happens). `usage` sums the job's LLM calls. The job
id (`agr.job_id`, and the header x-agr-job-id) leads to its evidence chain.
"""

from sqlalchemy import func, select

from api.front_door.chat_progress import reasoning_with_trace
from models import Job, JobStatus, LLMCall

JOB_ID_HEADER = "x-agr-job-id"


def completion_id(job_id) -> str:
    return f"chatcmpl-{job_id.hex}"


def answer_text(job) -> str:
    return job.answer if job.answer is not None else (job.raw_answer or "")


def usage_by_job(session, job_ids) -> dict:
    """Each job's tokens over its LLM calls ({} for a job without any), in one statement."""
    rows = session.execute(select(LLMCall.job_id, func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
                                  func.coalesce(func.sum(LLMCall.completion_tokens), 0))
                           .where(LLMCall.job_id.in_(list(job_ids))).group_by(LLMCall.job_id))
    return {job_id: _usage(prompt, completion) for job_id, prompt, completion in rows}


def _usage(prompt: int, completion: int) -> dict:
    return {"prompt_tokens": int(prompt), "completion_tokens": int(completion),
            "total_tokens": int(prompt) + int(completion)}


NO_USAGE = _usage(0, 0)


def completion_body(job, model: str, usage: dict | None, trace: list[str]) -> dict:
    """A succeeded job's reply (`job` may be a row of RESULT_COLUMNS); `reasoning_content`
    is its trace (api/front_door/chat_progress.py), then the answering agent's reasoning."""
    return {
        "id": completion_id(job.id), "object": "chat.completion", "created": int(job.created_at.timestamp()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": answer_text(job), "refusal": None,
                                 "reasoning_content": reasoning_with_trace(trace, job.reasoning)}}],
        "usage": usage or NO_USAGE,
        "agr": agr_fields(job),
    }


def agr_fields(job) -> dict:
    return {"job_id": str(job.id), "evidence": f"/v1/jobs/{job.id}/evidence", "console": f"/console/#/job/{job.id}",
            "status": str(job.status),
            "normalisation": job.normalisation, "confidence": job.confidence}


def job_failure(job) -> tuple[int, str, str]:
    """(HTTP status, error code, message) for a job that ended without an answer. A 422,
    not a 5xx or 409: the OpenAI SDK retries those, and its retry would run the job again."""
    if job.status == JobStatus.ERRORED:
        return 422, "job_errored", f"job {job.id} errored: {job.error}"
    return 422, f"job_{job.status}", f"job {job.id} was {job.status} before it answered"


def chunk(job_id, created: int, model: str, delta: dict, finish_reason: str | None = None,
          usage: dict | None = None) -> dict:
    body = {"id": completion_id(job_id), "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}
    if usage is not None:
        body |= {"choices": [], "usage": usage}
    return body


def job_model(job: Job) -> str:
    """The model name the job was asked for (its pipeline when none was recorded)."""
    return (job.item_metadata or {}).get("model") or (job.options or {}).get("pipeline", "agr")
