"""The HTTP API's app factory: `uvicorn --factory api.app:create_app` (or `agr serve`)."""

import asyncio
import json
import logging
import math
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.front_door.held_jobs import HeldJobs
from api.front_door.job_end_listener import JobEndListener
from api.intake.batch_intake import IntakeLoop
from api.openai_errors import error_body
from api.request_guard import RequestGuard, database_unavailable
from api.routes import audio, batches, chat, files, health, jobs, models
from core.database_outage import database_unreachable
from core.transient_errors import RetryLater

log = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).parent / "console"
# The console's pages run the user's key: only its own script, styles and API calls, the
# audio it fetched (blob:), and never inside another site's frame (clickjacking).
CONSOLE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data: blob:; media-src 'self' blob:; font-src 'self'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app() -> FastAPI:
    app = FastAPI(
        title="audiogenie-queue",
        version="0.1.0",
        description="Queue questions about audio in bulk, poll their status, download answers, "
                    "and audit the evidence chain behind each one.",
        lifespan=_lifespan,
    )
    for module in (health, audio, files, batches, jobs, models, chat):
        app.include_router(module.router)
    # The audit console: static pages calling the routes above with the user's key.
    app.mount("/console", _ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console")
    app.add_api_route("/", lambda: RedirectResponse("/console/"), include_in_schema=False)
    # Starlette's stubs want handlers of any Exception; each is only called with its own class.
    app.add_exception_handler(SQLAlchemyError, _database_error)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(RetryLater, _retry_later)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]  # see above
    app.add_exception_handler(StarletteHTTPException, _refused)  # type: ignore[arg-type]  # see above
    # Body limits and the key, before a route reads any of the body (api/request_guard.py).
    app.add_middleware(RequestGuard)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    # Batches submitted as files are checked off the request path, by this thread.
    app.state.intake = IntakeLoop().start()
    # Held chat calls wake when Postgres announces their job's end (api/front_door/job_end_listener.py),
    # or when one read of every held job finds news (api/front_door/held_jobs.py).
    app.state.job_ends = JobEndListener().start()
    app.state.held_jobs = HeldJobs()
    reading = asyncio.create_task(app.state.held_jobs.run(), name="held-jobs")
    yield
    reading.cancel()
    app.state.job_ends.stop()
    app.state.intake.stop()


class _ConsoleFiles(StaticFiles):
    async def get_response(self, path: str, scope):
        response = await super().get_response(path, scope)
        response.headers.update(CONSOLE_HEADERS)
        return response


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own 422, but written so that any input it echoes can be: JSON may spell a
    # lone surrogate ("\ud800", no UTF-8) or NaN, and echoed as they came they made a 500.
    detail = jsonable_encoder(exc.errors())
    return _EscapedJSONResponse(error_body(422, detail), status_code=422)


async def _refused(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # Our `detail` and, beside it, the OpenAI error object its SDK and harnesses read.
    return _EscapedJSONResponse(error_body(exc.status_code, exc.detail, getattr(exc, "error", None)),
                                status_code=exc.status_code, headers=exc.headers)


class _EscapedJSONResponse(JSONResponse):
    def render(self, content) -> bytes:
        return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def _finite(value):
    """`value` with NaN and infinities, which JSON has no number for, as strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def _retry_later(request: Request, exc: RetryLater) -> JSONResponse:
    return _EscapedJSONResponse(error_body(503, str(exc)), status_code=503, headers={"Retry-After": "1"})


async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
    # The database away (down, failing over, a demoted primary, every pooled connection
    # taken) is a 503 clients retry; any other database error is ours, a 500.
    if database_unreachable(exc):
        return database_unavailable(request.scope, exc)
    log.exception("database error on %s %s", request.method, request.url.path, exc_info=exc)
    return _EscapedJSONResponse(error_body(500, "internal error"), status_code=500)
