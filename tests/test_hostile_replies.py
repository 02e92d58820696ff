"""Replies Postgres would refuse, through a real reasoning worker: a paid reply is stored
however it is written, and never bought twice.

The scripted reasoner answers each job's answering agent with one hostile reply (NaN and
Infinity, NUL and lone surrogates inside and outside the JSON, an object where text goes,
deep nesting) and every planner call with a NaN; its model name is 250 characters long.
A user checks that each job ends with its answer, and that no prompt was asked twice.
"""

import json
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from api.intake.batch_input import Item
from models import Job, LLMCall
from models.db import session_scope
from tests.stack import planning_steps, tone_wav

CHOICES = ["A tone", "A voice"]
GOOD = '"answer": "A tone", "confidence": 0.5'
HOSTILE = {
    "nan": '{"reasoning": "r", "answer": "A tone", "confidence": NaN}',
    "infinity": '{"reasoning": "r", "answer": "A tone", "confidence": -Infinity}',
    "escaped-nul": '{"reasoning": "a\\u0000b", ' + GOOD + "}",
    "raw-nul": 'Sure\x00 {"reasoning": "r", ' + GOOD + "}",
    "escaped-surrogate": '{"reasoning": "\\ud800 alone", ' + GOOD + "}",
    "raw-surrogate": '\ud83d {"reasoning": "r", ' + GOOD + "}",
    "object-reasoning": '{"reasoning": {"steps": [1, {"why": null}]}, ' + GOOD + "}",
    "deep": '{"reasoning": ' + "[" * 300 + "]" * 300 + ", " + GOOD + "}",
    "too-deep": '{"reasoning": ' + "[" * 5000 + "]" * 5000 + ", " + GOOD + "}",
    "answer-with-nul": '{"reasoning": "r", "answer": "A tone\\u0000", "confidence": 0.5}',
}
PLANNER = '{"reason": "enough \\u0000", "sufficient": true, "confidence": NaN, "missing": []}'


def test_hostile_replies_are_stored_once_and_never_bought_again(stack, scripted_llm, tmp_path):
    scripted_llm.default_replies.update(
        planner=PLANNER, answerer=lambda body: HOSTILE[body["messages"][1]["content"].split("Question: ")[1]
                                                       .split("\n")[0]])
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]', llm_model="m" * 250)
    stack.start("perception-cpu", "reasoning", "sweeper")
    clip = tone_wav(tmp_path / "clip.wav")
    items = [Item(name, clip, name, CHOICES, "A tone") for name in HOSTILE]
    batch_id = stack.submit(items, max_iters=0)
    stack.wait_for_batch(batch_id, timeout=300)

    jobs = {job.custom_id: job for job in stack.jobs(batch_id)}
    assert {name: (job.status, job.answer) for name, job in jobs.items()} == {
        name: ("succeeded", "A tone") for name in HOSTILE}, stack.job_summary(batch_id)
    assert "\x00" not in jobs["answer-with-nul"].raw_answer
    assert json.loads(jobs["object-reasoning"].reasoning) == {"steps": [1, {"why": None}]}
    # No prompt was bought twice: every request's messages are new.
    asked = Counter(json.dumps(r["body"]["messages"], sort_keys=True) for r in scripted_llm.requests)
    assert max(asked.values()) == 1, [k[:200] for k, n in asked.items() if n > 1]
    with session_scope() as session:
        rows = session.scalars(select(LLMCall).where(LLMCall.job_id.in_([j.id for j in jobs.values()]))).all()
    assert len(rows) == len(scripted_llm.requests)  # each paid reply is stored
    assert all(len(row.model) <= 200 for row in rows)
    raw = next(row for row in rows if row.job_id == jobs["raw-nul"].id and row.agent == "answerer")
    assert raw.reply.startswith("Sure") and "\x00" not in raw.reply


@pytest.fixture(scope="module")
def a_job(database_url, tmp_path_factory):
    batch_id, _ = planning_steps(tmp_path_factory.mktemp("job"), "property", 1)
    with session_scope() as session:
        return session.scalar(select(Job.id).where(Job.batch_id == batch_id))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(codec=None, blacklist_categories=()), max_size=80),
       number=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "0.5"]),
       tokens=st.sampled_from([None, 7, 2 ** 40, -1]))
def test_any_reply_is_stored_the_moment_it_is_paid_for(a_job, text, number, tokens):
    """Whatever the text around and inside the JSON, whatever the usage says, the store
    takes the reply at once, and what it stores reads back as the row the step uses."""
    from workers.method.reasoning.agent_call import _store
    from workers.method.reasoning.llm_client import Completion

    reply = f"{text}{{\"answer\": {json.dumps(text, ensure_ascii=False)}, \"confidence\": {number}}}{text}"
    key = {"job_id": a_job, "iteration": 0, "agent": "property", "prompt_hash": uuid.uuid4().hex}
    row = _store(key, [{"role": "assistant", "content": text}], Completion(reply, "m" * 300, tokens, tokens, 1.0))
    assert row is not None and row.parsed is not None and len(row.reply) == len(reply)
