"""The periodic sweeper: re-sends work whose message or worker was lost.

Redis has no dead-letter queue and no redelivery before its visibility timeout, so
Postgres is asked instead: which steps are running under a lease nobody renews (their
worker died), and which have been queued so long that their message must have been lost
(a broker restart, a crash between commit and send)?
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update

from core.settings import get_settings
from models import Job, Step, StepKind, StepStatus
from models.db import session_scope
from models.status import TERMINAL_JOB_STATUSES
from workers.batch_lifecycle import sweep_batches

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepReport:
    expired_leases: int
    stale_queued: int


def sweep() -> SweepReport:
    from workers.step_runner import enqueue_step

    with session_scope() as session:
        expired = _take(session, _expired_leases(), reset_to_queued=True)
        stale = _take(session, _stale_queued(), reset_to_queued=False)
    with session_scope() as session:
        sweep_batches(session)  # expiry windows, and cancels whose last running step ended
    for step_id, kind in expired + stale:
        enqueue_step(step_id, kind)
    if expired or stale:
        log.warning("sweeper re-queued %d lapsed and %d stale steps", len(expired), len(stale))
    return SweepReport(len(expired), len(stale))


def resend_unfinished(batch_id) -> int:
    """Re-send every queued step of a batch's unfinished jobs (after the whole stack
    stopped, say, taking the broker's messages with it). Duplicates are harmless: a step
    is claimed once, and a claimed or finished step ignores a second message."""
    from workers.step_runner import enqueue_step

    with session_scope() as session:
        rows = session.execute(
            select(Step.id, Step.kind)
            .join(Job, Job.id == Step.job_id)
            .where(Job.batch_id == batch_id, Step.status == StepStatus.QUEUED,
                   Job.status.not_in(TERMINAL_JOB_STATUSES))
        ).all()
    for step_id, kind in rows:
        enqueue_step(step_id, kind)
    return len(rows)


def _expired_leases():
    return Step.status == StepStatus.RUNNING, Step.lease_expires_at < func.now()


def _stale_queued():
    age = timedelta(seconds=get_settings().requeue_queued_after_s)
    return Step.status == StepStatus.QUEUED, Step.updated_at < func.now() - age


def _take(session, conditions, reset_to_queued: bool) -> list[tuple[int, StepKind]]:
    rows = session.execute(
        select(Step.id, Step.kind, Step.attempts)
        .join(Job, Job.id == Step.job_id)
        .where(*conditions, Job.status.not_in(TERMINAL_JOB_STATUSES))
        .with_for_update(of=Step, skip_locked=True)  # never block a worker's claim
    ).all()
    for step_id, kind, attempts in rows:
        values = {"updated_at": func.now()}  # one re-send per period, not one per sweep
        if reset_to_queued:
            values |= {
                "status": StepStatus.QUEUED,
                "lease_expires_at": None,
                "last_error": f"attempt {attempts} of the {kind} step never finished: "
                "its worker died or stopped renewing its lease",
            }
        session.execute(update(Step).where(Step.id == step_id).values(**values))
    return [(step_id, kind) for step_id, kind, _ in rows]
