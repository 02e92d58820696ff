"""Cross-job batching on the GPU worker, with a tiny random Qwen2-Audio loaded by the real
worker process: queued GPU steps of different jobs share one padded forward pass, each
job still gets its own caption, and CPU tools run on the CPU worker."""

import time

from sqlalchemy import func, select

from api.evidence_chain import evidence_chain
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
    stack.start("perception-cpu", "reasoning", "sweeper")  # the GPU worker comes later
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
    # A job's evidence says nothing of its pass's size: not the size, and not the pass's
    # time either, which grows with its batch-mates (perhaps other tenants' jobs).
    with session_scope() as session:
        chains = [evidence_chain(session, job) for job in jobs]
    shown = [t for chain in chains for i in chain["iterations"] for t in i["tool_calls"] if t["tool"] == "caption"]
    assert len(shown) == JOBS and all(t["latency_ms"] is None and "batch_size" not in t for t in shown), shown
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


def test_a_crashing_forward_pass_and_an_unstorable_result_leave_no_claim_behind(stack, scripted_llm, tmp_path):
    """A batch whose forward pass raises, and one job's result that Postgres refuses: the
    batch-mates finish (each retried alone), the two bad jobs error after their attempts,
    and no step is left running, its lease renewed for ever, once the workers are idle."""
    from local_stack import processes
    from tests.faulty_gpu import POISON_COMPUTE_S, POISON_REPLY_S

    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["simulated_gpu"]', simulated_gpu_s=0.1,
                    gpu_batch_size=BATCH, gpu_batch_wait_s=0, max_attempts=3)
    lengths = {"crash": POISON_COMPUTE_S, "nul": POISON_REPLY_S} | {f"good{i}": 1.0 + 0.1 * i for i in range(6)}
    items = [question_item(name, tone_wav(tmp_path / f"{name}.wav", seconds=s)) for name, s in lengths.items()]
    stack.start("perception-cpu", "reasoning", "sweeper")
    batch_id = stack.submit(items, max_iters=0)
    _wait_for_queued_gpu_steps(len(items), stack)
    stack.workers["perception"] = processes.start_worker("perception", stack.env, tmp_path / "perception.log",
                                                         app="tests.faulty_gpu", name="perception")
    stack.wait_for_batch(batch_id, timeout=300)

    jobs = {j.custom_id: j for j in stack.jobs(batch_id)}
    assert all(jobs[f"good{i}"].status == "succeeded" for i in range(6)), stack.job_summary(batch_id)
    assert jobs["crash"].status == "errored" and "injected: the forward pass crashed" in jobs["crash"].error
    assert jobs["nul"].status == "errored" and "NUL" in jobs["nul"].error, jobs["nul"].error
    assert "failed after 3 attempt(s)" in jobs["crash"].error and "failed after 3 attempt(s)" in jobs["nul"].error
    with session_scope() as session:
        running = session.scalar(select(func.count()).select_from(Step).join(Job, Job.id == Step.job_id)
                                 .where(Job.batch_id == batch_id, Step.status == "running"))
        retried_alone = session.scalars(select(ToolCall.batch_size).join(Job, Job.id == ToolCall.job_id)
                                        .where(Job.batch_id == batch_id, Job.custom_id.like("good%"))).all()
    assert running == 0
    assert 1 in retried_alone  # the crash's batch-mates were tried again, each alone
