from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, CreatedAt, status_enum
from models.status import BatchStatus


class Batch(CreatedAt, Base):
    """One submission: a benchmark file or a list of questions, run with one set of options."""

    __tablename__ = "batches"
    # A retried submission with the same Idempotency-Key finds this batch instead of making two.
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        # A tenant's batches newest first, a page at a time (GET /v1/batches; migration 0008).
        Index("ix_batches_tenant_id_created_at_id", "tenant_id", "created_at", "id"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID | None] = mapped_column(ForeignKey("tenants.id"))  # None: CLI run; indexed above
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[BatchStatus] = mapped_column(
        status_enum(BatchStatus), default=BatchStatus.VALIDATING
    )
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. max_iters, pipeline
    batch_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the submitter's labels
    source: Mapped[str | None] = mapped_column(String(1000))  # the submitted file, if any
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_sha256: Mapped[str | None] = mapped_column(String(64))  # what the key was first used for
    expires_at: Mapped[datetime | None]  # unfinished jobs expire then; finished results stay
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]  # cancel asked (status cancelling, then cancelled)
    ended_at: Mapped[datetime | None]  # cancelled or expired: the moment it stopped for good

    jobs: Mapped[list["Job"]] = relationship(back_populates="batch")  # noqa: F821
