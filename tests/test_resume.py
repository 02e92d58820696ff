"""kill -9 a worker in the middle of a step: a new worker resumes the job from Postgres,
with exactly one row per (job, iteration, step) and no LLM reply paid for twice."""

import time
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select, update

from models import Iteration, Job, LLMCall, Step, ToolCall
from models.db import session_scope
from models.status import StepKind
from tests.stack import question_item, tone_wav
from workers.runtime.dispatch import send_step


def _long_speech(devset, path):
    """About a minute of speech (the devset's spoken clips, concatenated): a perception
    step long enough to be killed in the middle of."""
    clips = [sf.read(p, dtype="float32")[0] for p in sorted((devset / "audio").glob("dev-*.wav"))]
    sf.write(str(path), np.concatenate(clips), 16000)
    return path


def _steps(job_id) -> list[Step]:
    with session_scope() as session:
        return list(session.scalars(select(Step).where(Step.job_id == job_id)))


def _assert_one_row_per_step(job_id):
    keys = Counter((s.iteration, s.kind) for s in _steps(job_id))
    assert keys and max(keys.values()) == 1
    with session_scope() as session:
        iterations = session.scalars(select(Iteration.index).where(Iteration.job_id == job_id)).all()
        calls = session.execute(select(ToolCall.iteration, ToolCall.call_index).where(ToolCall.job_id == job_id)).all()
    assert sorted(iterations) == list(range(len(iterations)))
    assert len(calls) == len(set(calls))


def test_kill_perception_worker_mid_step_then_resume(stack, scripted_llm, devset, tmp_path):
    stack.configure(llm_base_url=scripted_llm.base_url)
    stack.start()
    item = question_item("long", _long_speech(devset, tmp_path / "long.wav"))
    batch_id = stack.submit([item])

    # Transcribing: on this CPU-only machine a CPU tool, run by the CPU perception worker.
    running = stack.wait_for_running_step("perceive_cpu", batch_id)
    stack.kill("perception-cpu")
    with session_scope() as session:
        assert session.get(Step, running.id).status == "running"  # killed before it finished
        assert session.scalar(select(Iteration).where(Iteration.job_id == running.job_id)) is None
    stack.start_role("perception-cpu")
    stack.wait_for_batch(batch_id, timeout=180)

    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    perceive = next(s for s in _steps(job.id) if s.kind == "perceive_cpu" and s.iteration == 0)
    assert perceive.attempts == 2 and "never finished" in perceive.last_error
    _assert_one_row_per_step(job.id)
    with session_scope() as session:
        document = session.scalar(select(Iteration.document).where(Iteration.job_id == job.id))
    assert "transcription" in document and "no speech recognised" not in document
    assert len(scripted_llm.requests) == 2  # planner + answerer, each paid once


def test_kill_reasoning_worker_mid_llm_call_then_resume(stack, scripted_llm, tmp_path):
    scripted_llm.delays["planner"] = 3.0
    stack.configure(llm_base_url=scripted_llm.base_url)
    stack.start()
    batch_id = stack.submit([question_item("q", tone_wav(tmp_path / "t.wav"))])

    stack.wait_for_running_step("plan", batch_id)
    deadline = time.monotonic() + 30
    while not scripted_llm.requests_of("planner") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert scripted_llm.requests_of("planner"), "the planner call never started"
    stack.kill("reasoning")
    scripted_llm.delays["planner"] = 0.0
    stack.start_role("reasoning")
    stack.wait_for_batch(batch_id, timeout=120)

    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    plan = next(s for s in _steps(job.id) if s.kind == "plan")
    assert plan.attempts == 2
    _assert_one_row_per_step(job.id)
    with session_scope() as session:
        stored = session.scalar(select(LLMCall.id).where(LLMCall.job_id == job.id).order_by(LLMCall.id).limit(1))
        n_calls = len(session.scalars(select(LLMCall.id).where(LLMCall.job_id == job.id)).all())
    assert stored is not None
    # Only the call cut off by the kill was asked again: every completed reply was paid once.
    assert len(scripted_llm.requests) == n_calls + 1
    assert len(scripted_llm.requests_of("planner")) == 2


def test_a_step_holding_the_interpreter_past_its_lease_keeps_it(stack, scripted_llm, devset, tmp_path):
    """The music tool's pitch tracker (librosa's pyin: a numba loop that never lets go of
    Python's interpreter lock) runs for seconds on half a minute of clicks, longer than
    this lease. The step must keep its lease and finish on its first attempt."""
    clicks = sf.read(devset / "audio" / "dev-tempo-00.wav", dtype="float32")[0]
    sf.write(str(tmp_path / "clicks.wav"), np.tile(clicks, 3), 16000)  # 36 s
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["music"]', step_lease_s="3")
    stack.start()
    batch_id = stack.submit([question_item("clicks", tmp_path / "clicks.wav")])
    stack.wait_for_batch(batch_id, timeout=180)

    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    perceive = next(s for s in _steps(job.id) if s.kind == "perceive_cpu")
    assert perceive.attempts == 1, perceive.last_error
    with session_scope() as session:
        document = session.scalar(select(Iteration.document).where(Iteration.job_id == job.id))
    assert "BPM" in document


def test_replaying_a_step_whose_reply_is_stored_pays_nothing(stack, scripted_llm, tmp_path):
    """The state a crash between 'LLM reply stored' and 'step committed' leaves behind,
    made directly: the answer step is re-run and must reuse the stored reply."""
    stack.configure(llm_base_url=scripted_llm.base_url)
    stack.start()
    batch_id = stack.submit([question_item("q", tone_wav(tmp_path / "t.wav"))])
    stack.wait_for_batch(batch_id)
    (job,) = stack.jobs(batch_id)
    paid = len(scripted_llm.requests)

    with session_scope() as session:
        answer_step = session.scalar(select(Step).where(Step.job_id == job.id, Step.kind == "answer"))
        answer_step.status, answer_step.finished_at = "queued", None
        session.execute(update(Job).where(Job.id == job.id).values(status="in_progress", answer=None))
        batch = job.batch_id
    from models import Batch

    with session_scope() as session:
        session.get(Batch, batch).status = "in_progress"
    send_step(answer_step.id, StepKind.ANSWER)
    stack.wait_for_batch(batch_id)

    (again,) = stack.jobs(batch_id)
    assert again.status == "succeeded" and again.answer == job.answer
    assert len(scripted_llm.requests) == paid


pytestmark = pytest.mark.timeout(300)
