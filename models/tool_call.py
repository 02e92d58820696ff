from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class ToolCall(CreatedAt, Base):
    """One perception call made for a job, with its result.

    `cache_key` hashes (audio sha256, tool, model, args): a later call with the same key,
    from any job or batch, copies this result instead of running the tool again.
    """

    __tablename__ = "tool_calls"
    __table_args__ = (UniqueConstraint("job_id", "iteration", "call_index"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[UUID] = mapped_column(ForeignKey("jobs.id"), index=True)
    iteration: Mapped[int]
    call_index: Mapped[int]  # position within the round's plan
    tool: Mapped[str] = mapped_column(String(60))
    model: Mapped[str] = mapped_column(String(300))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # structured, timestamped result
    text: Mapped[str] = mapped_column(Text)  # rendering merged into the evidence document
    error: Mapped[str | None] = mapped_column(Text)  # set when the tool refused or failed
    latency_ms: Mapped[float]
    device: Mapped[str] = mapped_column(String(20))
    batch_size: Mapped[int] = mapped_column(default=1)  # calls (of any jobs) in its forward pass
    cache_key: Mapped[str] = mapped_column(String(64), index=True)
    cache_hit: Mapped[bool] = mapped_column(default=False)
