"""One engine per process, created lazily so a forked Celery child never inherits the
parent's connections (psycopg connections must not cross a fork)."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings


@lru_cache
def get_engine() -> Engine:
    url = get_settings().database_url
    if not url:
        raise RuntimeError(
            "AGR_DATABASE_URL is not set; start the stack with `agr run` or point it at Postgres"
        )
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


@lru_cache
def _session_factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A transaction: committed on success, rolled back on any error."""
    with _session_factory().begin() as session:
        yield session


def reset_after_fork() -> None:
    """Forget the parent's engine; the child builds its own on first use."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
    get_engine.cache_clear()
    _session_factory.cache_clear()
