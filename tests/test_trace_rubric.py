"""The MMAR challenge's trace score: the thinking_prediction built from a stored evidence
chain (pure, below), the judge's score parsing and the middle-3 mean, then `agr eval
--rubric` and `agr results --format mmar-challenge` through the real stack (API process,
Celery workers, Postgres, Redis) with the scripted OpenAI-compatible server as reasoner
and as judge."""

import json
import os
import re
import time

import pytest

from evaluation.benchmark_exports import export_mmar_challenge
from evaluation.trace_rubric import (
    TRACE_LIMIT,
    ItemScore,
    TraceFigures,
    TraceItem,
    judge_messages,
    middle_mean,
    parse_score,
    thinking_prediction,
)
from tests.stack import run_cli


def _chain(rounds: int, evidence_chars: int, reasoning: str = "The steady 440 Hz line and no speech mean a tone.",
           answer: str = "A tone") -> dict:
    """An evidence chain as GET /v1/jobs/{id}/evidence shows it, `rounds` rounds deep."""
    iterations, evidence = [], []
    for n in range(rounds):
        new = [{"id": f"E{n}.{k + 1}", "iteration": n, "tool": tool, "args": {},
                "text": f"round {n} {tool}: " + "a steady sine at 440 Hz " * (evidence_chars // 24)}
               for k, tool in enumerate(["signal_facts", "voice_activity"])]
        evidence = evidence + new
        last = n == rounds - 1
        iterations.append({
            "index": n, "document": "...", "evidence": evidence,
            "verdict": {"sufficient": last, "reason": f"round {n}: " + ("enough" if last else "pitch unclear"),
                        "confidence": 0.9 if last else 0.4, "missing": [] if last else ["the exact pitch"]},
            "tool_plan": None if last else [{"tool": "signal_facts", "args": {"window": n}, "purpose": "measure pitch",
                                             "accepted": True, "dropped_because": None}],
            "tool_calls": [], "llm_calls": [],
        })
    job = {"question": "What is heard?", "choices": ["A tone", "A voice"], "answer": answer, "raw_answer": answer,
           "reasoning": reasoning, "reference_answer": "A tone"}
    return {"job": job, "iterations": iterations}


def test_the_trace_reads_step_by_step_and_ends_with_the_reasoning_and_answer():
    trace = thinking_prediction(_chain(rounds=2, evidence_chars=60))
    assert trace.startswith("Question: What is heard?\nChoices: A tone | A voice\n")
    assert "Step 1: first listening" in trace and "Step 2: refinement round 1" in trace
    assert "- heard/measured (signal_facts): round 0 signal_facts:" in trace
    assert trace.count("round 0 signal_facts") == 1  # round 1's evidence repeats round 0's: shown once
    assert "- planner: not yet sufficient (confidence 0.40): round 0: pitch unclear; missing: the exact pitch" in trace
    assert '- asked for: signal_facts {"window": 0}: measure pitch' in trace
    assert "- planner: sufficient (confidence 0.90): round 1: enough" in trace
    assert trace.endswith("Conclusion: The steady 440 Hz line and no speech mean a tone.\nAnswer: A tone\n")


def test_a_long_chain_is_cut_under_the_limit_in_its_evidence_never_its_conclusion():
    reasoning = "Because " + "the line holds steady and " * 120 + "so it is a tone."
    chain = _chain(rounds=4, evidence_chars=20_000, reasoning=reasoning)
    trace = thinking_prediction(chain)
    assert len(trace) < TRACE_LIMIT
    assert trace.endswith(f"Conclusion: {reasoning}\nAnswer: A tone\n")  # whole
    assert "Step 4: refinement round 3" in trace and "round 2: pitch unclear" in trace  # every step still there
    assert "…" in trace  # the evidence was shortened
    # A reasoning longer than the limit by itself: its end and the answer survive.
    huge = thinking_prediction(_chain(rounds=1, evidence_chars=100, reasoning="x " * 8000 + "hence a tone."))
    assert len(huge) < TRACE_LIMIT and huge.endswith("hence a tone.\nAnswer: A tone\n")


def test_the_challenge_export_carries_the_trace_within_its_limit(tmp_path):
    out = tmp_path / "challenge.jsonl"
    export_mmar_challenge([{"id": "a"}, {"id": "b"}],
                          {"a": {"answer": "A tone", "thinking": "x" * 30_000 + " so: A tone"}}, out)
    (line,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert line["id"] == "a" and len(line["thinking_prediction"]) < TRACE_LIMIT
    assert line["thinking_prediction"].endswith(" so: A tone")


@pytest.mark.parametrize("reply, expected", [
    ('{"score": 0.8, "reason": "good"}', 0.8),
    ('```json\n{"score": "0.6"}\n```', 0.6),
    ("Score: 0.4", 0.4),
    ("The trace names the cue. **Score**: 4/5", 0.8),
    ("score = 80%", 0.8),
    ("3 out of 5", 0.6),
    ("0.7", 0.7),
    ("1.5", 1.0),  # clamped
    ('{"score": 0}', 0.2),  # clamped
    ("I rate the 2 cues and 3 steps highly", None),  # several numbers, no score: unreadable
    ('{"reasoning": "x", "confidence": 0.6}', None),  # JSON without a score
    ("no idea", None),
    ("", None),
])
def test_scores_are_read_robustly_and_clamped(reply, expected):
    found = parse_score(reply)
    assert found == pytest.approx(expected) if expected is not None else found is None


def test_the_middle_three_of_five_and_the_report_figures():
    assert middle_mean([1.0, 0.2, 0.6, 0.8, 0.4]) == pytest.approx(0.6)
    assert middle_mean([0.7, 1.0, 0.2, 0.7]) == pytest.approx(0.7)  # one run missing: the middle two
    assert middle_mean([0.5]) == 0.5 and middle_mean([]) is None
    items = [TraceItem("a", True, ItemScore((0.2, 0.4, 0.6, 0.8, 1.0), 0)),
             TraceItem("b", True, ItemScore((0.7, 1.0, None, 0.2, 0.7), 2)),
             TraceItem("c", False), TraceItem("d", None)]
    figures = TraceFigures.of(items)
    assert (figures.right, figures.judged, figures.total, figures.missing_runs) == (2, 2, 4, 1)
    assert figures.mean_right == pytest.approx(0.65) and figures.challenge == pytest.approx(1.3 / 4)


def test_the_judge_is_shown_the_question_answer_trace_and_the_items_own_rubric():
    rubric = [{"name": "Cue", "scoring_point": "Award 1 point for the throat singing."}]
    system, user = judge_messages("Where from?", ["Grassland", "City"], "Grassland", "TRACE", rubric, "REFERENCE")
    assert "grade the trace" in system["content"]
    content = user["content"]
    assert "Correct answer: Grassland" in content and "<trace>\nTRACE\n</trace>" in content
    assert "1. Cue: Award 1 point for the throat singing." in content and "divided by 1" in content
    assert "REFERENCE" in content
    assert "Cue identification" in judge_messages("Q", ["a"], "a", "T")[1]["content"]  # the generic five


# --- through the real stack --------------------------------------------------

JUDGED = {  # each item's judge replies, in the order its runs ask (an item's runs go in turn)
    "item-a": ["0.2", "Score: 0.4", '{"score": 0.6, "reason": "ok"}', "4/5", "1.0"],  # middle three: 0.6
    # unreadable then 0.7 on the retry; 3 clamped to 1.0; unreadable twice: missing; 0.1 clamped to 0.2; 0.7
    "item-b": ["I cannot tell.", "0.7", "Score: 3", "hmm", "still unsure", "0.1", '{"score": 0.7}'],
}


def _judge_reply(body: dict) -> str:
    text = body["messages"][-1]["content"]
    item = re.search(r"Question: What is heard in (item-\w)\?", text).group(1)
    replies = JUDGED[item]
    return replies.pop(0) if replies else "no score left"


@pytest.fixture(scope="module")
def judged_batch(module_services, tmp_path_factory):
    """One batch of three items (two answered right, one wrong) through the stack; returns
    (the CLI's environment, the batch id, the scripted server)."""
    from tests.scripted_llm import ScriptedLLM
    from tests.stack import FAST_DURABILITY, api_client
    from tests.test_eval_side_by_side import tone_service, wait_ended

    llm = ScriptedLLM()
    llm.default_replies["unknown"] = _judge_reply  # the judge: no agent's system prompt
    with tone_service(module_services, tmp_path_factory.mktemp("rubric"), llm) as (url, key):
        lines = [{"custom_id": cid, "audio": "tone.wav", "question": f"What is heard in {cid}?",
                  "choices": ["A tone", "A voice"], "answer": answer, "metadata": {"category": category}}
                 for cid, answer, category in (("item-a", "A tone", "tones"), ("item-b", "A tone", "voices"),
                                               ("item-c", "A voice", "tones"))]  # the answerer says "A tone"
        with api_client(url, key) as http:
            created = http.post("/v1/batches", json={"input": "\n".join(json.dumps(x) for x in lines),
                                                     "input_format": "jsonl", "max_iters": 1})
            assert created.status_code == 201, created.text
            batch_id = created.json()["id"]
            wait_ended(http, batch_id)
        env = {**os.environ, **FAST_DURABILITY, "AGR_API_URL": url, "AGR_API_KEY": key,
               "AGR_LLM_BASE_URL": llm.base_url, "AGR_LLM_MODEL": "judge-model", "COLUMNS": "200"}
        yield env, batch_id, llm


def test_eval_rubric_judges_right_answers_five_times_and_reports_both_means(judged_batch, tmp_path):
    env, batch_id, llm = judged_batch
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    run = run_cli(env, "eval", "--batch", batch_id, "--rubric", "--judge-model", "rubric-judge",
               "--json", str(report_path))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = " ".join(run.stdout.split())  # as read, whatever the terminal's width wrapped
    assert "rule token: official 66.7%" in out  # the accuracy report, as without --rubric
    assert ("trace score: mean over right answers 0.650 (2 judged of 2 right), challenge-style mean over all 3 "
            "item(s) 0.433") in out
    assert "1 judge run(s) missing (no score after a retry), 2 repl(ies) retried" in out
    assert "judging traces (5 runs each)" in out

    trace = json.loads(report_path.read_text())["trace_score"]
    assert trace["overall"] == {"right": 2, "judged": 2, "total": 3, "mean_right": pytest.approx(0.65),
                                "challenge": pytest.approx(1.3 / 3), "missing_runs": 1, "unjudged": 0}
    assert trace["by_group"]["category"]["tones"]["mean_right"] == pytest.approx(0.6)
    assert trace["by_group"]["category"]["tones"]["challenge"] == pytest.approx(0.3)  # item-c wrong: 0
    assert trace["by_group"]["category"]["voices"]["mean_right"] == pytest.approx(0.7)

    judge_calls = [r for r in llm.requests_of("unknown") if r["started"] >= started]
    assert len(judge_calls) == 12  # 5 + 5 runs, and 2 retries; the wrong answer is not judged
    assert {r["body"]["model"] for r in judge_calls} == {"rubric-judge"}
    asked = judge_calls[0]["body"]["messages"][-1]["content"]
    assert "Correct answer: A tone" in asked and "Answer: A tone" in asked and "heard/measured (signal_facts)" in asked


def test_the_challenge_export_carries_a_trace_from_the_stored_chain(judged_batch, tmp_path):
    env, batch_id, _ = judged_batch
    out = tmp_path / "challenge.jsonl"
    run = run_cli(env, "results", batch_id, "-o", str(out), "--format", "mmar-challenge")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = {line["id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert set(lines) == {"item-a", "item-b", "item-c"}
    trace = lines["item-a"]["thinking_prediction"]
    assert len(trace) < TRACE_LIMIT and trace.startswith("Question: What is heard in item-a?")
    assert "- heard/measured (signal_facts):" in trace and "- planner: sufficient" in trace
    assert trace.endswith("Conclusion: scripted\nAnswer: A tone\n")
    assert lines["item-a"]["answer_prediction"] == "A tone"
