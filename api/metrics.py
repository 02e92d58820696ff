"""Prometheus metrics read from the source of truth at scrape time: queue depths from the
broker (a window of each queue: workers/runtime/outbox.py), the backlog due behind it, jobs and
batches by status, step durations and LLM tokens from Postgres. Workers
are separate processes, so counting in the API process would miss their work; asking
Postgres sees everything, and a short cache keeps a scraping storm cheap."""

import logging
import time

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select

from core.broker_redis import broker_redis, queue_depth
from models import Batch, Job, LLMCall, Step, StepStatus, ToolCall
from models.db import session_scope
from workers.runtime.routing import QUEUES, queue_of

log = logging.getLogger(__name__)
STEP_BUCKETS_S = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800)
CACHE_S = 5.0


class StackCollector(Collector):
    def __init__(self) -> None:
        self._cached: tuple[float, list] = (0.0, [])

    def collect(self):
        taken, families = self._cached
        if time.monotonic() - taken > CACHE_S:
            families = [_queue_depth(), *_database_families()]
            self._cached = (time.monotonic(), families)
        yield from families


def _queue_depth() -> GaugeMetricFamily:
    gauge = GaugeMetricFamily("agr_queue_depth", "messages waiting in each broker queue", labels=["queue"])
    try:
        client = broker_redis()
        for queue in QUEUES:
            gauge.add_metric([queue], queue_depth(client, queue))
    except redis.RedisError as exc:
        log.warning("queue depth unavailable: %s", exc)
    return gauge


def _database_families() -> list:
    with session_scope() as session:
        jobs = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        batches = session.execute(select(Batch.status, func.count()).group_by(Batch.status)).all()
        tokens = session.execute(select(func.coalesce(func.sum(LLMCall.prompt_tokens), 0),
                                        func.coalesce(func.sum(LLMCall.completion_tokens), 0),
                                        func.count())).one()
        tools = session.execute(select(ToolCall.tool, ToolCall.cache_hit, func.count())
                                .group_by(ToolCall.tool, ToolCall.cache_hit)).all()
        steps = _step_histogram_rows(session)
        due = session.execute(select(Step.kind, func.count())
                              .where(Step.status == StepStatus.QUEUED, Step.send_due_at <= func.now())
                              .group_by(Step.kind)).all()
    return [
        _steps_due(due),
        _gauge("agr_jobs", "jobs by status", "status", jobs),
        _gauge("agr_batches", "batches by status", "status", batches),
        _tokens(tokens),
        _tool_calls(tools),
        _step_histogram(steps),
    ]


def _steps_due(rows) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily("agr_steps_due", "steps due in Postgres, waiting for room in their queue's window",
                              labels=["queue"])
    by_queue = dict.fromkeys(QUEUES, 0)
    for kind, count in rows:
        by_queue[queue_of(kind)] += count
    for queue, count in by_queue.items():
        gauge.add_metric([queue], count)
    return gauge


def _gauge(name: str, doc: str, label: str, rows) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, doc, labels=[label])
    for value, count in rows:
        gauge.add_metric([str(value)], count)
    return gauge


def _tokens(row) -> CounterMetricFamily:
    prompt, completion, calls = row
    counter = CounterMetricFamily("agr_llm_usage", "reasoner LLM usage: prompt and completion tokens, calls",
                                  labels=["kind"])
    counter.add_metric(["prompt"], prompt)
    counter.add_metric(["completion"], completion)
    counter.add_metric(["calls"], calls)  # not tokens, but read beside them
    return counter


def _tool_calls(rows) -> CounterMetricFamily:
    counter = CounterMetricFamily("agr_tool_calls", "perception tool calls", labels=["tool", "cache_hit"])
    for tool, hit, count in rows:
        counter.add_metric([tool, str(hit).lower()], count)
    return counter


def _step_histogram_rows(session):
    duration = func.extract("epoch", Step.finished_at - Step.created_at)
    buckets = [func.sum(case((duration <= b, 1), else_=0)) for b in STEP_BUCKETS_S]
    return session.execute(
        select(Step.kind, func.count(), func.coalesce(func.sum(duration), 0), *buckets)
        .where(Step.status == StepStatus.DONE).group_by(Step.kind)
    ).all()


def _step_histogram(rows) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "agr_step_seconds", "time from a step being persisted (queued) to its result committed",
        labels=["kind"])
    for kind, count, total, *cumulative in rows:
        buckets = [(str(b), int(c or 0)) for b, c in zip(STEP_BUCKETS_S, cumulative, strict=True)]
        family.add_metric([str(kind)], buckets + [("+Inf", count)], float(total))
    return family
