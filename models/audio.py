from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class AudioAsset(CreatedAt, Base):
    """One row per distinct audio content (by sha256), however many jobs ask about it.
    Perception results are cached by this hash, so the same clip is never analysed twice."""

    __tablename__ = "audio_assets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(2000))  # where the content was first seen
    bytes: Mapped[int] = mapped_column(BigInteger)
    # Header facts; None when the header could not be read (perception then fails the job).
    format: Mapped[str | None] = mapped_column(String(20))
    duration_s: Mapped[float | None]
    sample_rate: Mapped[int | None]
    channels: Mapped[int | None]
