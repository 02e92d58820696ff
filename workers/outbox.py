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

from models import Step, StepKind, StepStatus
from models.db import session_scope
from workers.dispatch import send_step
from workers.routing import NORMAL_PRIORITY, URGENT_PRIORITY

log = logging.getLogger(__name__)

ROWS_PER_TAKE = 1000
NEXT_SEQ = text("nextval('step_message_seq')")


def due_in(delay_s: float = 0.0):
    """The `send_due_at` value for a step whose message should go out after `delay_s`."""
    return func.now() + timedelta(seconds=delay_s) if delay_s else func.now()


def send_now(step_ids: Iterable[int], urgent: bool = False) -> int:
    """Send the messages of these steps that are due (the fast path after a commit, and
    the relay); returns how many were sent. A step whose send another process took, or
    which is not due yet, is left alone."""
    ids = list(step_ids)
    sent = 0
    for start in range(0, len(ids), ROWS_PER_TAKE):
        taken = _take_sends(ids[start : start + ROWS_PER_TAKE], URGENT_PRIORITY if urgent else NORMAL_PRIORITY)
        for position, (step_id, kind) in enumerate(taken):
            try:
                send_step(step_id, kind, urgent=urgent)
            except KombuOperationalError as exc:
                # The broker is down past the send's own retries: give every send not made
                # back to the outbox, for the relay to make once the broker is back.
                _give_back([s for s, _ in taken[position:]])
                log.warning("broker unreachable; %d message(s) left to the outbox relay: %s",
                            len(taken) - position, exc)
                return sent
            sent += 1
    return sent


def relay_due(limit: int = 10_000) -> int:
    """The sweeper's share: send every message that is due and was not sent. They go
    ahead of the queues' backlogs: each is late already (a retry whose backoff ran out, a
    commit whose process died before its send)."""
    with session_scope() as session:
        due = list(session.scalars(
            select(Step.id).where(Step.send_due_at <= func.now(), Step.status == StepStatus.QUEUED)
            .order_by(Step.send_due_at).limit(limit)
        ))
    return send_now(due, urgent=True) if due else 0


def _take_sends(ids: list[int], priority: int) -> list[tuple[int, StepKind]]:
    with session_scope() as session:
        rows = session.execute(
            update(Step)
            .where(Step.id == any_(bindparam("ids", ids, type_=ARRAY(BigInteger))),
                   Step.send_due_at <= func.now(), Step.status == StepStatus.QUEUED)
            .values(send_due_at=None, sent_seq=NEXT_SEQ, sent_at=func.now(), sent_priority=priority,
                    sends=Step.sends + 1)
            .returning(Step.id, Step.kind, Step.sent_seq)
        ).all()
    # In message-number order, so the broker's order is the numbers' order.
    return [(step_id, kind) for step_id, kind, _ in sorted(rows, key=lambda r: r[2])]


def _give_back(ids: list[int]) -> None:
    try:
        with session_scope() as session:
            session.execute(update(Step).where(Step.id.in_(ids), Step.status == StepStatus.QUEUED)
                            .values(send_due_at=func.now()))
    except Exception:  # the database went too: the sweeper's lost-message checks cover them
        log.warning("could not give %d unsent message(s) back to the outbox", len(ids), exc_info=True)
