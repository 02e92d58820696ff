"""Recovery under a deep backlog: 2,000 reasoning steps queued behind a slow LLM (a
window of them in the broker, the rest due in Postgres), and the sweeper, the outbox and
batch expiry still act within a bound set by their settings, not by how long the backlog
takes to drain (here it would take minutes)."""

import json
import time
from base64 import b64decode
from datetime import timedelta

import redis
from sqlalchemy import func, select

from core.broker_redis import queue_depth, queue_keys
from models import Batch, BatchStatus, Step, StepStatus
from models.db import session_scope
from tests.stack import planning_steps, question_item, tone_wav
from workers.runtime import outbox

BACKLOG = 2000
LLM_S = 1.0
THREADS = 4  # the reasoning worker gets through ~4 steps a second: 2,000 take ~8 minutes
SWEEP_S, LEASE_S, LOST_AFTER_S = 1.0, 4.0, 3.0
WINDOW = 40  # the reasoning queue's messages in the broker: ten seconds of work ahead of a new one
GPU_S = 6.0  # the killed perception step: longer than its lease


def _drop_message(client: redis.Redis, step_id: int) -> None:
    """Take one step's message out of the reasoning queue: lost in the broker."""
    key = queue_keys("reasoning")[2]
    for raw in client.lrange(key, 0, -1):
        if json.loads(b64decode(json.loads(raw)["body"]))[0] == [step_id]:
            assert client.lrem(key, 1, raw) == 1
            return
    raise AssertionError(f"no message of step {step_id} in the queue")


def _step(step_id: int) -> Step:
    with session_scope() as session:
        return session.get(Step, step_id)


def _wait(condition, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


def test_sweeper_outbox_and_expiry_keep_their_bounds_behind_a_2000_step_backlog(stack, scripted_llm, tmp_path):
    scripted_llm.delays.update(planner=LLM_S, answerer=LLM_S)
    stack.configure(llm_base_url=scripted_llm.base_url, reasoning_concurrency=THREADS, sweep_interval_s=SWEEP_S,
                    step_lease_s=LEASE_S, lost_message_after_s=LOST_AFTER_S, dispatch_window=WINDOW,
                    coarse_tools='["signal_facts", "simulated_gpu"]', simulated_gpu_s=GPU_S)
    broker = redis.Redis.from_url(stack.env["AGR_BROKER_URL"])

    # The message that goes missing in the busy queue is sent first, the backlog's window
    # after it (what a top-up sends of a lone batch: its oldest); the rest of it stays due.
    _, (lost,) = planning_steps(tmp_path, "lost", 1)
    outbox.send_now([lost])
    _, backlog = planning_steps(tmp_path, "backlog", BACKLOG)
    assert outbox.send_now(backlog[: WINDOW - 1]) == WINDOW - 1
    _drop_message(broker, lost)
    # A step committed by a process that died before any top-up sent it.
    _, (unsent,) = planning_steps(tmp_path, "unsent", 1)
    # A batch whose window closes while its only job waits behind a full window.
    expiring, (buried,) = planning_steps(tmp_path, "expiring", 1, completion_window=timedelta(seconds=12))
    outbox.send_now([buried])

    stack.start()
    # The perception worker is killed in the middle of a GPU step longer than its lease.
    gpu_job = stack.submit([question_item("gpu", tone_wav(tmp_path / "gpu.wav"))], max_iters=0)
    running = stack.wait_for_running_step("perceive_gpu", gpu_job, timeout=120)
    stack.kill("perception")
    stack.start_role("perception")

    # Each recovery within its own bound, however deep the queue.
    retried = _wait(lambda: (s := _step(running.id)).attempts >= 2 and s.claimed_at and s, "the GPU step's re-run")
    lapsed_at = running.lease_expires_at
    unsent_claim, lost_claim = (_wait(lambda: _step(i).claimed_at, f"step {i}'s claim") for i in (unsent, lost))
    with session_scope() as session:
        batch = _wait(lambda: session.get(Batch, expiring, populate_existing=True).status == BatchStatus.EXPIRED
                      and session.get(Batch, expiring), "the expiry")
    in_broker = queue_depth(broker, "reasoning")
    with session_scope() as session:  # in the broker or due in Postgres
        waiting = session.scalar(select(func.count()).where(Step.id.in_(backlog), Step.status == StepStatus.QUEUED))
    with session_scope() as session:  # when consumers started passing the lost message by
        consuming = session.scalar(select(func.min(Step.claimed_at)).where(Step.id.in_(backlog)))
    rerun_s = (retried.claimed_at - lapsed_at).total_seconds()
    unsent_s, lost_s = ((claim - consuming).total_seconds() for claim in (unsent_claim, lost_claim))
    print(f"lease lapse -> re-run {rerun_s:.1f} s; after consumers started: unsent claimed at {unsent_s:.1f} s, "
          f"lost at {lost_s:.1f} s; expiry {(batch.ended_at - batch.expires_at).total_seconds():.1f} s late; "
          f"{waiting} steps still queued, {in_broker} messages in the broker")

    assert waiting >= BACKLOG / 2  # all of it happened with the backlog still there
    assert in_broker <= WINDOW + 1  # a window (and the buried one's message), not the backlog
    # The dead worker's step runs again within two sweeps of its lease lapsing (its new
    # message goes ahead of the queue; the GPU queue itself is idle here).
    assert rerun_s <= 2 * SWEEP_S + 2
    # The unsent step goes out with the first top-up, its batch's turn before the backlog's
    # next: claimed behind at most a window (every thread busy) of the consumers starting.
    assert unsent_s <= (WINDOW / THREADS + 2) * LLM_S + 2 * SWEEP_S + 2
    # The lost one: consumers passed it at once; LOST_AFTER_S and a sweep later it is re-sent.
    assert lost_s <= LOST_AFTER_S + 2 * SWEEP_S + 2 * LLM_S + 4
    assert (batch.ended_at - batch.expires_at).total_seconds() <= 2 * SWEEP_S + 1
    # At most one message outstanding per queued step: a re-send only for the lost one.
    assert [_step(i).sends for i in (lost, unsent, buried, running.id)] == [2, 1, 1, 2]
    assert stack.jobs(gpu_job)[0].status == "in_progress"  # its reasoning waits its turn in the backlog
