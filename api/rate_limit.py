"""Requests per API key per minute, counted in Redis (the broker), one fixed window each.

Fixed windows let a burst of up to twice the limit straddle a minute boundary; that is
an acceptable price for one INCR per request. If Redis cannot be reached the request is
let through: readiness reports the broker, and refusing all work would be worse.
"""

import logging
import time
import redis

from core.broker_redis import broker_redis

log = logging.getLogger(__name__)


def seconds_until_allowed(key_id, limit_per_minute: int) -> int:
    """0 when the request may go ahead, else how long to wait (for Retry-After)."""
    now = time.time()
    window = int(now // 60)
    name = f"agr:rate:{key_id}:{window}"
    try:
        pipe = broker_redis().pipeline()
        pipe.incr(name)
        pipe.expire(name, 120)
        count, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("rate limit not applied, Redis unreachable: %s", exc)
        return 0
    if count <= limit_per_minute:
        return 0
    return max(1, int((window + 1) * 60 - now))
