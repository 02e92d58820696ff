from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, SmallInteger, Text, UniqueConstraint, func, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt, status_enum
from models.status import StepKind, StepStatus


class Step(CreatedAt, Base):
    """One unit of work of a job, persisted before its message is sent.

    (job, iteration, kind) is unique, so a redelivered or duplicated message finds the
    existing row and cannot make a second one. The lease is what the sweeper watches:
    a running step whose lease lapsed belonged to a worker that died.
    """

    __tablename__ = "steps"
    __table_args__ = (
        UniqueConstraint("job_id", "iteration", "kind"),
        # What the sweeper asks each pass: queued steps of a kind waiting since when, and
        # running steps whose lease lapsed. Partial, so 100,000 done steps cost them nothing.
        Index("ix_steps_queued_kind_updated_at", "kind", "updated_at", postgresql_where=text("status = 'queued'")),
        Index("ix_steps_running_lease_expires_at", "lease_expires_at", postgresql_where=text("status = 'running'")),
        # The outbox (workers/runtime/outbox.py): steps whose message is yet to be sent, queued
        # steps by the number of their last message, and recent claims.
        Index("ix_steps_send_due_at", "send_due_at", postgresql_where=text("send_due_at IS NOT NULL")),
        Index("ix_steps_queued_kind_sent_seq", "kind", "sent_seq", postgresql_where=text("status = 'queued'")),
        Index("ix_steps_claimed_at", "claimed_at"),
        # A queue's window: messages out and not yet claimed. GPU batch-mates are picked
        # and locked from it (workers/runtime/step_claim.py) without reading the backlog behind it.
        Index("ix_steps_window_kind_sent_seq", "kind", "sent_seq",
              postgresql_where=text("status = 'queued' AND send_due_at IS NULL AND sent_seq IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[UUID] = mapped_column(ForeignKey("jobs.id"), index=True)
    iteration: Mapped[int]
    kind: Mapped[StepKind] = mapped_column(status_enum(StepKind))
    # A perception step's calls, fixed when its row is made: [{index, tool, args, model,
    # needs_speech}]. None: a reasoning step, or one made before calls were stored.
    calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    status: Mapped[StepStatus] = mapped_column(
        status_enum(StepStatus), default=StepStatus.QUEUED, index=True
    )
    attempts: Mapped[int] = mapped_column(default=0)
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
    # The outbox: a step is made queued with its message due (a new row: due at once), and
    # the message's sending is recorded, so the broker's state follows from Postgres.
    send_due_at: Mapped[datetime | None] = mapped_column(server_default=func.now())
    sent_seq: Mapped[int | None] = mapped_column(BigInteger)  # number of its latest message
    sent_at: Mapped[datetime | None]
    sent_priority: Mapped[int | None] = mapped_column(SmallInteger)  # its queue's lane (workers/runtime/routing.py)
    sends: Mapped[int] = mapped_column(default=0, server_default="0")
    claimed_at: Mapped[datetime | None]  # its latest claim
    claimed_seq: Mapped[int | None] = mapped_column(BigInteger)  # the number of the message that woke it
