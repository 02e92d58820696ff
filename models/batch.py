from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, CreatedAt, status_enum
from models.status import BatchStatus


class Batch(CreatedAt, Base):
    """One submission: a benchmark file or a list of questions, run with one set of options."""

    __tablename__ = "batches"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[BatchStatus] = mapped_column(
        status_enum(BatchStatus), default=BatchStatus.VALIDATING
    )
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. max_iters, pipeline
    source: Mapped[str | None] = mapped_column(String(1000))  # the submitted file, if any
    completed_at: Mapped[datetime | None]

    jobs: Mapped[list["Job"]] = relationship(back_populates="batch")  # noqa: F821
