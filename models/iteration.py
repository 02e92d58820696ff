from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, ForeignKey, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class Iteration(CreatedAt, Base):
    """The evidence document after a perception round, and what the agents made of it.

    index 0 is the coarse document; index i > 0 follows the i-th refinement round.
    """

    __tablename__ = "iterations"
    __table_args__ = (UniqueConstraint("job_id", "index"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[UUID] = mapped_column(ForeignKey("jobs.id"), index=True)
    index: Mapped[int]
    document: Mapped[str] = mapped_column(Text)  # the evidence document the agents read
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # attributed items
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # planning agent's judgement
    tool_plan: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)  # interaction agent's calls
    planned_at: Mapped[datetime | None]
