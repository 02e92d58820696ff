from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, ForeignKey, Text, UniqueConstraint, func
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
    __table_args__ = (UniqueConstraint("job_id", "iteration", "kind"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[UUID] = mapped_column(ForeignKey("jobs.id"), index=True)
    iteration: Mapped[int]
    kind: Mapped[StepKind] = mapped_column(status_enum(StepKind))
    status: Mapped[StepStatus] = mapped_column(
        status_enum(StepStatus), default=StepStatus.QUEUED, index=True
    )
    attempts: Mapped[int] = mapped_column(default=0)
    lease_expires_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]
