"""The sweeper: takes back lapsed leases, re-sends lost messages, tops up the windows.

One pass (`Sweeper.sweep`), run every AGR_SWEEP_INTERVAL_S by workers/runtime/sweeper_loop.py in
a process of its own, so no backlog of work can delay it. Postgres says what to do:

- a running step whose lease nobody renews belonged to a worker that died: it is made
  queued again, its message sent ahead of the queue's backlog;
- a queued step whose message went out (workers/runtime/outbox.py numbers each one) is lost if a
  consumer of its queue claimed a step whose message came later in the same lane, at least
  AGR_LOST_MESSAGE_AFTER_S ago (a lane is consumed in order: it is not waiting behind
  anything), or if its lane has been empty that long: it is sent again, urgently;
- the broker lost everything at once (Redis restarted without persistence, or flushed):
  the marker key each pass leaves in it is gone, and every step whose message was in a
  window is sent again (the backlog behind the windows waits in Postgres: it lost nothing);
- each queue's window is topped up with due steps in the fair order (workers/runtime/outbox.py):
  the backstop of the workers' own top-ups, for a queue nobody claims from or commits to
  just now (a retry's backoff ran out, a crash between a commit and its top-up);
- batches past their window are expired, and cancels whose last step ended are settled;
  steps of jobs that ended first, queued or abandoned by a dead worker, are settled.

The first pass after this sweeper could not reach the database (or after a stall longer
than a lease) does not take back lapsed leases: their workers may have been waiting out
the same outage and renew them within a second of its end. It gives them one more lease
instead; a dead worker's step is taken back a lease later. A sweeper that merely
(re)started finds the database as the workers did: what lapsed, lapsed.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from sqlalchemy import BigInteger, ColumnElement, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from core.broker_redis import broker_redis, lane_key
from core.settings import get_settings
from models import Job, Step, StepStatus
from models.db import session_scope
from models.status import TERMINAL_JOB_STATUSES, JobStatus
from workers.runtime import attempt_log, outbox
from workers.runtime.batch_lifecycle import sweep_batches
from workers.runtime.routing import NORMAL_PRIORITY, QUEUES, STEP_ROUTES, URGENT_PRIORITY

log = logging.getLogger(__name__)


ENDED_EARLY = (JobStatus.CANCELLED, JobStatus.EXPIRED)
BROKER_MARKER_KEY = "agr:sweeper-marker"  # absent: the broker's contents were lost
FIRST_LOOK_BACK_S = 600.0  # how far back a new sweeper reads claims to learn each queue's progress


@dataclass(frozen=True)
class BrokerView:
    emptied: bool  # the marker was gone: every message went with it
    idle_lanes: tuple[tuple[str, int], ...]  # (queue, priority) lanes holding no message now


@dataclass(frozen=True)
class SweepReport:
    lapsed_leases: int
    lost_messages: int
    relayed: int  # sent by the pass's top-up of the windows
    broker_was_emptied: bool = False
    leases_extended: int = 0


@dataclass
class Sweeper:
    """The state a sweeper keeps between passes: how far each queue's consumers have got."""

    # (queue, priority lane) -> the highest message number a consumer claimed in it
    passed: dict[tuple[str, int], int] = field(default_factory=dict)
    claims_read_until: object = None  # database time up to which claims were read
    last_pass_at: float | None = None  # monotonic time of the last pass that reached the database
    # Set by workers/runtime/sweeper_loop.py when it could not reach the database: the workers may
    # have been cut off as well, so the next pass gives lapsed leases one more lease.
    database_was_unreachable: bool = False

    def sweep(self) -> SweepReport:
        lease_s = get_settings().step_lease_s
        started = time.monotonic()
        missed = (self.database_was_unreachable or
                  (self.last_pass_at is not None and started - self.last_pass_at > lease_s))
        broker = look_at_broker()
        with session_scope() as session:
            if missed:
                extended, lapsed = _extend_lapsed_leases(session), []
            else:
                extended, lapsed = 0, _take_back_lapsed_leases(session)
            self._read_progress(session)
            lost = _mark_lost(session, broker, self.passed)
        with session_scope() as session:
            sweep_batches(session)  # expiry windows, and cancels whose last running step ended
            _retire_steps_of_ended_jobs(session)
        # The pass reached the database: from when it started, not after its sends (a long
        # top-up is not a gap in which workers may have been cut off).
        self.last_pass_at, self.database_was_unreachable = started, False
        outbox.send_now(lapsed + lost, urgent=True)  # those not sent stay due, for a top-up
        relayed = outbox.top_up(wait=True, least=1)  # routine with a backlog: not worth a warning
        if lapsed or lost or extended:
            log.warning("sweeper: %d lapsed lease(s) taken back, %d lost message(s) re-sent, %d sent by top-ups%s%s",
                        len(lapsed), len(lost), relayed,
                        " (the broker had lost its contents)" if broker.emptied else "",
                        f", {extended} lapsed lease(s) given one more lease after an outage" if extended else "")
        return SweepReport(len(lapsed), len(lost), relayed, broker.emptied, extended)

    def _read_progress(self, session) -> None:
        """Raise each lane's mark to the highest message number a consumer claimed through
        its message at least `lost_message_after_s` ago (a claim newer than that may have
        overtaken an earlier message still being delivered)."""
        settled_before = func.now() - timedelta(seconds=get_settings().lost_message_after_s)
        since = self.claims_read_until or func.now() - timedelta(seconds=FIRST_LOOK_BACK_S)
        rows = session.execute(
            select(Step.kind, Step.sent_priority, func.max(Step.claimed_seq))
            .where(Step.claimed_at > since, Step.claimed_at <= settled_before, Step.claimed_seq.is_not(None))
            .group_by(Step.kind, Step.sent_priority)
        ).all()
        self.claims_read_until = session.scalar(select(settled_before))
        for kind, priority, seq in rows:
            lane = (STEP_ROUTES[kind].queue, priority)
            self.passed[lane] = max(self.passed.get(lane, 0), seq)


def look_at_broker() -> BrokerView:
    """Leave the marker in the broker, noting whether it was missing (first sweep, a Redis
    restart that kept nothing, a flush), and see which lanes of the queues are empty. Duplicates sent on
    either sign are harmless: a step is claimed once. An unreachable broker shows nothing:
    nothing could be sent to it anyway."""
    try:
        client = broker_redis()
        emptied = bool(client.set(BROKER_MARKER_KEY, "1", nx=True))
        lanes = [(queue, priority) for queue in QUEUES for priority in (URGENT_PRIORITY, NORMAL_PRIORITY)]
        pipe = client.pipeline(transaction=False)
        for queue, priority in lanes:
            pipe.llen(lane_key(queue, priority))
        idle = tuple(lane for lane, depth in zip(lanes, pipe.execute(), strict=True) if depth == 0)
        return BrokerView(emptied, idle)
    except (redis.RedisError, OSError):
        return BrokerView(False, ())


def resend_unfinished(batch_id) -> int:
    """Make every queued step of a batch's unfinished jobs due again (after the whole stack
    stopped, say, taking the broker's messages with it), and top up the windows with them.
    Duplicates are harmless: a step is claimed once, and a claimed or finished step
    ignores a second message."""
    with session_scope() as session:
        ids = list(session.scalars(
            update(Step)
            .where(Step.status == StepStatus.QUEUED, Step.job_id.in_(
                select(Job.id).where(Job.batch_id == batch_id, Job.status.not_in(TERMINAL_JOB_STATUSES))))
            .values(send_due_at=func.now())
            .returning(Step.id)
        ))
    outbox.top_up(wait=True)
    return len(ids)


def _retire_steps_of_ended_jobs(session, limit: int = 5000) -> int:
    """Steps of jobs cancelled or expired first that will never finish (queued, or running
    under a lease nobody renews): settled as such, so the audit does not show them
    running for ever and no later pass (nor a GPU worker looking for batch-mates) reads
    them again."""
    never_run = _lock(session, (Step.status == StepStatus.QUEUED,), ended=True, limit=limit)
    died = _lock(session, _lapsed(), ended=True, limit=limit)
    _settle_never_run(session, never_run, "not run: its job was cancelled or expired first")
    ended = _settle_never_run(session, died, "its worker died after its job was cancelled or expired")
    attempt_log.ended_many(session, ended, attempt_log.LAPSED)  # a queued step has no attempt open
    return len(never_run) + len(died)


def _settle_never_run(session, ids: list[int], reason: str) -> list[tuple[int, int]]:
    """Settle these steps as failed for `reason`; returns their (id, attempt) pairs."""
    if not ids:
        return []
    return [tuple(row) for row in session.execute(update(Step).where(Step.id == any_(_array(ids))).values(
        status=StepStatus.FAILED, send_due_at=None, lease_expires_at=None, updated_at=func.now(),
        last_error=reason).returning(Step.id, Step.attempts))]


def _lapsed():
    return Step.status == StepStatus.RUNNING, Step.lease_expires_at < func.now()


def _take_back_lapsed_leases(session) -> list[int]:
    ids = _lock(session, _lapsed())
    if ids:
        taken = session.execute(update(Step).where(Step.id == any_(_array(ids))).values(
            status=StepStatus.QUEUED, lease_expires_at=None, updated_at=func.now(), send_due_at=func.now(),
            last_error=func.concat("attempt ", Step.attempts, " of the ", Step.kind, " step never "
                                   "finished: its worker died or stopped renewing its lease"),
        ).returning(Step.id, Step.attempts)).all()
        attempt_log.ended_many(session, [tuple(row) for row in taken], attempt_log.LAPSED)
    return ids


def _extend_lapsed_leases(session) -> int:
    lease = timedelta(seconds=get_settings().step_lease_s)
    ids = _lock(session, _lapsed())
    if ids:
        session.execute(update(Step).where(Step.id == any_(_array(ids))).values(lease_expires_at=func.now() + lease))
    return len(ids)


def _mark_lost(session, broker: BrokerView, passed: dict[tuple[str, int], int]) -> list[int]:
    """Queued steps whose message went out and is not waiting anywhere: made due again."""
    sent_and_waiting = (Step.status == StepStatus.QUEUED, Step.send_due_at.is_(None))
    lost: list[tuple[ColumnElement[bool], ...]]  # each: the conditions of one lane's lost messages
    if broker.emptied:
        lost = [()]
    else:
        settled_before = func.now() - timedelta(seconds=get_settings().lost_message_after_s)
        lost = []
        for (queue, priority), seq in passed.items():
            lost.append((Step.kind.in_(_kinds_of(queue)), Step.sent_priority == priority, Step.sent_seq < seq))
        for queue, priority in broker.idle_lanes:
            lost.append((Step.kind.in_(_kinds_of(queue)), Step.sent_priority == priority,
                         Step.sent_at < settled_before))
    ids: dict[int, None] = {}  # in order, once each
    for conditions in lost:
        ids.update(dict.fromkeys(_lock(session, (*sent_and_waiting, *conditions))))
    if ids:
        session.execute(update(Step).where(Step.id == any_(_array(list(ids)))).values(send_due_at=func.now()))
    return list(ids)


def _kinds_of(queue: str) -> list:
    return [kind for kind, route in STEP_ROUTES.items() if route.queue == queue]


def _lock(session, conditions, ended: bool = False, limit: int | None = None) -> list[int]:
    """Lock the steps matching `conditions` of unfinished jobs (`ended`: of jobs cancelled
    or expired), skipping any a worker holds."""
    jobs = Job.status.in_(ENDED_EARLY) if ended else Job.status.not_in(TERMINAL_JOB_STATUSES)
    return list(session.scalars(
        select(Step.id)
        .join(Job, Job.id == Step.job_id)
        .where(*conditions, jobs)
        .limit(limit)
        .with_for_update(of=Step, skip_locked=True)  # never block a worker's claim
    ))


def _array(ids: list[int]):
    # One statement for them all: after a broker loss that is every queued step.
    return bindparam("ids", ids, type_=ARRAY(BigInteger))
