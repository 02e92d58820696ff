"""A batch's output and error files, streamed: ours (api/presenters.py's `result_line`)
or the OpenAI Batch API's (`batch_api_line`), from the same job rows.

A file is sent in chunks of RESULT_CHUNK jobs in custom_id order, each chunk read after
the one before was sent, by keyset (custom_id > the last one sent) in a short transaction
of its own: memory stays one chunk whatever the batch's size, and a slow download holds
no connection of the pool between chunks. The first chunk is read by the caller's
session, so a missing batch is a 404 and an unreachable database a 503, not a broken
stream.
"""

import json
from uuid import UUID

from fastapi.responses import StreamingResponse
from sqlalchemy import select

from api.front_door.chat_completion import completion_body, job_failure, job_model, usage_by_job
from api.front_door.chat_progress import traces
from api.openai_errors import error_object
from api.presenters import RESULT_COLUMNS, result_line
from models import Job, JobStatus
from models.db import session_scope

RESULT_CHUNK = 1000  # jobs per chunk of an output or error file
OUTPUT_STATUSES = (JobStatus.SUCCEEDED,)
ERROR_STATUSES = (JobStatus.ERRORED, JobStatus.CANCELLED, JobStatus.EXPIRED)


def native_lines(rows) -> str:
    return "".join(json.dumps(result_line(row), ensure_ascii=False) + "\n" for row in rows)


def batch_api_lines(rows) -> str:
    """Lines as the OpenAI Batch API writes them: `{"id", "custom_id", "response":
    {"status_code", "request_id", "body"}, "error"}`; a request that was never answered
    (cancelled, expired) has no response and an `error` with the reason."""
    answered = [r.id for r in rows if r.status == JobStatus.SUCCEEDED]
    with session_scope() as session:
        usage, trace = usage_by_job(session, answered), traces(session, answered)
    return "".join(json.dumps(batch_api_line(row, usage.get(row.id), trace.get(row.id, [])), ensure_ascii=False)
                   + "\n" for row in rows)


def batch_api_line(row, usage: dict | None, trace: list[str]) -> dict:
    line = {"id": f"batch_req_{row.id.hex}", "custom_id": row.custom_id, "response": None, "error": None}
    if row.status == JobStatus.SUCCEEDED:
        line["response"] = {"status_code": 200, "request_id": str(row.id),
                            "body": completion_body(row, job_model(row), usage, trace)}
    elif row.status == JobStatus.ERRORED:  # as the chat endpoint answers an errored job
        status, code, message = job_failure(row)
        error = error_object(status, message, code=code, error_type="server_error")
        line["response"] = {"status_code": status, "request_id": str(row.id), "body": {"error": error}}
    else:
        line["error"] = {"code": f"batch_{row.status}", "message": f"the batch was {row.status} before this "
                                                                     "request was answered"}
    return line


def result_file(session, batch_id: UUID, statuses, render=native_lines) -> StreamingResponse:
    first = _chunk(session, batch_id, statuses, after=None)
    return StreamingResponse(_chunks(batch_id, statuses, first, render), media_type="application/x-ndjson")


def file_size(session, batch_id: UUID, statuses, render) -> int:
    """The file's bytes, by rendering it (GET /v1/files/{id} of an output file)."""
    size, rows = 0, _chunk(session, batch_id, statuses, after=None)
    for text in _chunks(batch_id, statuses, rows, render):
        size += len(text.encode())
    return size


def _chunk(session, batch_id: UUID, statuses, after: str | None) -> list:
    query = select(*RESULT_COLUMNS).where(Job.batch_id == batch_id, Job.status.in_(statuses))
    if after is not None:
        query = query.where(Job.custom_id > after)
    return session.execute(query.order_by(Job.custom_id).limit(RESULT_CHUNK)).all()


def _chunks(batch_id: UUID, statuses, rows: list, render):
    while True:
        if rows:
            yield render(rows)
        if len(rows) < RESULT_CHUNK:
            return
        with session_scope() as session:
            rows = _chunk(session, batch_id, statuses, after=rows[-1].custom_id)
