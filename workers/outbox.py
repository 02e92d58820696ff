"""The step outbox: a step's message is part of its durable state, not an afterthought.

Whatever makes a step queued (its insert, a retry after a failed attempt, the sweeper
taking back a lapsed lease) sets `send_due_at` in the same transaction. Sending is then
two moves: take the send (clear `send_due_at`, number the message from a sequence, count
it) and hand the message to the broker. The committing process does both at once (the
fast path); the sweeper relays whatever is still due (a crash between commit and send, a
retry's backoff that has run out, a broker that was down). A take is an UPDATE guarded
by `send_due_at IS NOT NULL`, so two senders never both send one step's message: a queued
step has at most one message outstanding.

A message handed over can still be lost (a worker killed after taking it and before
claiming its step, a broker restarted without persistence). The numbers say when: each
lane of a queue (its priorities) is consumed in order, so once a consumer has claimed a
step whose message came later in the same lane, an unclaimed step with an earlier
message is not waiting behind a backlog any more, it is lost (workers/sweeper.py
re-sends it, ahead of the backlog).
"""

import logging
from collections.abc import Iterable
from datetime import timedelta

from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import BigInteger, any_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY

from core.database_outage import database_unreachable, outage_reason
from core.settings import get_settings
from models import Step, StepStatus
from models.db import session_scope
from workers.dispatch import send_step
from workers.routing import NORMAL_PRIORITY, URGENT_PRIORITY

log = logging.getLogger(__name__)

ROWS_PER_TAKE = 1000
NEXT_SEQ = text("nextval('step_message_seq')")
# Held while a sender numbers its messages and hands them to the broker, so the numbers
# are the broker's order: a consumer claiming message n has taken every earlier one of its
# lane. Senders wait on each other for a broker push each (~1 ms a message).
SENDING_LOCK = text("SELECT pg_advisory_xact_lock(7380079262398573825)")


def due_in(delay_s: float = 0.0):
    """The `send_due_at` value for a step whose message should go out after `delay_s`."""
    return func.now() + timedelta(seconds=delay_s) if delay_s else func.now()


def send_now(step_ids: Iterable[int], urgent: bool = False) -> int:
    """Send the messages of these steps that are due (the fast path after a commit, and
    the relay); returns how many were sent. A step whose send another process took, or
    which is not due yet, is left alone; so is everything when the database or the broker
    is unreachable: the rows stay due, and the sweeper's relay sends them later."""
    ids = list(step_ids)
    priority = URGENT_PRIORITY if urgent else NORMAL_PRIORITY
    sent = 0
    for start in range(0, len(ids), ROWS_PER_TAKE):
        try:
            sent += _send_chunk(ids[start : start + ROWS_PER_TAKE], priority)
        except KombuOperationalError as exc:
            log.warning("broker unreachable; messages left to the outbox relay: %s", exc)
            break
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            log.warning("database unreachable while sending; messages left to the outbox relay: %s",
                        outage_reason(exc))
            break
    return sent


def relay_due(limit: int = 2000) -> int:
    """The sweeper's share: send the messages still due a while after they fell due (their
    sender died, or could not reach the broker; a retry's backoff ran out). They go ahead
    of the queues' backlogs: each is late already. (Steps of jobs that ended first are
    settled by the sweeper's pass before this, so they are not queued any more.)"""
    grace = timedelta(seconds=2 * get_settings().sweep_interval_s)  # the fast path's turn first
    with session_scope() as session:
        due = list(session.scalars(
            select(Step.id).where(Step.send_due_at <= func.now() - grace, Step.status == StepStatus.QUEUED)
            .order_by(Step.send_due_at).limit(limit)
        ))
    return send_now(due, urgent=True) if due else 0


def _send_chunk(ids: list[int], priority: int) -> int:
    broker_down = None
    with session_scope() as session:
        session.execute(SENDING_LOCK)
        rows = session.execute(
            update(Step)
            .where(Step.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger))),
                   Step.send_due_at <= func.now(), Step.status == StepStatus.QUEUED)
            .values(send_due_at=None, sent_seq=NEXT_SEQ, sent_at=func.now(), sent_priority=priority,
                    sends=Step.sends + 1)
            .returning(Step.id, Step.kind, Step.sent_seq)
        ).all()
        rows.sort(key=lambda r: r[2])  # in number order: the broker's order is the numbers'
        for position, (step_id, kind, seq) in enumerate(rows):
            try:
                send_step(step_id, kind, urgent=priority == URGENT_PRIORITY, seq=seq)
            except KombuOperationalError as exc:
                # The broker went down mid-chunk: the sends made stand, the rest are due
                # again (for the relay), and the take commits so.
                unsent = [r[0] for r in rows[position:]]
                session.execute(update(Step).where(Step.id.in_(unsent))
                                .values(send_due_at=func.now(), sends=Step.sends - 1))
                broker_down, rows = exc, rows[:position]
                break
    if broker_down is not None:
        raise broker_down
    return len(rows)
