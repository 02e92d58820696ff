"""A GPU worker's unit of work: its own step plus other queued GPU steps, run together.

The message that woke the worker names one step; Postgres knows the others waiting. The
worker claims up to `gpu_batch_size` of them (each claim is the usual fenced lease, so a
step's own message, arriving later, finds it running or done and does nothing), runs
their model calls as padded batches, then settles each step on its own: one job's bad
audio fails that job's step only.
"""

import time

from sqlalchemy import select

from core.settings import get_settings
from models import Step, StepKind, StepStatus
from models.db import session_scope
from workers.step_claim import StepClaim, claim_step, lease_heartbeat
from workers.step_runner import fail_attempt, settle
from workers.steps import perceive_gpu


def run_gpu_steps(step_id: int) -> None:
    first = claim_step(step_id)
    if first is None:
        return
    settings = get_settings()
    claims = [first] + claim_waiting(settings.gpu_batch_size - 1, settings.gpu_batch_wait_s, exclude=step_id)
    with lease_heartbeat(*claims):
        outcomes = perceive_gpu.execute_many(claims, settings.gpu_batch_size)
    for claim in claims:
        outcome = outcomes[claim.step_id]
        if isinstance(outcome, Exception):
            fail_attempt(claim, outcome)
        else:
            settle(claim, outcome)


def claim_waiting(limit: int, wait_s: float, exclude: int) -> list[StepClaim]:
    """Claim up to `limit` queued GPU steps, waiting up to `wait_s` for them to appear."""
    claims: list[StepClaim] = []
    deadline = time.monotonic() + wait_s
    while len(claims) < limit:
        taken = {c.step_id for c in claims} | {exclude}
        for candidate in _queued_gpu_steps(limit - len(claims), taken):
            claim = claim_step(candidate)  # None: another worker took it first
            if claim is not None:
                claims.append(claim)
        if len(claims) >= limit or time.monotonic() >= deadline:
            break
        time.sleep(min(0.01, wait_s))
    return claims


def _queued_gpu_steps(limit: int, exclude: set[int]) -> list[int]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Step.id)
                .where(Step.kind == StepKind.PERCEIVE_GPU, Step.status == StepStatus.QUEUED,
                       Step.id.not_in(exclude))
                .order_by(Step.id)
                .limit(limit)
            )
        )
