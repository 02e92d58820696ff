from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Text, UniqueConstraint, func, text
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
