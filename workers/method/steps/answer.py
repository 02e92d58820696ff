"""Answering step: the answerer picks; normalisation maps to the verbatim choice.

In `crosscheck` the answer may be decided otherwise, and `decision` records how: the audio
models' agreement that gated the loop (workers/method/steps/plan.py) is the answer; after the
audio model's final listening, the text-side answer (read from the document before it)
stands where the two agree, and the arbiter decides where they differ.
"""

import contextvars
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import cast

from sqlalchemy import Table, func, update

from core.settings import get_settings
from models import Job, JobStatus
from workers.method.perception.agreement import answer_in, is_final_listening
from workers.method.reasoning import answerer, arbiter
from workers.method.reasoning.agent_call import ask_agent
from workers.method.reasoning.json_reply import as_confidence
from workers.method.reasoning.normalise import normalise
from workers.method.reasoning.vote import Sample, vote
from workers.method.steps import StepHandler
from workers.method.steps.context import load_iteration, load_job_and_iteration
from workers.method.verdict import Verdict

JOBS = cast(Table, Job.__table__)  # typed FromClause; a declarative model's is a Table


@dataclass(frozen=True)
class FinalAnswer:
    answer: str | None
    raw_answer: str
    rule: str
    confidence: float | None
    reasoning: str | None
    vote: dict | None = None  # several samples: their vote (workers/method/reasoning/vote.py)
    decision: dict | None = None  # crosscheck: how it was decided (the gate, or the arbitration)


def execute(claim) -> FinalAnswer:
    job, current = load_job_and_iteration(claim.job_id, claim.iteration)
    if job.pipeline.answers_directly:
        return _direct_answer(job, current)
    if current.verdict and current.verdict.agreed:
        return _gated(current.verdict)
    heard = [e for e in current.evidence
             if e["iteration"] == claim.iteration and is_final_listening(e["tool"], e["args"])]
    if heard and claim.iteration > 0 and job.pipeline.hears_again_to_answer:
        before = load_iteration(claim.job_id, claim.iteration - 1)  # the document the text side reads
        return _with_audio_decision(claim, job, _text_side(claim, job, before.document), heard[0], current.document)
    final = _text_side(claim, job, current.document)
    if job.pipeline.goes_beyond_the_paper:  # how it was decided, whichever mechanisms ran
        why = "no final listening: audio_decision is off, or no audio model answers"
        return replace(final, decision={"by": "text_side", "answer": final.answer, "why": why})
    return final


def _text_side(claim, job, document: str) -> FinalAnswer:
    messages = answerer.messages(job.question, job.choices, document)
    schema = answerer.schema(job.choices)
    if job.answer_samples == 1:
        return _final(ask_agent(claim.job_id, claim.iteration, "answerer", messages, schema), job.choices)
    return _voted(claim, job, messages, schema)


def _gated(verdict: Verdict) -> FinalAnswer:
    """The audio models agreed and the planner found the evidence consistent: their answer."""
    answer = verdict.gated_answer
    assert answer is not None  # the plan step gates on agreement only with the agreed choice (plan.py _gated)
    reasoning = (f"The audio models, heard independently, all chose {answer!r}, and the planner found the evidence "
                 f"consistent: {verdict.reason}")
    return FinalAnswer(answer, answer, "agreement", verdict.confidence, reasoning,
                       decision={"by": "agreement_gate", "answer": answer, "agreement": verdict.agreement})


def _with_audio_decision(claim, job, text: FinalAnswer, heard: dict, document: str) -> FinalAnswer:
    """The text side against the audio model's final answer; the arbiter where they differ."""
    audio = answer_in(heard, job.choices)
    record = {"text_answer": text.answer, "audio_answer": audio, "audio_tool": heard["tool"],
              "audio_item": heard["id"]}
    if audio is None or audio == text.answer:
        why = "they agree" if audio is not None else (
            "the audio model's call failed" if heard["text"].startswith("tool error") else
            "the audio model named none of the choices")
        return replace(text, decision={**record, "by": "text_side", "answer": text.answer, "why": why})
    reply = ask_agent(claim.job_id, claim.iteration, "arbiter",
                      arbiter.messages(job.question, job.choices, document, text.answer or text.raw_answer,
                                       text.reasoning, audio, heard["text"]),
                      arbiter.schema(job.choices))
    judged = _final(reply, job.choices)
    if judged.answer is None:  # an arbiter naming no choice decides nothing: the text side stands
        return replace(text, decision={**record, "by": "text_side", "answer": text.answer,
                                       "why": f"the arbiter named no choice: {judged.raw_answer[:200]}"})
    decision = {**record, "by": "arbiter", "answer": judged.answer, "arbiter_reasoning": judged.reasoning}
    return replace(judged, vote=text.vote, decision=decision)


def _voted(claim, job, messages: list[dict], schema: dict) -> FinalAnswer:
    """The answering agent asked `answer_samples` times at once (each sample stored under its
    own name, so a replay pays for none), and its answers voted on (workers/method/reasoning/vote.py)."""
    temperature = get_settings().answer_sample_temperature
    names = ["answerer", *(f"answerer#{k}" for k in range(2, job.answer_samples + 1))]

    def ask(name: str):
        return ask_agent(claim.job_id, claim.iteration, name, messages, schema, temperature=temperature)

    # Each sample's thread runs in a copy of this thread's context, taken here: the step's
    # lease (workers/runtime/lease.py) goes with it, so no sample is paid for after the lease is lost.
    contexts = [contextvars.copy_context() for _ in names]
    with ThreadPoolExecutor(len(names)) as pool:
        replies = list(pool.map(lambda context, name: context.run(ask, name), contexts, names))
    finals = [_final(reply, job.choices) for reply in replies]
    voted = vote([Sample(f.answer, f.raw_answer, f.confidence) for f in finals])
    return replace(finals[voted.winner], vote=voted.record)


def _final(reply, choices: list[str]) -> FinalAnswer:
    # An answer outside the schema (not one of the choices, say) is still normalised,
    # and so is raw text without JSON: it may name a choice, or be recorded as unmapped.
    parsed = reply.parsed or {}
    raw = _as_text(parsed.get("answer", reply.text))
    mapped = normalise(raw, choices)
    confidence = as_confidence(parsed["confidence"]) if "confidence" in parsed else None
    reasoning = parsed.get("reasoning")
    return FinalAnswer(mapped.answer, raw, mapped.rule, confidence, None if reasoning is None else _as_text(reasoning))


def _as_text(value) -> str:
    """A reply's field as the text column it goes to: a model may give an object or a
    number where the schema says a string (the repair asked for did not come)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _direct_answer(job, current) -> FinalAnswer:
    """The `direct` pipeline: the audio-language model's own reply is the answer."""
    evidence = current.evidence
    reply = next((e["text"] for e in evidence if e["tool"] == "audio_qa"), "")
    if not reply or reply.startswith("tool error"):
        raise RuntimeError(f"the audio-language model gave no answer: {reply or 'empty reply'}")
    mapped = normalise(reply, job.choices)
    return FinalAnswer(mapped.answer, reply, mapped.rule, None, None)


def commit(session, claim, final: FinalAnswer) -> None:
    """The job's answer: it ends here (no successor; the step runner closes the batch if
    this was its last job). The job is locked already (the runner's fenced finish)."""
    session.execute(
        update(JOBS).where(JOBS.c.id == claim.job_id)
        .values(status=JobStatus.SUCCEEDED, answer=final.answer, raw_answer=final.raw_answer,
                normalisation=final.rule, confidence=final.confidence, reasoning=final.reasoning, vote=final.vote,
                decision=final.decision, finished_at=func.now()))
    return None


HANDLER = StepHandler(execute, commit)
