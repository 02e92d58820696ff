"""A job's whole evidence chain, in the order it happened: for each iteration the
perception calls that built its document, the document, and the agents' LLM calls on it
(the planner's verdict, the interaction agent's tool plan, the answerer's reply), and
its steps with the calls each was made to run and each attempt at it (who ran it, how
it ended)."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Iteration, Job, LLMCall, Step, StepAttempt, ToolCall


def evidence_chain(session: Session, job: Job) -> dict:
    iterations = session.scalars(select(Iteration).where(Iteration.job_id == job.id).order_by(Iteration.index)).all()
    tools = session.scalars(select(ToolCall).where(ToolCall.job_id == job.id)
                            .order_by(ToolCall.iteration, ToolCall.call_index)).all()
    llm = session.scalars(select(LLMCall).where(LLMCall.job_id == job.id).order_by(LLMCall.created_at)).all()
    steps = session.scalars(select(Step).where(Step.job_id == job.id).order_by(Step.id)).all()
    attempts = session.scalars(select(StepAttempt).join(Step, Step.id == StepAttempt.step_id)
                               .where(Step.job_id == job.id).order_by(StepAttempt.id)).all()
    indexes = sorted({i.index for i in iterations} | {t.iteration for t in tools} | {c.iteration for c in llm})
    by_index = {i.index: i for i in iterations}
    return {
        "job_id": str(job.id),
        "tool_catalogue": job.catalogue_version,  # the tools and models it was planned with
        "iterations": [_iteration(n, by_index.get(n), tools, llm) for n in indexes],
        "steps": [_step(s, [a for a in attempts if a.step_id == s.id]) for s in steps],
    }


def _iteration(n: int, it: Iteration | None, tools: Sequence[ToolCall], llm: Sequence[LLMCall]) -> dict:
    return {
        "index": n,
        "document": it.document if it else None,
        "evidence": it.evidence if it else [],
        "verdict": it.verdict if it else None,
        "tool_plan": it.tool_plan if it else None,
        "created_at": it.created_at.isoformat() if it else None,
        "tool_calls": [_tool(t) for t in tools if t.iteration == n],
        "llm_calls": [_llm(c) for c in llm if c.iteration == n],
    }


def _tool(t: ToolCall) -> dict:
    # Not the GPU batch's size, nor, for a call that shared its pass, the pass's time, which
    # grows with the batch: its batch-mates may be other tenants' jobs, whose activity no
    # tenant's evidence may show (both stay in the database, for operators).
    latency = round(t.latency_ms, 1) if t.batch_size == 1 else None
    return {"index": t.call_index, "tool": t.tool, "model": t.model, "args": t.args, "output": t.output,
            "text": t.text, "error": t.error, "latency_ms": latency, "device": t.device,
            "cache_hit": t.cache_hit, "created_at": t.created_at.isoformat()}


def _llm(c: LLMCall) -> dict:
    return {"agent": c.agent, "model": c.model, "messages": c.messages, "reply": c.reply, "parsed": c.parsed,
            "prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "latency_ms": round(c.latency_ms, 1), "created_at": c.created_at.isoformat()}


def _step(s: Step, attempts: list[StepAttempt]) -> dict:
    return {"kind": str(s.kind), "iteration": s.iteration, "status": str(s.status), "attempts": s.attempts,
            "last_error": s.last_error, "calls": s.calls, "created_at": s.created_at.isoformat(),
            "finished_at": s.finished_at.isoformat() if s.finished_at else None,
            "attempt_log": [_attempt(a) for a in attempts]}


def _attempt(a: StepAttempt) -> dict:
    return {"attempt": a.attempt, "worker": a.worker, "started_at": a.started_at.isoformat(),
            "ended_at": a.ended_at.isoformat() if a.ended_at else None, "outcome": a.outcome}
