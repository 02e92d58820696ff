"""API keys: made once, shown once, stored as a SHA-256 digest only.

Keys are long random tokens, so a plain SHA-256 (not a slow password hash) is the right
digest: nobody can guess one, and every request can afford to look its digest up.
"""

import hashlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from sqlalchemy import select

from models import ApiKey, Tenant
from models.db import session_scope

KEY_PREFIX = "agr_"


@dataclass(frozen=True)
class Caller:
    """Who a request is from: the key's tenant and what that tenant may do."""

    key_id: UUID
    tenant_id: UUID
    tenant_name: str
    audio_root: Path | None
    rate_limit_per_minute: int
    max_queued_items: int


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(tenant_name: str, key_name: str = "default", audio_root: Path | None = None,
               rate_limit_per_minute: int | None = None, max_queued_items: int | None = None) -> str:
    """A new key for the tenant (created on first use); returns the key, shown only now."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with session_scope() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name).with_for_update())
        if tenant is None:
            tenant = Tenant(name=tenant_name, rate_limit_per_minute=600, max_queued_items=100_000)
            session.add(tenant)
        if audio_root is not None:
            tenant.audio_root = str(audio_root.resolve())
        if rate_limit_per_minute is not None:
            tenant.rate_limit_per_minute = rate_limit_per_minute
        if max_queued_items is not None:
            tenant.max_queued_items = max_queued_items
        session.flush()
        session.add(ApiKey(tenant_id=tenant.id, name=key_name, prefix=key[:12], key_sha256=digest(key)))
    return key


def caller_for(key: str) -> Caller | None:
    """The caller a key belongs to, or None for an unknown or revoked key."""
    with session_scope() as session:
        row = session.execute(
            select(ApiKey.id, Tenant)
            .join(Tenant, Tenant.id == ApiKey.tenant_id)
            .where(ApiKey.key_sha256 == digest(key), ApiKey.revoked_at.is_(None))
        ).one_or_none()
    if row is None:
        return None
    key_id, tenant = row
    root = Path(tenant.audio_root) if tenant.audio_root else None
    return Caller(key_id, tenant.id, tenant.name, root, tenant.rate_limit_per_minute, tenant.max_queued_items)
