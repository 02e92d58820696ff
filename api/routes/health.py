"""Liveness, readiness (database and broker reachable) and Prometheus metrics. No key
needed: orchestrators and scrapers call these."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from api.metrics import StackCollector
from core.broker_redis import broker_redis
from models.db import session_scope

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


@router.get("/metrics", response_class=Response)
def metrics() -> Response:
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)


def _check_database() -> str:
    try:
        with session_scope() as session:
            session.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:  # any failure means not ready; say which
        return f"error: {type(exc).__name__}: {str(exc)[:200]}"


def _check_broker() -> str:
    try:
        broker_redis().ping()
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {str(exc)[:200]}"
