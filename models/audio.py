from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class AudioAsset(CreatedAt, Base):
    """One object in the service's audio store (storage/audio_store.py), named by the sha256
    of its stored bytes, however many jobs ask about it. Perception results are cached by
    this hash: only identical bytes ever share one."""

    __tablename__ = "audio_assets"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # Where an asset made before the store existed was read from (None for every stored
    # one): kept for an operator's import, never opened by the service.
    legacy_path: Mapped[str | None] = mapped_column(String(2000))
    bytes: Mapped[int] = mapped_column(BigInteger)
    # Header facts; None when the header could not be read (perception then fails the job).
    format: Mapped[str | None] = mapped_column(String(20))
    duration_s: Mapped[float | None]
    sample_rate: Mapped[int | None]
    channels: Mapped[int | None]


class AudioGrant(CreatedAt, Base):
    """A tenant may read a stored object: made when the tenant uploads or submits those
    bytes, removed with the last of its uploads and jobs that reference them. Another
    tenant's object is not found, never forbidden. (tenant_id None: the local CLI's batches.)"""

    __tablename__ = "audio_grants"
    __table_args__ = (
        UniqueConstraint("tenant_id", "audio_id", postgresql_nulls_not_distinct=True),
        Index("ix_audio_grants_audio_id", "audio_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[UUID | None] = mapped_column(ForeignKey("tenants.id"))
    audio_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("audio_assets.id"))


class AudioDeletion(Base):
    """A stored object to delete once the transaction that released it has committed: the
    store is never touched under a lock or before a commit (workers/runtime/object_deletions.py).
    `done_at` is set when the object went; a submit that finds a done deletion of bytes it
    put earlier knows they are gone and tries again (api/intake/audio_ingest.py)."""

    __tablename__ = "audio_deletions"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    requested_at: Mapped[datetime] = mapped_column(server_default=func.now())
    done_at: Mapped[datetime | None]
