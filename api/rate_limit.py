"""Request counts per minute in Redis (the broker), one counter per fixed period each:

- per tenant, for requests with a valid key: all of a tenant's keys share its
  `rate_limit_per_minute`, so making more keys buys no more requests;
- per client address, for requests without a valid key (none, a wrong one, a revoked
  one): past `AGR_UNAUTHENTICATED_RATE_LIMIT_PER_MINUTE` they get 429 instead of 401
  (guessing keys, or hammering the API without one, is slowed down and visible). A valid
  key from the same address is not refused by it: one noisy client behind a shared
  address (a proxy, a NAT) cannot lock the tenants behind it out.

Fixed periods (the "fixed window" algorithm) let a burst of up to twice the limit straddle
a period's boundary; that is an acceptable price for one INCR per request. If Redis cannot
be reached the request is let through, and that is logged: readiness reports the broker,
and refusing all work would be worse.
"""

import logging
import math
import time

import redis

from core.broker_redis import broker_redis
from core.settings import get_settings

log = logging.getLogger(__name__)
PREFIX = "agr:rate"


def tenant_wait(tenant_id, limit_per_minute: int) -> int:
    """Counts a request of the tenant: 0 when it may go ahead, else the seconds to wait."""
    return _count(f"tenant:{tenant_id}", limit_per_minute)


def unauthenticated_wait(address: str, limit_per_minute: int) -> int:
    """Counts a request from `address` that had no valid key: 0 while the address is
    within its limit (the request gets its 401), else the seconds to wait (429)."""
    return _count(f"addr:{address}", limit_per_minute)


def _count(bucket: str, limit_per_minute: int) -> int:
    # The period is a minute unless AGR_RATE_LIMIT_PERIOD_S says otherwise (the limit is
    # scaled to it): a shorter one spreads a minute's allowance out, and lets a test see
    # clients wait out a 429 in seconds.
    period_s = get_settings().rate_limit_period_s
    limit = max(1, math.ceil(limit_per_minute * period_s / 60))
    now = time.time()
    period = int(now // period_s)
    name = f"{PREFIX}:{bucket}:{period}"
    try:
        pipe = broker_redis().pipeline()
        pipe.incr(name)
        pipe.expire(name, 2 * math.ceil(period_s))
        count, _ = pipe.execute()
    except redis.RedisError as exc:
        log.warning("rate limit not applied to %s, Redis unreachable: %s", bucket, exc)
        return 0
    if count <= limit:
        return 0
    return max(1, math.ceil((period + 1) * period_s - now))
