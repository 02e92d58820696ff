"""API keys: made once, shown once, stored as a SHA-256 digest only; listed by prefix and
revoked by the operator (`agr keys list`, `agr keys revoke`).

Keys are long random tokens, so a plain SHA-256 (not a slow password hash) is the right
digest: nobody can guess one, and every request can afford to look its digest up. That
lookup on every request is also what makes a revocation take effect at once.

A tenant's audio root is the server folder its batches may name files in. When the
operator sets one (`create_key(..., check_audio_root=True)`, as `agr keys create` does)
it may not be a system folder, nor overlap the service's own folders or another tenant's
root, and an existing tenant's root moves only when asked to (`move_audio_root`).
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

from sqlalchemy import func, select, text, update

from core.settings import get_settings
from models import ApiKey, Tenant
from models.db import session_scope

KEY_PREFIX = "agr_"


@dataclass(frozen=True)
class Caller:
    """Who a request is from: the key's tenant and what that tenant may do."""

    key_id: UUID | None  # None: rebuilt for a batch's intake (api/intake/batch_intake.py), not from a key
    tenant_id: UUID
    tenant_name: str
    audio_root: Path | None
    rate_limit_per_minute: int
    max_queued_items: int


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class AudioRootRefused(ValueError):
    pass


class KeyNotFound(LookupError):
    pass


# Never a tenant's audio root: the file system's root and the top-level system folders.
SYSTEM_ROOTS = tuple(Path(p) for p in (
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/media", "/mnt",
    "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/tmp",
))
# Nor anything inside these: configuration, devices, kernel state, programs, secrets.
SYSTEM_TREES = tuple(Path(p) for p in (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
    "/sbin", "/sys", "/usr",
))
# The lock taken while a root is checked and set, so two operators cannot both pass the
# overlap check with overlapping roots.
_AUDIO_ROOT_LOCK = 0x61677200


def create_key(tenant_name: str, key_name: str = "default", audio_root: Path | None = None,
               rate_limit_per_minute: int | None = None, max_queued_items: int | None = None,
               *, check_audio_root: bool = False, move_audio_root: bool = False) -> str:
    """A new key for the tenant (created on first use); returns the key, shown only now.

    `check_audio_root`: refuse (AudioRootRefused) a root that is a system folder, overlaps
    the service's folders or another tenant's root, or differs from the tenant's current
    one unless `move_audio_root`. Without it (tests, benches) the root is set as given."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with session_scope() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name).with_for_update())
        if tenant is None:
            tenant = Tenant(name=tenant_name, rate_limit_per_minute=600, max_queued_items=100_000)
            session.add(tenant)
        if audio_root is not None:
            root = audio_root.resolve()
            if check_audio_root:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIO_ROOT_LOCK})
                _check_audio_root(session, tenant, root, move_audio_root)
            tenant.audio_root = str(root)
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


def _check_audio_root(session, tenant: Tenant, root: Path, move: bool) -> None:
    if root in SYSTEM_ROOTS or any(root.is_relative_to(tree) for tree in SYSTEM_TREES):
        raise AudioRootRefused(f"{root} is a system folder: give a folder that holds only this tenant's audio")
    for name, folder in _service_folders():
        if _overlap(root, folder):
            raise AudioRootRefused(f"{root} overlaps the service's {name} ({folder}): tenants could read "
                                   "what the service keeps there")
    others = session.execute(select(Tenant.name, Tenant.audio_root)
                             .where(Tenant.audio_root.is_not(None), Tenant.name != tenant.name)).all()
    for other, other_root in others:
        if _overlap(root, Path(other_root)):
            raise AudioRootRefused(f"{root} overlaps tenant {other!r}'s audio root {other_root}: each tenant's "
                                   "root must be its own (not equal to, inside or around another's)")
    current = Path(tenant.audio_root) if tenant.audio_root else None
    if current is not None and current != root and not move:
        raise AudioRootRefused(f"tenant {tenant.name!r} already has the audio root {current}; its batches name "
                               f"files under it. Pass --move-audio-root to move it to {root}")


def _overlap(a: Path, b: Path) -> bool:
    return a.is_relative_to(b) or b.is_relative_to(a)


def _service_folders() -> list[tuple[str, Path]]:
    """Folders the service writes (its data, the audio store, caches), resolved."""

    settings = get_settings()
    folders = [("data folder (AGR_DATA_DIR)", settings.data_dir)]
    store = settings.audio_store_url or ""
    if store.startswith("file://"):
        folders.append(("audio store (AGR_AUDIO_STORE_URL)", Path(store.removeprefix("file://"))))
    for name in ("upload_dir", "audio_cache_dir", "numba_cache_dir"):
        folder = getattr(settings, name, None)
        if folder is not None:
            folders.append((f"AGR_{name.upper()}", Path(folder)))
    return [(name, folder.resolve()) for name, folder in folders]


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a key: never the key, nor its digest."""

    id: UUID
    tenant: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None

    def as_json(self) -> dict:
        return {"id": str(self.id), "tenant": self.tenant, "name": self.name, "prefix": self.prefix,
                "created_at": self.created_at.isoformat(),
                "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None}


def _key_infos(session, *where) -> list[KeyInfo]:
    rows = session.execute(
        select(ApiKey.id, Tenant.name, ApiKey.name, ApiKey.prefix, ApiKey.created_at, ApiKey.revoked_at)
        .join(Tenant, Tenant.id == ApiKey.tenant_id).where(*where)
        .order_by(Tenant.name, ApiKey.created_at, ApiKey.id)
    ).all()
    return [KeyInfo(*row) for row in rows]


def list_keys(tenant_name: str | None = None, include_revoked: bool = True) -> list[KeyInfo]:
    where = []
    if tenant_name is not None:
        where.append(Tenant.name == tenant_name)
    if not include_revoked:
        where.append(ApiKey.revoked_at.is_(None))
    with session_scope() as session:
        return _key_infos(session, *where)


def revoke_key(prefix_or_id: str) -> tuple[KeyInfo, bool]:
    """Revokes the one key with this id or prefix; returns it, and whether it was live
    until now. KeyNotFound when none matches; LookupError naming them when several do."""
    try:
        match = ApiKey.id == UUID(prefix_or_id)
    except ValueError:
        match = ApiKey.prefix == prefix_or_id
    with session_scope() as session:
        found = _key_infos(session, match)
        if not found:
            raise KeyNotFound(f"no API key with the id or prefix {prefix_or_id!r} (see `agr keys list`)")
        if len(found) > 1:
            raise LookupError(f"{len(found)} keys have the prefix {prefix_or_id!r}: revoke one by its id "
                              f"({', '.join(str(k.id) for k in found)})")
        revoked = session.execute(update(ApiKey).where(ApiKey.id == found[0].id, ApiKey.revoked_at.is_(None))
                                  .values(revoked_at=func.now()))
        was_live = revoked.rowcount == 1  # type: ignore[attr-defined]  # an UPDATE's result is a CursorResult
        return _key_infos(session, ApiKey.id == found[0].id)[0], was_live
