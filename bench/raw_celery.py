"""The baseline for bench/overhead.py: bare Celery tasks that do nothing but hand on.

One "job" here is a chain of no-op hops over the same queues our pipeline uses per job
(perception, then reasoning twice), on the same broker, with the same delivery settings
(late acks, requeue on worker loss, prefetch 1, results ignored). The last hop bumps a
Redis counter so the benchmark can see the job finish.
"""

import os

import redis
from celery import Celery

QUEUES = ("raw-perception", "raw-reasoning", "raw-reasoning")  # one per hop, like perceive/plan/answer
BROKER_URL = os.environ.get("AGR_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("raw", broker=BROKER_URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
)


def redis_client() -> redis.Redis:
    # Kombu spells a unix socket redis+socket:///path; redis-py spells it unix:///path.
    if BROKER_URL.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=BROKER_URL.removeprefix("redis+socket://"))
    return redis.Redis.from_url(BROKER_URL)


def done_key(run: str) -> str:
    return f"bench:raw:{run}:done"


@app.task(name="bench.hop")
def hop(run: str, index: int) -> None:
    if index + 1 < len(QUEUES):
        hop.apply_async((run, index + 1), queue=QUEUES[index + 1])
    else:
        redis_client().incr(done_key(run))


def send_jobs(run: str, count: int) -> None:
    for _ in range(count):
        hop.apply_async((run, 0), queue=QUEUES[0])
