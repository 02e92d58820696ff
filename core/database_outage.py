"""Waiting out an unreachable database (a restart, a fail-over of tens of seconds).

Only errors that mean "the database did not answer" are waited out; a refused statement
(a constraint, bad data, a NUL byte in text) is a real failure and raises at once. The
wait is bounded (AGR_DATABASE_OUTAGE_TOLERANCE_S) and backs off, and the caller may cut it
short (a step whose lease was taken over stops waiting: its result is no longer wanted).
"""

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from core.settings import get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_WAIT_S = 0.2
LONGEST_WAIT_S = 5.0


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database could not be reached (worth waiting out)."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    if isinstance(exc, PoolTimeout):  # every pooled connection busy waiting on a dead server
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def outage_reason(exc: BaseException) -> str:
    """What happened, in one line. SQLAlchemy's message adds the statement and a link on
    further lines; the driver's first line says it ("connection refused", "server closed
    the connection")."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:200]


def through_outage(work: Callable[[], T], what: str, give_up: Callable[[], None] | None = None) -> T:
    """`work()`, tried again with backoff while the database is unreachable, for at most
    the configured tolerance. `give_up` is called before each wait and may raise to stop
    waiting. `work` must be safe to repeat: idempotent writes, or reads."""
    tolerance = get_settings().database_outage_tolerance_s
    started = time.monotonic()
    failures = 0
    while True:
        try:
            result = work()
        except Exception as exc:
            if not database_unreachable(exc) or time.monotonic() - started > tolerance:
                raise
            if failures == 0:
                log.warning("database unreachable while %s; retrying for up to %.0f s: %s",
                            what, tolerance, outage_reason(exc))
            failures += 1
            if give_up is not None:
                give_up()
            wait = min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** min(failures, 10))
            time.sleep(wait * random.uniform(0.5, 1.0))  # jitter: workers do not return in step
            continue
        if failures:
            log.warning("database back after %.1f s while %s", time.monotonic() - started, what)
        return result
