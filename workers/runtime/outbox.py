"""The step outbox: a step's message is part of its durable state, not an afterthought.

Whatever makes a step queued (its insert, a retry after a failed attempt, the sweeper
taking back a lapsed lease) sets `send_due_at` in the same transaction. Sending is then
two moves: take the send (clear `send_due_at`, number the message from a sequence, count
it) and hand the message to the broker. A take is an UPDATE guarded by `send_due_at IS NOT
NULL`, so two senders never both send one step's message: a queued step has at most one
message outstanding.

The broker holds a window, not the backlog: at most AGR_DISPATCH_WINDOW messages per queue
sent and not yet claimed. The rest of the queue's steps wait in Postgres, due, and
whenever the window has room (a step committed, a claim that took a message, the
sweeper's pass) a sender tops it up with due steps in the fair order of
workers/runtime/fair_dispatch.py: so the order of work is chosen across tenants and batches
here, not by one FIFO list per queue. Whatever is due is sent by the next top-up,
whoever makes it: a crash between a commit and its send, a retry whose backoff ran out,
a broker that was down, all need nothing more. The sweeper's re-sends of lost or
abandoned steps skip the window (send_now, urgent): they have waited their turn once.

A message handed over can still be lost (a worker killed after taking it and before
claiming its step, a broker restarted without persistence). The numbers say when: each
lane of a queue (its priorities) is consumed in order, so once a consumer has claimed a
step whose message came later in the same lane, an unclaimed step with an earlier
message is not waiting behind a backlog any more, it is lost (workers/runtime/sweeper.py
re-sends it, ahead of the backlog). Every sender numbers and sends under one lock, so the
numbers are the broker's order, whichever order the fair pick chose.
"""

import logging
from collections.abc import Iterable
from datetime import timedelta

from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy import BigInteger, SmallInteger, any_, bindparam, column, func, text, update, values
from sqlalchemy.dialects.postgresql import ARRAY

from core.database_outage import database_unreachable, outage_reason
from core.settings import get_settings
from models import Step, StepStatus
from models.db import session_scope
from workers.runtime import fair_dispatch
from workers.runtime.dispatch import send_step
from workers.runtime.routing import NORMAL_PRIORITY, QUEUES, URGENT_PRIORITY

log = logging.getLogger(__name__)

ROWS_PER_TAKE = 1000
NEXT_SEQ = text("nextval('step_message_seq')")
NEXT_SEQS = text("SELECT nextval('step_message_seq') FROM generate_series(1, :n)")
# Held while a sender numbers its messages and hands them to the broker, so the numbers
# are the broker's order: a consumer claiming message n has taken every earlier one of its
# lane. Senders wait on each other for a broker push each (~1 ms a message).
SENDING_LOCK = text("SELECT pg_advisory_xact_lock(7380079262398573825)")
TRY_SENDING_LOCK = text("SELECT pg_try_advisory_xact_lock(7380079262398573825)")
# The fair pick sorts a queue's due steps: in memory, not in temporary files, up to a
# backlog of ~100,000.
SORT_IN_MEMORY = text("SET LOCAL work_mem = '32MB'")


def due_in(delay_s: float = 0.0):
    """The `send_due_at` value for a step whose message should go out after `delay_s`."""
    return func.now() + timedelta(seconds=delay_s) if delay_s else func.now()


def top_up(queues: Iterable[str] = QUEUES, wait: bool = False, least: int | None = None) -> int:
    """Fill each queue's window with its due steps, in the fair order; returns how many
    messages went out. A queue is filled once `least` messages fit (default: half its
    window, so the fair pick, which reads the queue's whole backlog, is paid once per
    half a window of messages, not once per message). Without `wait`, a queue another
    sender is filling now is left to it. Filling is never a step's failure: what cannot
    be sent now (the database or the broker unreachable, anything else) stays due for the
    next top-up, the sweeper's at the latest."""
    window = get_settings().dispatch_window
    least = max(1, window // 2) if least is None else least
    sent = 0
    for queue in queues:
        try:
            sent += _top_up(queue, window, least, wait)
        except KombuOperationalError as exc:
            log.warning("broker unreachable; the window of %s is filled later: %s", queue, exc)
            break
        except Exception as exc:
            if database_unreachable(exc):
                log.warning("database unreachable; the window of %s is filled later: %s", queue, outage_reason(exc))
            else:
                log.exception("filling the window of %s failed; it is filled later", queue)
            break
    return sent


def has_room(session, queue: str) -> bool:
    """Whether a top-up of `queue` would send anything now (half its window fits), read in
    the caller's transaction: a claim or a commit asks so in its own transaction, and only
    then pays for a top-up's (its lock, its room check, its fair pick)."""
    window = get_settings().dispatch_window
    return window - fair_dispatch.in_window(session, queue, window) >= max(1, window // 2)


def send_now(step_ids: Iterable[int], urgent: bool = False) -> int:
    """Send the messages of these steps that are due, whatever their queues' windows hold;
    returns how many were sent. The sweeper's re-sends (urgent: ahead of the backlog) go
    so. A step whose send another process took, or which is not due yet, is left alone; so
    is everything when the database or the broker is unreachable: the rows stay due, and
    the next top-up sends them."""
    ids = list(step_ids)
    priority = URGENT_PRIORITY if urgent else NORMAL_PRIORITY
    sent = 0
    for start in range(0, len(ids), ROWS_PER_TAKE):
        try:
            sent += _send_chunk(ids[start : start + ROWS_PER_TAKE], priority)
        except KombuOperationalError as exc:
            log.warning("broker unreachable; messages left due, for the next top-up: %s", exc)
            break
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            log.warning("database unreachable while sending; messages left due, for the next top-up: %s",
                        outage_reason(exc))
            break
    return sent


def _top_up(queue: str, window: int, least: int, wait: bool) -> int:
    with session_scope() as session:
        if wait:
            session.execute(SENDING_LOCK)
        elif not session.scalar(TRY_SENDING_LOCK):
            return 0  # another sender holds it: its top-up, or the next one, sees this room
        room = window - fair_dispatch.in_window(session, queue, window)
        if room < least:
            return 0
        session.execute(SORT_IN_MEMORY)
        picked = fair_dispatch.next_due(session, queue, room, window)
        if not picked:
            return 0
        rows = _take_in_order(session, picked)
        broker_down = _hand_over(session, rows)
    if broker_down is not None:
        raise broker_down
    return len(rows)


def _take_in_order(session, picked: list[tuple[int, int]]) -> list:
    """Take the sends of the picked steps, numbered in the order they were picked. A step
    that had a message before (a retry, a re-send the sweeper could not make) goes in the
    urgent lane: it has waited its turn once."""
    seqs = sorted(session.scalars(NEXT_SEQS, {"n": len(picked)}))
    chosen = values(column("id", BigInteger), column("seq", BigInteger), column("priority", SmallInteger),
                    name="chosen").data([(step_id, seq, URGENT_PRIORITY if sends else NORMAL_PRIORITY)
                                         for (step_id, sends), seq in zip(picked, seqs, strict=True)])
    return session.execute(
        update(Step)
        .where(Step.id == chosen.c.id, Step.send_due_at <= func.now(), Step.status == StepStatus.QUEUED)
        .values(send_due_at=None, sent_seq=chosen.c.seq, sent_at=func.now(), sent_priority=chosen.c.priority,
                sends=Step.sends + 1)
        .returning(Step.id, Step.kind, Step.sent_seq, Step.sent_priority)
    ).all()


def _send_chunk(ids: list[int], priority: int) -> int:
    with session_scope() as session:
        session.execute(SENDING_LOCK)
        rows = list(session.execute(  # a list of its own: _hand_over sorts it and drops the unsent
            update(Step)
            .where(Step.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger))),
                   Step.send_due_at <= func.now(), Step.status == StepStatus.QUEUED)
            .values(send_due_at=None, sent_seq=NEXT_SEQ, sent_at=func.now(), sent_priority=priority,
                    sends=Step.sends + 1)
            .returning(Step.id, Step.kind, Step.sent_seq, Step.sent_priority)
        ).all())
        broker_down = _hand_over(session, rows)
    if broker_down is not None:
        raise broker_down
    return len(rows)


def _hand_over(session, rows: list) -> KombuOperationalError | None:
    """Send the taken rows' messages in number order (the broker's order is the numbers').
    If the broker goes down midway, the sends made stand and the rest are due again (the
    take commits so); the broker's error is returned, and `rows` keeps the sent ones."""
    rows.sort(key=lambda r: r[2])
    for position, (step_id, kind, seq, priority) in enumerate(rows):
        try:
            send_step(step_id, kind, urgent=priority == URGENT_PRIORITY, seq=seq)
        except KombuOperationalError as exc:
            unsent = [r[0] for r in rows[position:]]
            session.execute(update(Step).where(Step.id.in_(unsent))
                            .values(send_due_at=func.now(), sends=Step.sends - 1))
            del rows[position:]
            return exc
    return None
