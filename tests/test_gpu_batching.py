"""Cross-job batching on the GPU worker, with a tiny random Qwen2-Audio loaded by the real
worker process: queued GPU steps of different jobs share one padded forward pass, each
job still gets its own caption, and CPU tools run on the CPU worker."""

import time

from sqlalchemy import func, select

from models import Job, Step, ToolCall
from models.db import session_scope
from tests.stack import question_item, tone_wav
from tests.tiny_models import build_tiny_qwen2_audio

JOBS, BATCH = 8, 4


def _queued_gpu_steps() -> int:
    with session_scope() as session:
        return session.scalar(
            select(func.count()).select_from(Step).where(Step.kind == "perceive_gpu", Step.status == "queued")
        )


def _wait_for_queued_gpu_steps(count: int, stack, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while _queued_gpu_steps() < count:
        assert time.monotonic() < deadline, f"only {_queued_gpu_steps()} GPU steps queued\n{stack.logs()}"
        time.sleep(0.2)


def _queue_gpu_steps_of_distinct_jobs(stack, scripted_llm, tmp_path) -> str:
    """Queues JOBS caption steps with the GPU worker still down, and returns the batch id."""
    alm_dir = build_tiny_qwen2_audio(tmp_path / "tiny-alm")
    stack.configure(
        llm_base_url=scripted_llm.base_url, alm_model=str(alm_dir), alm_device="cpu", alm_max_new_tokens=6,
        gpu_batch_size=BATCH, gpu_batch_wait_s=0, coarse_tools='["signal_facts", "caption"]',
    )
    # Distinct audio per job, so no result is a cache hit of another job's.
    items = [question_item(f"q{i}", tone_wav(tmp_path / f"t{i}.wav", freq=200 + 50 * i)) for i in range(JOBS)]
    stack.start("perception-cpu", "reasoning", "beat")  # the GPU worker comes later
    batch_id = stack.submit(items, max_iters=0)
    _wait_for_queued_gpu_steps(JOBS, stack)
    return batch_id


def _caption_calls(batch_id) -> list:
    with session_scope() as session:
        return session.execute(
            select(Job.custom_id, ToolCall.tool, ToolCall.device, ToolCall.batch_size, ToolCall.text)
            .join(Job, Job.id == ToolCall.job_id).where(Job.batch_id == batch_id)
        ).all()


def test_queued_gpu_steps_of_different_jobs_share_a_forward_pass(stack, scripted_llm, tmp_path):
    batch_id = _queue_gpu_steps_of_distinct_jobs(stack, scripted_llm, tmp_path)
    stack.start_role("perception")
    stack.wait_for_batch(batch_id, timeout=300)

    jobs = stack.jobs(batch_id)
    assert [j.status for j in jobs] == ["succeeded"] * JOBS, stack.job_summary(batch_id)
    calls = _caption_calls(batch_id)
    captions = [c for c in calls if c.tool == "caption"]
    assert sorted(c.custom_id for c in captions) == sorted(f"q{i}" for i in range(JOBS))  # one per job
    assert [c.batch_size for c in captions] == [BATCH] * JOBS  # two full passes of four
    assert all(c.text for c in captions)
    assert {c.device for c in calls if c.tool == "signal_facts"} == {"cpu"}
    worker_logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert "workers.tasks.perceive_cpu[" in worker_logs["perception-cpu.log"]  # "Task NAME[id] received"
    assert "workers.tasks.perceive_cpu[" not in worker_logs["perception.log"]


def test_a_gpu_step_whose_worker_died_under_it_runs_alone(stack, scripted_llm, tmp_path):
    """If a step's input is what kills the worker, batching it again would charge every
    batch-mate an attempt per crash; so a step tried before gets a forward pass of its own."""
    batch_id = _queue_gpu_steps_of_distinct_jobs(stack, scripted_llm, tmp_path)
    with session_scope() as session:  # what the claim leaves after a worker died mid-step
        suspect = session.scalars(
            select(Step).join(Job, Job.id == Step.job_id)
            .where(Job.batch_id == batch_id, Job.custom_id == "q2", Step.kind == "perceive_gpu")
        ).one()
        suspect.attempts = 1
        suspect.last_error = "attempt 1 of the perceive_gpu step never finished"
    stack.start_role("perception")
    stack.wait_for_batch(batch_id, timeout=300)

    jobs = stack.jobs(batch_id)
    assert [j.status for j in jobs] == ["succeeded"] * JOBS, stack.job_summary(batch_id)
    sizes = {c.custom_id: c.batch_size for c in _caption_calls(batch_id) if c.tool == "caption"}
    assert sizes.pop("q2") == 1
    # The seven others: one full pass of four, then the three left.
    assert sorted(sizes.values()) == [3, 3, 3, BATCH, BATCH, BATCH, BATCH], sizes
