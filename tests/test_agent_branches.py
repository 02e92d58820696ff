"""The agents' branches, driven by a scripted OpenAI-compatible server, through real
Celery worker processes, Redis and Postgres."""

from sqlalchemy import select

from models import Iteration, LLMCall, ToolCall
from models.db import session_scope
from tests.stack import count_rows, question_item, tone_wav


def _iterations(job_id) -> list[Iteration]:
    with session_scope() as session:
        return list(session.scalars(select(Iteration).where(Iteration.job_id == job_id).order_by(Iteration.index)))


def _agents_called(job_id) -> list[str]:
    with session_scope() as session:
        return list(session.scalars(select(LLMCall.agent).where(LLMCall.job_id == job_id).order_by(LLMCall.id)))


def _run_one(stack, scripted_llm, tmp_path, **options):
    stack.configure(llm_base_url=scripted_llm.base_url)
    stack.start()
    batch_id = stack.submit([question_item("q1", tone_wav(tmp_path / "tone.wav"))], **options)
    stack.wait_for_batch(batch_id)
    (job,) = stack.jobs(batch_id)
    return job


def test_sufficient_at_once_answers_from_coarse_document(stack, scripted_llm, tmp_path):
    scripted_llm.queue("answerer", {"reasoning": "a steady tone", "answer": "A tone", "confidence": 0.8})
    job = _run_one(stack, scripted_llm, tmp_path)

    assert job.status == "succeeded", job.error
    assert (job.answer, job.normalisation, job.confidence) == ("A tone", "exact", 0.8)
    iterations = _iterations(job.id)
    assert [i.index for i in iterations] == [0]
    assert iterations[0].verdict["sufficient"] is True
    assert "signal_facts" in iterations[0].document and "transcription" in iterations[0].document
    assert _agents_called(job.id) == ["planner", "answerer"]


def test_insufficient_then_tools_then_sufficient(stack, scripted_llm, tmp_path):
    scripted_llm.queue("planner", {"reason": "need the second half", "sufficient": False,
                                   "confidence": 0.2, "missing": ["what happens after 0.5 s"]})
    scripted_llm.queue("interaction", {"calls": [
        {"tool": "signal_facts", "args": {"start": 0.5, "end": 1.0}, "purpose": "re-listen"},
        {"tool": "signal_facts", "args": {"start": "later"}, "purpose": "bad args"},
    ]})
    job = _run_one(stack, scripted_llm, tmp_path)

    assert job.status == "succeeded", job.error
    iterations = _iterations(job.id)
    assert [i.index for i in iterations] == [0, 1]
    assert iterations[0].verdict["sufficient"] is False
    assert [c["accepted"] for c in iterations[0].tool_plan] == [True, False]
    assert "is not of type 'number'" in iterations[0].tool_plan[1]["dropped_because"]
    assert iterations[1].verdict["sufficient"] is True
    # The new evidence is merged, attributed and windowed; the old evidence is kept.
    assert "Refinement round 1" in iterations[1].document
    assert "[E1.1] signal_facts [window 0.5-1.0 s]" in iterations[1].document
    assert iterations[1].document.startswith(iterations[0].document)
    assert count_rows(ToolCall, job_id=job.id, iteration=1) == 1
    assert _agents_called(job.id) == ["planner", "interaction", "planner", "answerer"]


def test_max_iters_reached_then_answers(stack, scripted_llm, tmp_path):
    never_enough = {"reason": "still unsure", "sufficient": False, "confidence": 0.1, "missing": ["more"]}
    scripted_llm.queue("planner", *[never_enough] * 5)
    job = _run_one(stack, scripted_llm, tmp_path, max_iters=2)

    assert job.status == "succeeded", job.error
    iterations = _iterations(job.id)
    assert [i.index for i in iterations] == [0, 1, 2]
    # The planner re-checks after the last round too, then the loop stops on the budget.
    assert [i.verdict["final"] for i in iterations] == [False, False, True]
    assert iterations[2].tool_plan is None
    assert _agents_called(job.id) == ["planner", "interaction"] * 2 + ["planner", "answerer"]


def test_malformed_json_is_recovered(stack, scripted_llm, tmp_path):
    # Prose and a code fence around JSON with a trailing comma: read without a second call.
    scripted_llm.queue("planner", 'Sure!\n```json\n{"reason": "ok", "sufficient": true, "confidence": 0.7, "missing": [],}\n```')
    # Not JSON at all: the agent is asked once to repair its reply.
    scripted_llm.queue("answerer", "I think it is a tone, definitely.",
                       {"reasoning": "repaired", "answer": "A tone", "confidence": 0.5})
    job = _run_one(stack, scripted_llm, tmp_path)

    assert job.status == "succeeded", job.error
    assert job.answer == "A tone" and job.reasoning == "repaired"
    assert _iterations(job.id)[0].verdict["reason"] == "ok"
    assert _agents_called(job.id) == ["planner", "answerer", "answerer"]


def test_unmappable_answer_is_recorded_as_unmapped_not_guessed(stack, scripted_llm, tmp_path):
    scripted_llm.queue("answerer", *[{"reasoning": "?", "answer": "a trumpet", "confidence": 0.3}] * 2)
    job = _run_one(stack, scripted_llm, tmp_path)

    assert job.status == "succeeded", job.error
    assert (job.answer, job.normalisation, job.raw_answer) == (None, "unmapped", "a trumpet")


def test_reasoner_down_retries_then_fails_job_with_clear_error(stack, scripted_llm, tmp_path):
    stack.configure(max_attempts=2)
    down_url = scripted_llm.base_url
    scripted_llm.close()  # nothing listens there any more
    stack.configure(llm_base_url=down_url)
    stack.start()
    batch_id = stack.submit([question_item("q1", tone_wav(tmp_path / "tone.wav"))])
    stack.wait_for_batch(batch_id)
    (job,) = stack.jobs(batch_id)

    assert job.status == "errored"
    assert "plan step (iteration 0) failed after 2 attempt(s)" in job.error
    assert f"reasoner at {down_url} unavailable" in job.error
    assert count_rows(LLMCall, job_id=job.id) == 0
