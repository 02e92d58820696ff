from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base


class StepAttempt(Base):
    """One execution of a step, for the audit: which worker claimed it and when, and how it
    ended (done, failed and why, its lease lapsed). Written in the claim's transaction and
    in whichever transaction ends it (workers/runtime/attempt_log.py)."""

    __tablename__ = "step_attempts"
    __table_args__ = (UniqueConstraint("step_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id"), index=True)
    attempt: Mapped[int]
    worker: Mapped[str] = mapped_column(String(300))  # host and process id
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(Text)  # None: still running (or its worker died unseen)
