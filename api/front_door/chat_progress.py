"""A job's trace as the front door tells it: one line per finished step (the tools a
perception round ran, the planner's verdict, the answer being written). A streamed call
sends each line as it happens (`JobWatch`); a reply, streamed or not, and a Batch API
output line carry the whole trace before the answering agent's reasoning (`traces`)."""

from collections import defaultdict
from dataclasses import dataclass, field
from uuid import UUID

from sqlalchemy import select

from models import Iteration, Job, Step, StepKind, StepStatus
from models.db import session_scope
from workers.method.verdict import Verdict

STEP_COLUMNS = (Step.id, Step.job_id, Step.kind, Step.iteration, Step.calls)


@dataclass
class JobWatch:
    job_id: UUID
    reported: set = field(default_factory=set)  # step ids already told

    def read(self) -> tuple[Job | None, list[str]]:
        """The job now (None: deleted meanwhile), and a line for each step finished since
        the last read."""
        with session_scope() as session:
            job = session.get(Job, self.job_id)
            if job is None:
                return None, []
            session.expunge(job)
            done = [s for s in _done_steps(session, [self.job_id]) if s.id not in self.reported]
            verdicts = _verdicts(session, [self.job_id]) if any(s.kind == StepKind.PLAN for s in done) else {}
        self.reported |= {s.id for s in done}
        return job, [_line(s, verdicts) for s in done]


def traces(session, job_ids) -> dict:
    """Each job's trace, for a page of jobs in two statements."""
    ids = list(job_ids)
    steps, verdicts = _done_steps(session, ids), _verdicts(session, ids)
    found = defaultdict(list)
    for step in steps:
        found[step.job_id].append(_line(step, verdicts))
    return found


def reasoning_with_trace(trace: list[str], reasoning: str | None) -> str:
    return "".join(line + "\n" for line in trace) + (reasoning or "")


def _done_steps(session, job_ids: list) -> list:
    return session.execute(select(*STEP_COLUMNS).where(Step.job_id.in_(job_ids), Step.status == StepStatus.DONE)
                           .order_by(Step.id)).all()


def _verdicts(session, job_ids: list) -> dict:
    rows = session.execute(select(Iteration.job_id, Iteration.index, Iteration.verdict)
                           .where(Iteration.job_id.in_(job_ids)))
    return {(job_id, index): verdict for job_id, index, verdict in rows}


def _line(step, verdicts: dict) -> str:
    where = "coarse document" if step.iteration == 0 else f"round {step.iteration}"
    if step.kind in (StepKind.PERCEIVE_CPU, StepKind.PERCEIVE_GPU):
        tools = ", ".join(dict.fromkeys(c["tool"] for c in step.calls or [])) or "no tools"
        return f"{where}: perception ran {tools}"
    if step.kind == StepKind.PLAN:
        verdict = Verdict.from_json(verdicts.get((step.job_id, step.iteration))) or Verdict(False, "")
        judged = "sufficient" if verdict.sufficient else "not sufficient"
        reason = f": {verdict.reason}" if verdict.reason else ""
        return f"{where}: the planning agent judged the evidence {judged}{reason}"
    if step.kind == StepKind.INTERACT:
        return f"{where}: the interaction agent chose tool calls for what is missing"
    return "the answering agent answered from the evidence"
