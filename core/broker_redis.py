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


# Kombu's Redis transport keeps a queue as one list per priority step: the queue's own
# name for priority 0, "<queue>\x06\x16<step>" for the others (its defaults).
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEPARATOR = "\x06\x16"


def lane_key(queue: str, priority: int) -> str:
    """The list holding `queue`'s messages of `priority` (one of PRIORITY_STEPS)."""
    return queue if priority == 0 else f"{queue}{PRIORITY_SEPARATOR}{priority}"


def queue_keys(queue: str) -> list[str]:
    return [lane_key(queue, step) for step in PRIORITY_STEPS]


def queue_depth(client: redis.Redis, queue: str) -> int:
    """Messages waiting in `queue`, at every priority."""
    pipe = client.pipeline(transaction=False)
    for key in queue_keys(queue):
        pipe.llen(key)
    return sum(pipe.execute())
