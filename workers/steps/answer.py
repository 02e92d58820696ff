"""Answering step: the answerer picks; normalisation maps to the verbatim choice."""

from dataclasses import dataclass

from sqlalchemy import func, update

from models import Job, JobStatus
from workers.job_state import close_batch_if_done_by_id
from workers.reasoning import answerer
from workers.reasoning.agent_call import ask_agent
from workers.reasoning.normalise import normalise
from workers.reasoning.json_reply import as_confidence
from workers.steps.context import load_job_and_iteration

JOBS = Job.__table__


@dataclass(frozen=True)
class FinalAnswer:
    answer: str | None
    raw_answer: str
    rule: str
    confidence: float | None
    reasoning: str | None


def execute(claim) -> FinalAnswer:
    job, current = load_job_and_iteration(claim.job_id, claim.iteration)
    if job.pipeline == "direct":
        return _direct_answer(job, current)
    document = current.document
    reply = ask_agent(
        claim.job_id, claim.iteration, "answerer",
        answerer.messages(job.question, job.choices, document),
        answerer.schema(job.choices),
    )
    # An answer outside the schema (not one of the choices, say) is still normalised,
    # and so is raw text without JSON: it may name a choice, or be recorded as unmapped.
    parsed = reply.parsed or {}
    raw = str(parsed.get("answer", reply.text))
    mapped = normalise(raw, job.choices)
    confidence = as_confidence(parsed["confidence"]) if "confidence" in parsed else None
    return FinalAnswer(mapped.answer, raw, mapped.rule, confidence, parsed.get("reasoning"))


def _direct_answer(job, current) -> FinalAnswer:
    """The `direct` pipeline: the audio-language model's own reply is the answer."""
    evidence = current.evidence
    reply = next((e["text"] for e in evidence if e["tool"] == "audio_qa"), "")
    if not reply or reply.startswith("tool error"):
        raise RuntimeError(f"the audio-language model gave no answer: {reply or 'empty reply'}")
    mapped = normalise(reply, job.choices)
    return FinalAnswer(mapped.answer, reply, mapped.rule, None, None)


def commit(session, claim, final: FinalAnswer) -> None:
    # The job is locked already (the step runner's fenced finish): one Core UPDATE.
    batch_id = session.scalar(
        update(JOBS).where(JOBS.c.id == claim.job_id)
        .values(status=JobStatus.SUCCEEDED, answer=final.answer, raw_answer=final.raw_answer,
                normalisation=final.rule, confidence=final.confidence, reasoning=final.reasoning,
                finished_at=func.now())
        .returning(JOBS.c.batch_id))
    close_batch_if_done_by_id(session, batch_id)
    return None
