"""What every route depends on: a database session per request, and the caller behind the
API key (401 without a valid one, 429 past the key's rate limit)."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api.keys import Caller, caller_for
from api.rate_limit import seconds_until_allowed
from models.db import session_scope

bearer = HTTPBearer(auto_error=False, description="an API key made by `agr keys create`")


def db_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def current_caller(request: Request,
                   credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Caller:
    key = credentials.credentials if credentials else request.headers.get("x-api-key")
    if not key:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    caller = caller_for(key)
    if caller is None:
        raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    wait = seconds_until_allowed(caller.key_id, caller.rate_limit_per_minute)
    if wait:
        raise HTTPException(429, f"rate limit of {caller.rate_limit_per_minute} requests per minute "
                                 "for this key exceeded", headers={"Retry-After": str(wait)})
    return caller


SessionDep = Annotated[Session, Depends(db_session)]
CallerDep = Annotated[Caller, Depends(current_caller)]
