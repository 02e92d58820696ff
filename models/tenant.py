from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import BigInteger, ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, CreatedAt


class Tenant(CreatedAt, Base):
    """Who owns batches, jobs and uploads. Every API resource is looked up within one tenant,
    so another tenant's ids are simply not found."""

    __tablename__ = "tenants"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # Server-side audio folder this tenant may reference by relative path; None = uploads only.
    audio_root: Mapped[str | None] = mapped_column(String(2000))
    rate_limit_per_minute: Mapped[int] = mapped_column(default=600)  # requests per API key
    max_queued_items: Mapped[int] = mapped_column(default=100_000)  # unfinished jobs at once
    max_stored_bytes: Mapped[int] = mapped_column(BigInteger, default=100 * 1024**3)  # its audio objects' bytes


def lock_tenant(session, tenant_id: UUID) -> Tenant | None:
    """Hold the tenant's row until the transaction ends: its submits, uploads and retention
    take turns (api/intake/tenant_limits.py, workers/runtime/retention.py); other tenants do not wait."""
    return session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update())


class ApiKey(CreatedAt, Base):
    """An API key, stored as its SHA-256 only: the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[UUID] = mapped_column(primary_key=True, default=uuid4)
    tenant_id: Mapped[UUID] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # first characters, to tell keys apart in lists
    key_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None]
