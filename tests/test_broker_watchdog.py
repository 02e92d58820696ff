"""The thread-pool reasoning worker's broker watchdog (workers/runtime/broker_watchdog.py), on a
Redis of each test's own that the test stalls or restarts, with LLM calls in flight.

- A stall (Redis blocked for 3 s: a BGSAVE fork, an fsync; made with CLIENT PAUSE) makes
  one ping slower than its 2 s timeout. The broker was never lost: the worker stays.
- A restart (a new Redis behind the URL) is what the worker must restart for. It stops
  taking messages, lets the calls in flight store their replies, then exits to be
  restarted; nothing is bought twice.
"""

import time

import pytest

from tests.private_services import PrivateRedis, this_process_uses
from tests.stack import Stack, question_item, tone_wav

LLM_S = 4.0  # each answer: longer than the stall, and than the broker's restart
JOBS = 4


@pytest.fixture
def broker_stack(database_url, scripted_llm, tmp_path):
    broker = PrivateRedis(tmp_path / "redis")
    broker.start()
    stack = Stack(database_url, broker.url, tmp_path / "stack")
    (tmp_path / "stack").mkdir()
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]')
    scripted_llm.delays.update(answerer=LLM_S)
    try:
        with this_process_uses(database_url, broker.url):
            stack.start("perception-cpu", "reasoning", "sweeper")
            yield stack, broker
    finally:
        stack.stop_all()
        broker.stop()


def _answers_in_flight(stack, scripted_llm, tmp_path):
    items = [question_item(f"q{k}", tone_wav(tmp_path / f"{k}.wav")) for k in range(JOBS)]
    batch_id = stack.submit(items, max_iters=0)
    deadline = time.monotonic() + 120
    while scripted_llm.in_flight < JOBS:
        assert time.monotonic() < deadline, f"{scripted_llm.in_flight} answers in flight, not {JOBS}"
        time.sleep(0.05)
    return batch_id


def test_a_stalled_broker_does_not_end_the_worker(broker_stack, scripted_llm, tmp_path):
    stack, broker = broker_stack
    reasoning = stack.workers["reasoning"]
    batch_id = _answers_in_flight(stack, scripted_llm, tmp_path)
    broker._client().execute_command("CLIENT", "PAUSE", "3000", "ALL")  # every command waits 3 s
    stack.wait_for_batch(batch_id, timeout=180, supervise=True)

    assert all(job.status == "succeeded" for job in stack.jobs(batch_id)), stack.job_summary(batch_id)
    assert stack.workers["reasoning"] is reasoning and reasoning.poll() is None, stack.log_of("reasoning")[-3000:]
    assert len(scripted_llm.requests_of("answerer")) == JOBS  # nothing asked twice
    assert "slow" in stack.log_of("reasoning")  # the stall is said, not acted on


def test_a_restarted_broker_lets_the_calls_in_flight_store_their_replies_before_the_worker_restarts(
        broker_stack, scripted_llm, tmp_path):
    stack, broker = broker_stack
    reasoning = stack.workers["reasoning"]
    batch_id = _answers_in_flight(stack, scripted_llm, tmp_path)
    broker.crash()
    broker.start()  # a new Redis (a new run id), empty: the worker must reconnect from scratch
    stack.wait_for_batch(batch_id, timeout=300, supervise=True)

    assert all(job.status == "succeeded" for job in stack.jobs(batch_id)), stack.job_summary(batch_id)
    # It exits to restart once the replies in flight are stored: that can come just after the
    # last of them ended the batch, so its exit is waited on, not read at once.
    assert reasoning.wait(timeout=120) is not None, stack.log_of("reasoning")[-3000:]
    assert len(scripted_llm.requests_of("answerer")) == JOBS  # the replies in flight were stored, not re-bought
    assert "waiting for 4 step(s) in flight" in stack.log_of("reasoning")
