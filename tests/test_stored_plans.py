"""A job does what was planned when its steps were made, whatever the worker's settings.

The deployment (the submitter) plans the coarse round from its AGR_COARSE_TOOLS; here the
CPU and GPU perception workers are configured with other coarse tools, and the job is
replayed on a reasoning worker that has an audio-language model the submitter did not:
every round runs the stored calls at their stored indices, the replay builds the same
prompts (no LLM reply is paid twice), and a worker without a stored call's tool fails the
attempt naming the tool instead of planning a round of its own.
"""

import time

import pytest
from sqlalchemy import select, update

from models import Batch, Iteration, Job, LLMCall, Step, ToolCall
from models.db import session_scope
from models.status import StepKind
from tests.stack import question_item, tone_wav
from workers.runtime.dispatch import send_step

GPU_S = 0.05
DEPLOYMENT = dict(coarse_tools='["signal_facts", "simulated_gpu"]', simulated_gpu_s=GPU_S, llm_model="reasoner-x")
MODELS = {"signal_facts": "numpy", "simulated_gpu": f"simulated-{GPU_S}s"}
INSUFFICIENT = {"reason": "look again at the start", "sufficient": False, "confidence": 0.2,
                "missing": ["the first half second"]}
RELISTEN = {"calls": [{"tool": "simulated_gpu", "args": {"start": 0.0, "end": 0.5}},
                      {"tool": "signal_facts", "args": {"start": 0.0, "end": 0.5}}]}


def _tool_calls(job_id) -> dict[tuple[int, int], tuple[str, str]]:
    with session_scope() as session:
        rows = session.execute(select(ToolCall.iteration, ToolCall.call_index, ToolCall.tool, ToolCall.model)
                               .where(ToolCall.job_id == job_id)).all()
    return {(it, index): (tool, model) for it, index, tool, model in rows}


def _replay_from_first_plan(job: Job) -> None:
    """The state a crash of every step from round 0's planning on would leave, made
    directly: those steps queued again, the job and batch unfinished."""
    with session_scope() as session:
        steps = session.scalars(select(Step).where(Step.job_id == job.id)).all()
        for step in steps:
            if step.iteration > 0 or step.kind not in (StepKind.PERCEIVE_CPU, StepKind.PERCEIVE_GPU):
                step.status, step.finished_at = "queued", None
        session.execute(update(Job).where(Job.id == job.id).values(status="in_progress", answer=None))
        session.get(Batch, job.batch_id).status = "in_progress"
        first_plan = next(s.id for s in steps if (s.iteration, s.kind) == (0, StepKind.PLAN))
    send_step(first_plan, StepKind.PLAN)


def test_workers_with_other_tool_settings_run_the_stored_plan_and_a_replay_pays_nothing(
        stack, scripted_llm, tmp_path):
    scripted_llm.default_replies.update(planner=INSUFFICIENT, interaction=RELISTEN)
    stack.configure(llm_base_url=scripted_llm.base_url, **DEPLOYMENT)
    stack.start_role("perception-cpu", coarse_tools='["simulated_gpu", "signal_facts"]')
    stack.start_role("perception", coarse_tools='["simulated_gpu"]')
    stack.start_role("reasoning")
    stack.start_role("sweeper")
    batch_id = stack.submit([question_item("q", tone_wav(tmp_path / "t.wav"))], max_iters=1)
    stack.wait_for_batch(batch_id, timeout=90)

    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    # Round 0 is the deployment's coarse plan, round 1 the interaction agent's, each call
    # at its planned index, and the audit names the model of every call.
    calls = _tool_calls(job.id)
    assert calls == {
        (0, 0): ("signal_facts", MODELS["signal_facts"]), (0, 1): ("simulated_gpu", MODELS["simulated_gpu"]),
        (1, 0): ("simulated_gpu", MODELS["simulated_gpu"]), (1, 1): ("signal_facts", MODELS["signal_facts"]),
    }
    with session_scope() as session:
        coarse = session.scalar(select(Iteration.document).where(Iteration.job_id == job.id, Iteration.index == 0))
        llm_models = session.scalars(select(LLMCall.model).where(LLMCall.job_id == job.id)).all()
        stored = {(s.iteration, s.kind): s.calls for s in session.scalars(select(Step).where(Step.job_id == job.id))}
    # What each perception step ran is on its row, both steps of a round alike.
    assert stored[(0, "perceive_cpu")] == stored[(0, "perceive_gpu")] == [
        {"index": 0, "tool": "signal_facts", "args": {}, "model": MODELS["signal_facts"], "needs_speech": False},
        {"index": 1, "tool": "simulated_gpu", "args": {}, "model": MODELS["simulated_gpu"], "needs_speech": False},
    ]
    assert [c["tool"] for c in stored[(1, "perceive_gpu")]] == ["simulated_gpu", "signal_facts"]
    assert "signal_facts" in coarse and "simulated model heard" in coarse
    assert sorted(llm_models) == ["reasoner-x"] * 4  # planner, interaction, planner, answerer
    paid = len(scripted_llm.requests)
    assert paid == 4

    # The same job replayed from its first planning step on a reasoning worker that has an
    # audio-language model (more tools it could show the agents) and other coarse tools.
    stack.kill("reasoning")
    stack.start_role("reasoning", alm_model="an/alm-the-submitter-did-not-have", coarse_tools='["signal_facts"]')
    _replay_from_first_plan(job)
    stack.wait_for_batch(batch_id, timeout=60)

    (again,) = stack.jobs(batch_id)
    assert again.status == "succeeded" and again.answer == job.answer, again.error
    assert len(scripted_llm.requests) == paid, [r["agent"] for r in scripted_llm.requests[paid:]]
    assert _tool_calls(job.id) == calls


def test_a_worker_without_a_stored_calls_tool_fails_the_attempt_naming_it(stack, scripted_llm, tmp_path):
    stack.configure(llm_base_url=scripted_llm.base_url, max_attempts=2, **DEPLOYMENT)
    stack.start_role("perception-cpu")
    stack.start_role("perception", simulated_gpu_s=None)  # this GPU worker has no simulated model
    stack.start_role("sweeper")
    batch_id = stack.submit([question_item("q", tone_wav(tmp_path / "t.wav"))], max_iters=0)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        (job,) = stack.jobs(batch_id)
        with session_scope() as session:
            coarse = session.scalar(select(Iteration).where(Iteration.job_id == job.id))
        if job.status.is_terminal or coarse is not None:
            break
        time.sleep(0.1)
    assert coarse is None, f"the round was closed without its simulated_gpu call: {coarse.document!r}"
    assert job.status == "errored", stack.logs()
    assert "perceive_gpu step (iteration 0)" in job.error and "'simulated_gpu'" in job.error, job.error


def test_a_job_stored_before_plans_were_is_planned_as_it_was(stack, scripted_llm, tmp_path):
    """A job from before migration 0005: no tool catalogue, no stored calls. Its rounds are
    planned from the worker's settings and its calls name no model: each worker runs its
    own, as then."""
    scripted_llm.default_replies.update(planner=INSUFFICIENT,
                                        interaction={"calls": [{"tool": "signal_facts", "args": {"end": 0.5}}]})
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]')
    batch_id = stack.submit([question_item("q", tone_wav(tmp_path / "t.wav"))], max_iters=1)
    with session_scope() as session:
        (job,) = session.scalars(select(Job).where(Job.batch_id == batch_id)).all()
        job.catalogue_version = None
        session.execute(update(Step).where(Step.job_id == job.id).values(calls=None))
    stack.start_role("perception-cpu")
    stack.start_role("reasoning")
    stack.start_role("sweeper")
    stack.wait_for_batch(batch_id, timeout=60)

    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    assert _tool_calls(job.id) == {(0, 0): ("signal_facts", "numpy"), (1, 0): ("signal_facts", "numpy")}
    with session_scope() as session:
        later = session.scalar(select(Step.calls).where(Step.job_id == job.id, Step.iteration == 1,
                                                         Step.kind == StepKind.PERCEIVE_CPU))
    assert later == [{"index": 0, "tool": "signal_facts", "args": {"end": 0.5}, "model": None, "needs_speech": False}]


pytestmark = pytest.mark.timeout(240)
