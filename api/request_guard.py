"""The API's front door, a pure ASGI middleware: what a request may cost is decided before
any byte of its body is read or parsed.

1. Body size: over the route's limit is 413 at once from Content-Length; a body without
   one (chunked) is counted as it streams and refused at the first byte over. POST
   /v1/audio may carry AGR_MAX_AUDIO_BYTES plus multipart framing (api/intake/upload_stream.py
   streams it to disk, never to memory); every other route AGR_MAX_REQUEST_BYTES (FastAPI
   reads a JSON body whole before it parses it).
2. The key, for every /v1 route: a request without a valid one is refused (401, or 429
   past its address's limit) before its body is read, so nobody without a key can make
   the API buffer anything. The caller found is left in the scope for `current_caller`.

A refusal sent while the client may still be sending its body says `Connection: close`,
so the server drops the rest rather than reading it to the end.
"""

import logging

import anyio
from fastapi import HTTPException
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import CALLER_SCOPE_KEY, authenticate, client_address, key_from_headers
from api.intake.upload_stream import PART_OVERHEAD
from api.openai_errors import error_body
from core.database_outage import database_unreachable
from core.settings import get_settings

log = logging.getLogger(__name__)
UPLOAD_ROUTE = ("POST", "/v1/audio")


class BodyTooLarge(HTTPException):
    """Raised from `receive` at the first byte over the limit. An HTTPException, so FastAPI's
    body reading passes it on as it is (any other error there becomes a 400)."""


def body_limit(scope: Scope) -> tuple[int, str]:
    """The route's limit in bytes, and how a refusal names it."""
    settings = get_settings()
    if (scope["method"], scope["path"].rstrip("/")) == UPLOAD_ROUTE:
        return settings.max_audio_bytes + PART_OVERHEAD, f"{settings.max_audio_bytes}-byte limit for audio uploads"
    return settings.max_request_bytes, f"{settings.max_request_bytes}-byte limit for request bodies"


def needs_key(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


class RequestGuard:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        has_body = (length is not None and length != "0") or "transfer-encoding" in headers
        limit, named = body_limit(scope)
        if length is not None and not length.isdigit():
            await _answer(HTTPException(400, "Content-Length is not a number"), scope, receive, send, close=True)
            return
        if length is not None and int(length) > limit:
            refusal = HTTPException(413, f"request body of {int(length)} bytes is over the {named}")
            await _answer(refusal, scope, receive, send, close=True)
            return
        if needs_key(scope["path"]):
            key = key_from_headers(headers.get("authorization"), headers.get("x-api-key"))
            try:
                scope[CALLER_SCOPE_KEY] = await anyio.to_thread.run_sync(authenticate, key, client_address(scope))
            except HTTPException as refusal:
                await _answer(refusal, scope, receive, send, close=has_body)
                return
            except SQLAlchemyError as exc:
                if not database_unreachable(exc):
                    raise
                await database_unavailable(scope, exc)(scope, receive, send)
                return
        if not has_body:
            await self.app(scope, receive, send)
            return

        received, started = 0, False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(413, f"request body is over the {named}", headers={"Connection": "close"})
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge as refusal:  # read outside a route's error handling
            if started:
                raise
            await _answer(refusal, scope, receive, send, close=True)


async def _answer(refusal: HTTPException, scope: Scope, receive: Receive, send: Send, close: bool) -> None:
    headers = dict(refusal.headers or {})
    if close:
        headers["Connection"] = "close"
    await JSONResponse(error_body(refusal.status_code, refusal.detail), status_code=refusal.status_code,
                       headers=headers)(
        scope, receive, send)


def database_unavailable(scope: Scope, exc: Exception) -> JSONResponse:
    # A lost connection is the database being away, not a bug: say so, and let clients retry.
    log.error("database error on %s %s: %s", scope.get("method"), scope.get("path"), exc)
    return JSONResponse(error_body(503, "the database is unavailable; retry shortly"), status_code=503,
                        headers={"Retry-After": "5"})
