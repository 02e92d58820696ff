from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.audio import AudioAsset
from models.base import Base, CreatedAt, status_enum
from models.status import JobStatus

if TYPE_CHECKING:  # the relationship's annotation only: models/batch.py names Job the same way
    from models.batch import Batch


class Job(CreatedAt, Base):
    """One question about one audio clip, and its final answer."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("batch_id", "custom_id"),  # also the index for a batch's jobs in custom_id order
        # A batch's live counts by status (every status poll, every listing) by an
        # index-only scan, and its jobs of one status (migration 0008).
        Index("ix_jobs_batch_id_status", "batch_id", "status"),
    )

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    batch_id: Mapped[UUID] = mapped_column(ForeignKey("batches.id"))  # indexed by both of the above
    custom_id: Mapped[str] = mapped_column(String(200))  # the submitter's item id
    audio_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audio_assets.id"), index=True)
    # The audio as its submitter named it (a path under its root, an upload's filename): the
    # only name its messages and views show; the bytes are the stored object audio_id.
    audio_name: Mapped[str | None] = mapped_column(String(1000))
    question: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty = open question
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # e.g. max_iters
    item_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # modality, category
    reference_answer: Mapped[str | None] = mapped_column(Text)  # known correct answer, if any
    # The tools its agents are shown and their models (None: submitted before they were stored).
    catalogue_version: Mapped[str | None] = mapped_column(String(64), ForeignKey("tool_catalogues.version"))

    status: Mapped[JobStatus] = mapped_column(
        status_enum(JobStatus), default=JobStatus.QUEUED, index=True
    )
    attempts: Mapped[int] = mapped_column(default=0)  # step executions started, retries included
    answer: Mapped[str | None] = mapped_column(Text)  # verbatim choice text (or free answer)
    raw_answer: Mapped[str | None] = mapped_column(Text)  # what the answering agent said
    normalisation: Mapped[str | None] = mapped_column(String(40))  # rule that mapped raw -> answer
    confidence: Mapped[float | None]
    reasoning: Mapped[str | None] = mapped_column(Text)
    vote: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # several answer samples: counts, margin, dissent
    # crosscheck: how the answer was decided (the agreement gate, or the text side against
    # the audio model's final answer and the arbitration): workers/method/steps/answer.py
    decision: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    batch: Mapped["Batch"] = relationship(back_populates="jobs")
    audio: Mapped[AudioAsset] = relationship()
