from uuid import UUID, uuid4

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.audio import AudioAsset
from models.base import Base, CreatedAt


class Upload(CreatedAt, Base):
    """An audio file a tenant uploaded. The content lives once, as an AudioAsset keyed by
    sha256; this row is the tenant's handle on it (two tenants uploading the same clip get
    two uploads and share one asset, and its cached perception results)."""

    __tablename__ = "uploads"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    audio_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audio_assets.id"), index=True)
    filename: Mapped[str] = mapped_column(String(500))

    audio: Mapped[AudioAsset] = relationship()
