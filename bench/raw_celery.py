"""The baseline for bench/overhead.py: bare Celery tasks that do nothing but hand on.

One "job" here is a chain of no-op hops over the same queues our pipeline uses per job
(perception, then reasoning twice), on the same broker, with the same delivery settings
(late acks, requeue on worker loss, prefetch 1, results ignored). The last hop bumps a
Redis counter so the benchmark can see the job finish.

With `llm=True` the two reasoning hops each also make one chat completion through the
`openai` package to AGR_LLM_BASE_URL, as our planner and answerer do: the difference
between that and our pipeline is then the cost of our Postgres bookkeeping alone.
"""

import os
from functools import lru_cache

import openai
import redis
from celery import Celery

from core.broker_redis import broker_redis

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
    return broker_redis(BROKER_URL)


def done_key(run: str) -> str:
    return f"bench:raw:{run}:done"


@lru_cache(maxsize=1)
def llm_client() -> openai.OpenAI:
    return openai.OpenAI(base_url=os.environ["AGR_LLM_BASE_URL"], api_key="not-needed")


def ask_llm() -> None:
    # The scripted server answers by the agent named in the system prompt.
    llm_client().chat.completions.create(
        model="scripted", response_format={"type": "json_object"},
        messages=[{"role": "system", "content": "You are the planning agent."},
                  {"role": "user", "content": "Is the evidence sufficient?"}],
    )


@app.task(name="bench.hop")
def hop(run: str, index: int, llm: bool = False) -> None:
    if llm and QUEUES[index] == "raw-reasoning":
        ask_llm()
    if index + 1 < len(QUEUES):
        hop.apply_async((run, index + 1, llm), queue=QUEUES[index + 1])
    else:
        redis_client().incr(done_key(run))


def send_jobs(run: str, count: int, llm: bool = False) -> None:
    for _ in range(count):
        hop.apply_async((run, 0, llm), queue=QUEUES[0])
