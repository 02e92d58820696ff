from typing import Any
from uuid import UUID

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class LLMCall(CreatedAt, Base):
    """One request to the reasoner and its reply, stored the moment the reply arrives.

    (job, iteration, agent, prompt_hash) is unique: a replayed step that builds the same
    prompt reads this row instead of paying for the call again.
    """

    __tablename__ = "llm_calls"
    __table_args__ = (UniqueConstraint("job_id", "iteration", "agent", "prompt_hash"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[UUID] = mapped_column(ForeignKey("jobs.id"), index=True)
    iteration: Mapped[int]
    agent: Mapped[str] = mapped_column(String(40))
    prompt_hash: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    reply: Mapped[str] = mapped_column(Text)
    parsed: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None when no JSON could be read
    prompt_tokens: Mapped[int | None]
    completion_tokens: Mapped[int | None]
    latency_ms: Mapped[float]
