"""One engine per process, created lazily so a forked Celery child never inherits the
parent's connections (psycopg connections must not cross a fork)."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

# This process's own sizes for its pool, over the settings' AGR_DB_POOL_SIZE and
# AGR_DB_POOL_OVERFLOW (a reasoning worker's, from its threads). A process running one
# task at a time (the API's request threads, the sweeper, a prefork child) needs few.
_pool: dict[str, int] = {}


def size_pool_for_threads(threads: int) -> None:
    """Size this process's pool for `threads` concurrent tasks (a reasoning worker's thread
    pool); called before the first connection is made.

    A reasoning step holds a connection only for its short transactions (claim, context,
    stored reply, commit: milliseconds) and none while it waits seconds on the LLM, so its
    threads seldom want one at the same moment: a quarter of them at once, and as many again
    at a burst, leaves room for every claim at start-up without taking a connection per
    thread from Postgres (100 by default, shared by every role)."""
    quarter = max(5, -(-threads // 4))
    _pool.update(pool_size=quarter, max_overflow=quarter)
    reset_after_fork()


@lru_cache
def get_engine() -> Engine:
    url = get_settings().database_url
    if not url:
        raise RuntimeError(
            "AGR_DATABASE_URL is not set; start the stack with `agr run` or point it at Postgres"
        )
    # A connect to a black-holed server (a fail-over in progress) gives up after 10 s
    # instead of the kernel's minutes, so callers can wait the outage out (core/database_outage.py).
    settings = get_settings()
    pool = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_pool_overflow,
            "pool_timeout": settings.db_pool_timeout_s} | _pool
    engine = create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10}, **pool)
    event.listen(engine, "handle_error", _demoted_primary_is_a_lost_connection)
    return engine


READ_ONLY_SQL_TRANSACTION = "25006"


def _demoted_primary_is_a_lost_connection(context) -> None:
    """After a fail-over the old primary still takes connections, read-only: every write on
    them fails with SQLSTATE 25006 for as long as they are kept. Counted as a lost
    connection, the pool is emptied (the next connection finds the new primary, or the same
    server once it is writable) and callers wait it out as an outage
    (core/database_outage.py), instead of failing the work and keeping the connections."""
    if getattr(context.original_exception, "sqlstate", None) == READ_ONLY_SQL_TRANSACTION:
        context.is_disconnect = True


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
