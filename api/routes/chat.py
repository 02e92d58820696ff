"""POST /v1/chat/completions: one question about one clip, in the OpenAI request shape,
answered by the pipeline the `model` names (api/intake/chat_request.py reads the request,
api/front_door/chat_jobs.py makes or finds its job, api/front_door/chat_completion.py shows the reply).

The call is held open until the job ends, at most AGR_CHAT_TIMEOUT_S; past it, 504 with
the job id (it goes on: poll GET /v1/jobs/{id}, or send the same request again to wait
on it once more). `stream: true` sends server-sent events: the progress as
`reasoning_content` deltas, one per finished step, then the answer as the content delta.
"""

import asyncio
import hashlib
import json
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CallerDep
from api.front_door.chat_completion import JOB_ID_HEADER, chunk, completion_body, job_failure, usage_by_job
from api.front_door.chat_jobs import job_for
from api.front_door.chat_progress import JobWatch, traces
from api.front_door.job_end_listener import Waiter
from api.intake.chat_request import invalid, read_chat_request
from api.openai_errors import OpenAIError, error_object
from core.settings import get_settings
from models import JobStatus
from models.db import session_scope

log = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])
KEEP_ALIVE_S = 15.0  # an SSE comment this often, so proxies keep a quiet stream open


@router.post("/v1/chat/completions",
             responses={400: {"description": "the request is refused; `error` says why, nothing was queued"},
                        404: {"description": "unknown model, or an uploaded clip that is not the tenant's"},
                        409: {"description": "Idempotency-Key reused for a different request"},
                        413: {"description": "the audio is over AGR_MAX_AUDIO_BYTES"},
                        422: {"description": "the job ended without an answer (errored, cancelled, expired)"},
                        504: {"description": "not answered within AGR_CHAT_TIMEOUT_S; the job goes on"}})
async def create(request: Request, caller: CallerDep,
                 idempotency_key: Annotated[str | None, Header(max_length=200)] = None):
    """A chat completion, as the OpenAI API takes it, with the clip as a content part."""
    # Read as a stream, not request.body(), which keeps its copy on the request for as long
    # as the call is held: the clip, base64, for every held call.
    raw = b"".join([part async for part in request.stream()])
    # Off the event loop: a 256 MiB body takes a while to parse and hash, and others wait meanwhile.
    question, digest = await run_in_threadpool(_read, raw)
    del raw
    job_id = await run_in_threadpool(job_for, caller, question, digest, idempotency_key)
    headers = {JOB_ID_HEADER: str(job_id)}
    watch = JobWatch(job_id)
    model, stream, include_usage = question.model, question.stream, question.include_usage
    del question  # its decoded clip is stored; the wait needs none of it
    if stream:
        return StreamingResponse(_events(request, watch, model, include_usage),
                                 media_type="text/event-stream", headers=headers | {"Cache-Control": "no-cache"})
    job = await _wait(request, watch)
    if job is CLIENT_LEFT:  # nobody reads the answer
        return JSONResponse({}, status_code=499)
    if (error := _refusal(job, job_id)) is not None:
        raise OpenAIError(**error, headers=headers)
    return JSONResponse(await run_in_threadpool(_reply, job, model), headers=headers)


def _read(raw: bytes):
    """The question the body asks, and the body's sha256 (what a retry is known by)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid("the request body is not valid JSON") from None
    return read_chat_request(body), hashlib.sha256(raw).hexdigest()


async def _wait(request: Request, watch: JobWatch, on_progress=None):
    """The job once it ended; TIMED_OUT past the ceiling; CLIENT_LEFT if the client left
    first; None if it was deleted meanwhile.
    Read once, then again each time there is news of it: its end announced
    (api/front_door/job_end_listener.py), or found by the process's one read of every held job
    (api/front_door/held_jobs.py). A stream (`on_progress`) is told each step done; its client leaving
    is seen by the StreamingResponse, which cancels this wait; otherwise this waits for
    the client's disconnect itself."""
    state = request.app.state
    deadline = time.monotonic() + get_settings().chat_timeout_s
    streamed = on_progress is not None
    with Waiter(getattr(state, "job_ends", None), watch.job_id) as news, \
            state.held_jobs.hold(watch.job_id, news, streamed):
        # The client leaving is news too: one event wakes the call, and no task is made per
        # wait (a thousand held calls each kept one, with its frame and callbacks).
        left = None
        if not streamed:
            left = asyncio.ensure_future(_client_left(request))
            left.add_done_callback(lambda _: news.set())
        try:
            while True:
                news.clear()  # before the read: news after it is not missed
                job, lines = await run_in_threadpool(watch.read)
                if streamed and lines:
                    await on_progress(lines)
                if job is None or job.status.is_terminal:  # None: deleted meanwhile
                    return job
                job = None  # not kept while waiting: a thousand held calls would each hold a row
                if time.monotonic() >= deadline:
                    return TIMED_OUT
                if left is not None and left.done():
                    return CLIENT_LEFT
                try:
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await news.wait()
                except TimeoutError:
                    pass
        finally:
            if left is not None:
                left.cancel()


async def _client_left(request: Request) -> None:
    """Returns when the client disconnects (its body was read: the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


TIMED_OUT, CLIENT_LEFT = object(), object()


def _refusal(job, job_id) -> dict | None:
    """OpenAIError's fields for a call that has no answer to give; None when it has one."""
    if job is TIMED_OUT:
        return {"status": 504, "message": f"job {job_id} has not answered within {get_settings().chat_timeout_s:g} s "
                                          f"(AGR_CHAT_TIMEOUT_S); it goes on: poll GET /v1/jobs/{job_id}, or send "
                                          "the same request again to wait for it", "code": "timeout"}
    if job is None:
        return {"status": 404, "message": f"job {job_id} was deleted before it answered", "code": "job_deleted"}
    if job.status != JobStatus.SUCCEEDED:
        status, code, message = job_failure(job)
        return {"status": status, "message": message, "code": code, "error_type": "server_error"}
    return None


def _reply(job, model: str) -> dict:
    with session_scope() as session:
        usage = usage_by_job(session, [job.id]).get(job.id)
        trace = traces(session, [job.id]).get(job.id, [])
    return completion_body(job, model, usage, trace)


async def _events(request: Request, watch: JobWatch, model: str, include_usage: bool):
    created = int(time.time())
    queue: asyncio.Queue = asyncio.Queue()

    async def progress(lines):
        for line in lines:
            await queue.put(chunk(watch.job_id, created, model, {"reasoning_content": line + "\n"}))

    yield _event(chunk(watch.job_id, created, model, {"role": "assistant", "content": ""}))
    waiting = asyncio.ensure_future(_wait(request, watch, progress))
    try:
        while not waiting.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, waiting}, timeout=KEEP_ALIVE_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield _event(getter.result())
                continue
            getter.cancel()
            if not done:
                yield ": keep-alive\n\n"
        while not queue.empty():  # the last lines, queued before the job's end was seen
            yield _event(queue.get_nowait())
    finally:
        waiting.cancel()  # the client left mid-stream: stop watching (the job goes on)
    try:
        job = waiting.result()
        events = await run_in_threadpool(_final_events, job, watch.job_id, created, model, include_usage)
    except Exception as exc:  # the headers are sent: say so in the stream, not as a broken one
        log.exception("chat stream of job %s failed", watch.job_id)
        events = [_event({"error": error_object(500, f"the stream failed: {type(exc).__name__}",
                                                error_type="server_error")})]
    for event in events:
        yield event
    yield "data: [DONE]\n\n"


def _final_events(job, job_id, created: int, model: str, include_usage: bool) -> list[str]:
    if (refusal := _refusal(job, job_id)) is not None:
        return [_event({"error": error_object(refusal["status"], refusal["message"], code=refusal["code"],
                                              error_type=refusal.get("error_type"))})]
    body = _reply(job, model)
    events = [_event(chunk(job.id, created, model, {"reasoning_content": job.reasoning or ""}))]
    events.append(_event(chunk(job.id, created, model, {"content": body["choices"][0]["message"]["content"]},
                               finish_reason="stop") | {"agr": body["agr"]}))
    if include_usage:
        events.append(_event(chunk(job.id, created, model, {}, usage=body["usage"])))
    return events


def _event(data: dict) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
