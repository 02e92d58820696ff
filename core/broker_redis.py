"""A plain Redis client on the broker, for what Celery does not do for us: queue depths,
rate-limit counters, readiness pings."""

from functools import lru_cache

import redis

from core.settings import get_settings


@lru_cache
def broker_redis(url: str | None = None, timeout_s: float = 2.0) -> redis.Redis:
    url = url or get_settings().broker_url
    if not url:
        raise RuntimeError("AGR_BROKER_URL is not set")
    # Kombu spells a unix socket redis+socket:///path (the embedded broker); redis-py, unix:///path.
    if url.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"), socket_timeout=timeout_s)
    return redis.Redis.from_url(url, socket_timeout=timeout_s)
