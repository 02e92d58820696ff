import enum
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, CreatedAt, status_enum
from models.status import BatchStatus

if TYPE_CHECKING:  # the relationship's annotation only: models/job.py names Batch the same way
    from models.job import Job


class BatchInterface(enum.StrEnum):
    NATIVE = "native"  # POST /v1/batches with our body: shown in our shape
    BATCH_API = "batch_api"  # the OpenAI Batch API (`endpoint` given): shown in its shape
    CHAT = "chat"  # one POST /v1/chat/completions: a batch of one, left out of listings


class Batch(CreatedAt, Base):
    """One submission: a benchmark file or a list of questions, run with one set of options."""

    __tablename__ = "batches"
    # A retried submission with the same Idempotency-Key finds this batch instead of making two.
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key"),
        # A tenant's batches newest first, a page at a time (GET /v1/batches): chat calls'
        # batches of one are not listed, and not in this index (migration 0011).
        Index("ix_batches_listed", "tenant_id", "created_at", "id", postgresql_where=text("interface <> 'chat'")),
        # The intake's pick of the next batch to validate reads only those waiting.
        Index("ix_batches_validating", "created_at", postgresql_where=text("status = 'validating'")),
        # Whose turn it is at the intake: each tenant's latest check begun (migration 0014).
        Index("ix_batches_intake_turns", "tenant_id", "intake_started_at",
              postgresql_where=text("intake_started_at IS NOT NULL")),
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
    # A batch made from an uploaded file is `validating` until api/intake/batch_intake.py has
    # checked every line and file: `intake` holds what the request asked for until then.
    # Deleting the file (DELETE /v1/files/{id}) leaves the batch, without its link.
    input_file_id: Mapped[UUID | None] = mapped_column(ForeignKey("input_files.id", ondelete="SET NULL"))
    intake: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # input_format, audio_dir, window
    errors: Mapped[list[str] | None] = mapped_column(JSON)  # why a `failed` batch was refused, by line
    # The intake checking it holds a lease, not a transaction (checking may take minutes):
    # its claim, renewed until it writes, and how many checks began (a batch that keeps
    # killing its check fails after a few instead of blocking the intake for ever).
    intake_claim: Mapped[UUID | None]
    intake_claimed_until: Mapped[datetime | None]
    intake_attempts: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    intake_started_at: Mapped[datetime | None]  # the latest check begun: tenants take turns by it

    # Which API made it, and so how it is shown (BatchInterface); when it began running.
    interface: Mapped[str] = mapped_column(String(20), default="native", server_default="native")
    in_progress_at: Mapped[datetime | None]

    jobs: Mapped[list["Job"]] = relationship(back_populates="batch")
