"""Self-consistency: the answering agent asked several times at the sampling temperature,
through real Celery workers and a scripted reasoner, and its answers voted on."""

import pytest
from sqlalchemy import select

from models import LLMCall
from models.db import session_scope
from tests.stack import question_item, tone_wav
from workers.method.reasoning.vote import Sample, vote


def test_three_samples_vote_and_the_dissent_is_stored(stack, scripted_llm, tmp_path):
    scripted_llm.queue("answerer", *({"reasoning": f"sample {i}", "answer": a, "confidence": c}
                                     for i, (a, c) in enumerate([("A voice", 0.9), ("A tone", 0.6), ("A tone", 0.7)])))
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]',
                    answer_sample_temperature="0.7")
    stack.start()
    batch_id = stack.submit([question_item("q1", tone_wav(tmp_path / "tone.wav"))], answer_samples=3, max_iters=0)
    stack.wait_for_batch(batch_id)
    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded", job.error
    assert job.answer == "A tone"  # two of three, against the most confident sample
    # A sample that voted for it speaks for it (which one depends on the order the
    # concurrent samples reached the server).
    assert job.reasoning in ("sample 1", "sample 2")
    assert job.vote["votes"] == [{"answer": "A tone", "votes": 2}, {"answer": "A voice", "votes": 1}]
    assert job.vote["margin"] == pytest.approx(1 / 3, abs=1e-3)
    assert [d["answer"] for d in job.vote["dissent"]] == ["A voice"]
    with session_scope() as session:
        agents = sorted(session.scalars(select(LLMCall.agent).where(LLMCall.job_id == job.id)))
    assert agents == ["answerer", "answerer#2", "answerer#3", "planner"]  # each sample stored: replays pay none
    answered = scripted_llm.requests_of("answerer")
    assert [r["body"]["temperature"] for r in answered] == [0.7, 0.7, 0.7]


def test_ties_go_to_the_more_confident_answer_and_unmapped_wins_only_alone():
    tie = vote([Sample("A", "A", 0.4), Sample("B", "B", 0.9), Sample(None, "dunno", 1.0), Sample("A", "A", 0.4)])
    assert tie.record["winner"] == "A" and tie.winner == 0  # two votes beat one, however confident
    even = vote([Sample("A", "A", 0.3), Sample("B", "B", 0.8)])
    assert even.record["winner"] == "B" and even.record["margin"] == 0.0
    lost = vote([Sample(None, "x", 0.5), Sample(None, "y", 0.5)])
    assert lost.record["winner"] is None and lost.winner == 0
