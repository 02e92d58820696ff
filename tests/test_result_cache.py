"""Perception results are stored once per (audio content, tool, model, args) and reused
by every later job and batch: re-running a finished batch with another reasoner model
computes no perception at all, while the new model's agents are really asked."""

from sqlalchemy import select

from models import Job, LLMCall, ToolCall
from models.db import session_scope
from tests.stack import question_item, tone_wav


def _tool_calls(batch_id) -> list[ToolCall]:
    with session_scope() as session:
        return list(session.scalars(select(ToolCall).join(Job).where(Job.batch_id == batch_id)))


def _llm_models(batch_id) -> set[str]:
    with session_scope() as session:
        return set(session.scalars(select(LLMCall.model).join(Job).where(Job.batch_id == batch_id)))


def _script_one_refinement(scripted_llm, jobs: int) -> None:
    # Each job: the planner asks for more once, the interaction agent re-listens to a
    # window, so refinement-round tool calls are cached too, not only the coarse ones.
    for _ in range(jobs):
        scripted_llm.queue("planner", {"reason": "check the start", "sufficient": False,
                                       "confidence": 0.3, "missing": ["the first half second"]})
        scripted_llm.queue("interaction", {"calls": [{"tool": "signal_facts", "args": {"start": 0.0, "end": 0.5}}]})


def test_rerun_with_another_reasoner_makes_no_perception_calls(stack, scripted_llm, tmp_path):
    items = [question_item("low", tone_wav(tmp_path / "low.wav", freq=220)),
             question_item("high", tone_wav(tmp_path / "high.wav", freq=880))]
    stack.configure(llm_base_url=scripted_llm.base_url, llm_model="reasoner-a", coarse_tools='["signal_facts", "music"]')
    _script_one_refinement(scripted_llm, len(items))
    stack.start()
    first = stack.submit(items, max_iters=1)
    stack.wait_for_batch(first)
    stack.stop_all()
    paid_first = len(scripted_llm.requests)

    stack.configure(llm_model="reasoner-b")
    _script_one_refinement(scripted_llm, len(items))
    stack.start()
    second = stack.submit(items, max_iters=1)
    stack.wait_for_batch(second)

    computed = _tool_calls(first)
    reused = _tool_calls(second)
    assert len(computed) == len(reused) == 2 * 3  # per job: two coarse tools + one re-listen
    assert not any(c.cache_hit for c in computed)
    assert all(c.cache_hit and c.latency_ms == 0 for c in reused)  # zero perception calls
    by_key = {c.cache_key: c.text for c in computed}
    assert all(by_key[c.cache_key] == c.text for c in reused)  # the same evidence, copied
    # The new reasoner really reasoned: its agents were asked and their replies stored.
    assert len(scripted_llm.requests) > paid_first
    assert _llm_models(second) == {"reasoner-b"} and _llm_models(first) == {"reasoner-a"}
