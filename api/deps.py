"""What every route depends on: a database session per request, and the caller behind the
API key (401 without a valid one, 429 past the tenant's rate limit, or past the address's
limit of requests without a valid key).

The key is checked by api/request_guard.py before any byte of the body is read; the
dependency hands on the caller it found (and checks by itself only in an app built
without the guard)."""

from collections.abc import Iterator
from typing import Annotated, NoReturn

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.keys import Caller, caller_for
from api.rate_limit import tenant_wait, unauthenticated_wait
from core.settings import get_settings
from models.db import session_scope

bearer = HTTPBearer(auto_error=False, description="an API key made by `agr keys create`")
CALLER_SCOPE_KEY = "agr.caller"  # where the guard leaves the caller in the ASGI scope


def db_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """The API key as `Authorization: Bearer <key>` or `X-API-Key: <key>` carry it."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return x_api_key or None


def authenticate(key: str | None, address: str) -> Caller:
    """The caller behind `key`, or the HTTPException to answer with. Blocking (Postgres and
    Redis): run it in a thread from async code."""
    if not key:
        _refuse_unauthenticated(address, "missing API key: send 'Authorization: Bearer <key>'")
    caller = caller_for(key)
    if caller is None:
        _refuse_unauthenticated(address, "invalid or revoked API key")
    wait = tenant_wait(caller.tenant_id, caller.rate_limit_per_minute)
    if wait:
        raise HTTPException(429, f"rate limit of {caller.rate_limit_per_minute} requests per minute "
                                 "for this tenant exceeded", headers={"Retry-After": str(wait)})
    return caller


def _refuse_unauthenticated(address: str, reason: str) -> NoReturn:
    limit = get_settings().unauthenticated_rate_limit_per_minute
    wait = unauthenticated_wait(address, limit)
    if wait:
        raise HTTPException(429, f"more than {limit} requests per minute without a valid API key "
                                 "from this address", headers={"Retry-After": str(wait)})
    raise HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def client_address(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def current_caller(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    found = request.scope.get(CALLER_SCOPE_KEY)
    if found is not None:
        return found
    key = credentials.credentials if credentials else request.headers.get("x-api-key")
    return authenticate(key, client_address(request.scope))


SessionDep = Annotated[Session, Depends(db_session)]
CallerDep = Annotated[Caller, Depends(current_caller)]
