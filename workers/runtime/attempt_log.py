"""The audit's record of each execution of a step (models/step_attempt.py).

Each function (and the claim's own statement, workers/runtime/step_claim.py) runs in the caller's
transaction, so an attempt is recorded exactly when its claim or its end is: a claim that
rolled back left no row, an end that rolled back left the attempt open.
"""

import os
import socket

from sqlalchemy import func, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from models import StepAttempt

LAPSED = "lapsed: its worker died or stopped renewing its lease"


def worker() -> str:
    """Who runs an attempt: host and process id. Read each time: a prefork child is not
    the process this module loaded in."""
    return f"{socket.gethostname()}:{os.getpid()}"[:300]


def started(session, step_id: int, attempt: int) -> None:
    """(A claim opens its attempt's row in its own statement: workers/runtime/step_claim.py.)"""
    session.execute(insert(StepAttempt).values(step_id=step_id, attempt=attempt, worker=worker())
                    .on_conflict_do_nothing(index_elements=["step_id", "attempt"]))


def ended(session, step_id: int, attempt: int, outcome: str) -> None:
    ended_many(session, [(step_id, attempt)], outcome)


def ended_many(session, attempts: list[tuple[int, int]], outcome: str) -> None:
    """End these (step id, attempt) executions that are still open."""
    if attempts:
        session.execute(update(StepAttempt)
                        .where(tuple_(StepAttempt.step_id, StepAttempt.attempt).in_(attempts),
                               StepAttempt.outcome.is_(None))
                        .values(outcome=outcome[:2000], ended_at=func.now()))
