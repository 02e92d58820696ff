"""Liveness, readiness (database and broker reachable) and Prometheus metrics. No API key:
orchestrators and scrapers call these. Readiness says only "ok" or "unavailable" per check
(the cause goes to the log, not to whoever asks); /metrics answers only the metrics token
(AGR_METRICS_TOKEN as a bearer token), and without one configured it is not served (404)."""

import hmac
import logging

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from api.deps import client_address, key_from_headers
from api.metrics import StackCollector
from api.rate_limit import unauthenticated_wait
from core.broker_redis import broker_redis
from core.settings import get_settings
from models.db import session_scope

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
_registry = CollectorRegistry()
_registry.register(StackCollector())


@router.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the database or the broker cannot be reached"}})
def readyz() -> JSONResponse:
    checks = {"database": _check_database(), "broker": _check_broker()}
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(request: Request) -> Response:
    token = get_settings().metrics_token
    if token is None or not token.get_secret_value():
        raise HTTPException(404, "Not Found")
    given = key_from_headers(request.headers.get("authorization"), None) or ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        settings = get_settings()
        wait = unauthenticated_wait(client_address(request.scope), settings.unauthenticated_rate_limit_per_minute)
        if wait:
            raise HTTPException(429, "too many requests without a valid token", headers={"Retry-After": str(wait)})
        raise HTTPException(401, "send the metrics token: 'Authorization: Bearer <AGR_METRICS_TOKEN>'",
                            headers={"WWW-Authenticate": "Bearer"})
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)


def _check_database() -> str:
    try:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
        return "ok"
    except Exception:  # any failure means not ready; the cause is for the log only
        log.warning("readiness: the database is unavailable", exc_info=True)
        return "unavailable"


def _check_broker() -> str:
    try:
        broker_redis().ping()
        return "ok"
    except Exception:
        log.warning("readiness: the broker is unavailable", exc_info=True)
        return "unavailable"
