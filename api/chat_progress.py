"""What a held chat call waits on: its job, read until it ends, and the steps it has done
(for `stream: true`, one line of progress per finished step: the tools a perception round
ran, the planner's verdict, the answer being written)."""

from dataclasses import dataclass, field

from sqlalchemy import select

from models import Iteration, Job, Step, StepKind, StepStatus
from models.db import session_scope


@dataclass
class JobWatch:
    job_id: object
    reported: set = field(default_factory=set)  # step ids already told

    def read(self) -> tuple[Job, list[str]]:
        """The job now, and a line for each step finished since the last read."""
        with session_scope() as session:
            job = session.get(Job, self.job_id)
            session.expunge(job)
            done = session.scalars(select(Step).where(Step.job_id == self.job_id, Step.status == StepStatus.DONE)
                                   .order_by(Step.id)).all()
            fresh = [s for s in done if s.id not in self.reported]
            verdicts = _verdicts(session, self.job_id) if any(s.kind == StepKind.PLAN for s in fresh) else {}
        self.reported |= {s.id for s in fresh}
        return job, [_line(s, verdicts) for s in fresh]


def _verdicts(session, job_id) -> dict:
    return dict(session.execute(select(Iteration.index, Iteration.verdict).where(Iteration.job_id == job_id)).all())


def _line(step: Step, verdicts: dict) -> str:
    where = "coarse document" if step.iteration == 0 else f"round {step.iteration}"
    if step.kind in (StepKind.PERCEIVE_CPU, StepKind.PERCEIVE_GPU):
        tools = ", ".join(dict.fromkeys(c["tool"] for c in step.calls or [])) or "no tools"
        return f"{where}: perception ran {tools}"
    if step.kind == StepKind.PLAN:
        verdict = verdicts.get(step.iteration) or {}
        judged = "sufficient" if verdict.get("sufficient") else "not sufficient"
        reason = f": {verdict['reason']}" if verdict.get("reason") else ""
        return f"{where}: the planning agent judged the evidence {judged}{reason}"
    if step.kind == StepKind.INTERACT:
        return f"{where}: the interaction agent chose tool calls for what is missing"
    return "the answering agent answered from the evidence"
