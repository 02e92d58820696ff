"""The periodic sweeper: re-sends work whose message or worker was lost.

Redis has no dead-letter queue and no redelivery before its visibility timeout, so
Postgres is asked instead: which steps are running under a lease nobody renews (their
worker died), and which have been queued so long that their message must have been lost
(a crash between commit and send, a worker killed after taking a message and before
claiming its step)? Two signs let a lost message be re-sent sooner than that:

- the step's broker queue is empty, yet the step has been queued a while: its message is
  not waiting anywhere (`AGR_LOST_MESSAGE_AFTER_S`);
- the broker lost everything at once (Redis restarted without persistence, or flushed):
  the marker key each sweep leaves in it is gone, and every queued step is sent again.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy import BigInteger, any_, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from core.broker_redis import broker_redis
from core.settings import get_settings
from models import Job, Step, StepKind, StepStatus
from models.db import session_scope
from models.status import TERMINAL_JOB_STATUSES
from workers.batch_lifecycle import sweep_batches
from workers.dispatch import send_step
from workers.routing import STEP_ROUTES

log = logging.getLogger(__name__)


BROKER_MARKER_KEY = "agr:sweeper-marker"  # absent: the broker's contents were lost


@dataclass(frozen=True)
class BrokerView:
    emptied: bool  # the marker was gone: every message went with it
    idle_kinds: tuple[StepKind, ...]  # step kinds whose queue holds no message now


@dataclass(frozen=True)
class SweepReport:
    expired_leases: int
    stale_queued: int
    broker_was_emptied: bool = False


def sweep() -> SweepReport:
    broker = look_at_broker()
    with session_scope() as session:
        expired = _take(session, _expired_leases(), reset_to_queued=True)
        stale = _take(session, _queued_whose_message_is_lost(broker), reset_to_queued=False)
    with session_scope() as session:
        sweep_batches(session)  # expiry windows, and cancels whose last running step ended
    for step_id, kind in expired + stale:
        send_step(step_id, kind)
    if expired or stale:
        log.warning("sweeper re-queued %d lapsed and %d stale steps%s", len(expired), len(stale),
                    " (the broker had lost its contents)" if broker.emptied else "")
    return SweepReport(len(expired), len(stale), broker.emptied)


def look_at_broker() -> BrokerView:
    """Leave the marker in the broker, noting whether it was missing (first sweep, a Redis
    restart that kept nothing, a flush), and see which queues are empty. Duplicates sent on
    either sign are harmless: a step is claimed once. An unreachable broker shows nothing:
    nothing could be sent to it anyway."""
    try:
        client = broker_redis()
        emptied = bool(client.set(BROKER_MARKER_KEY, "1", nx=True))
        idle = tuple(kind for kind in StepKind if client.llen(STEP_ROUTES[kind].queue) == 0)
        return BrokerView(emptied, idle)
    except (redis.RedisError, OSError):
        return BrokerView(False, ())


def resend_unfinished(batch_id) -> int:
    """Re-send every queued step of a batch's unfinished jobs (after the whole stack
    stopped, say, taking the broker's messages with it). Duplicates are harmless: a step
    is claimed once, and a claimed or finished step ignores a second message."""
    with session_scope() as session:
        rows = session.execute(
            select(Step.id, Step.kind)
            .join(Job, Job.id == Step.job_id)
            .where(Job.batch_id == batch_id, Step.status == StepStatus.QUEUED,
                   Job.status.not_in(TERMINAL_JOB_STATUSES))
        ).all()
    for step_id, kind in rows:
        send_step(step_id, kind)
    return len(rows)


def _expired_leases():
    return Step.status == StepStatus.RUNNING, Step.lease_expires_at < func.now()


def _queued_whose_message_is_lost(broker: BrokerView):
    queued = Step.status == StepStatus.QUEUED
    if broker.emptied:
        return (queued,)
    settings = get_settings()
    lost = Step.updated_at < func.now() - timedelta(seconds=settings.requeue_queued_after_s)
    if broker.idle_kinds:
        waited = Step.updated_at < func.now() - timedelta(seconds=settings.lost_message_after_s)
        lost = or_(lost, Step.kind.in_(broker.idle_kinds) & waited)
    return queued, lost


def _take(session, conditions, reset_to_queued: bool) -> list[tuple[int, StepKind]]:
    rows = session.execute(
        select(Step.id, Step.kind)
        .join(Job, Job.id == Step.job_id)
        .where(*conditions, Job.status.not_in(TERMINAL_JOB_STATUSES))
        .with_for_update(of=Step, skip_locked=True)  # never block a worker's claim
    ).all()
    if not rows:
        return []
    values = {"updated_at": func.now()}  # one re-send per period, not one per sweep
    if reset_to_queued:
        values |= {
            "status": StepStatus.QUEUED,
            "lease_expires_at": None,
            "last_error": func.concat("attempt ", Step.attempts, " of the ", Step.kind, " step never "
                                      "finished: its worker died or stopped renewing its lease"),
        }
    # One statement for them all: after a broker loss that is every queued step, and the
    # rows stay locked (workers' claims wait) until this transaction ends.
    ids = bindparam("ids", [step_id for step_id, _ in rows], type_=ARRAY(BigInteger))
    session.execute(update(Step).where(Step.id == any_(ids)).values(**values))
    return [(step_id, kind) for step_id, kind in rows]
