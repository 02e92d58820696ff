from uuid import UUID, uuid4

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class InputFile(CreatedAt, Base):
    """A submission file a tenant uploaded (`POST /v1/files`, purpose `batch`): a batch made
    from it is validated off the request path (api/intake/batch_intake.py). The same bytes
    uploaded again by the same tenant are the same file, so a re-run finds its batch."""

    __tablename__ = "input_files"
    __table_args__ = (UniqueConstraint("tenant_id", "purpose", "sha256"),)

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"))  # leads the unique constraint
    purpose: Mapped[str] = mapped_column(String(20))
    filename: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int]
    content: Mapped[str] = mapped_column(Text)  # UTF-8 text, checked at upload
