from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class ToolCatalogue(CreatedAt, Base):
    """The tools a job's agents were shown and the models its calls were planned with,
    stored once per content: `version` is the sha256 of `tools` (workers/method/perception/catalogue.py)."""

    __tablename__ = "tool_catalogues"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    # [{name, description, device, model, args, required, speech_only}]
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
