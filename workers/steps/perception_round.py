"""What a perception round is: its planned calls, and the evidence it adds.

A round's CPU step and GPU step (workers/steps/perceive_cpu.py, perceive_gpu.py) both
read the plan from here, so they agree on every call's index.
"""

from sqlalchemy.dialects.postgresql import insert

from models import Iteration, StepKind
from workers.perception.evidence import evidence_item, render_document
from workers.perception.executor import RoundExecutor
from workers.perception.tools import TOOLS
from workers.pipelines import after_first_document, first_round_calls
from workers.reasoning.interaction import accepted_calls
from workers.steps import NextStep
from workers.steps.context import load_iteration, load_job


class Round:
    def __init__(self, claim):
        self.iteration = claim.iteration
        job = load_job(claim.job_id)
        self.pipeline = job.pipeline
        if claim.iteration == 0:
            self.previous: list[dict] = []
            self.calls = first_round_calls(job.pipeline, job.question, job.choices)
        else:
            before = load_iteration(claim.job_id, claim.iteration - 1)
            self.previous = list(before.evidence)
            self.calls = accepted_calls(before.tool_plan or [])
        self.executor = RoundExecutor(claim.job_id, claim.iteration, job.audio_path, job.audio_sha256)

    @property
    def has_gpu_calls(self) -> bool:
        return any(TOOLS[call.tool].device == "gpu" for call in self.calls)

    def evidence(self) -> list[dict]:
        """The whole document's items: earlier rounds' then this round's, in plan order."""
        outcomes = self.executor.outcomes(self.calls)
        new = [evidence_item(self.iteration, o.call_index, o.tool, o.args, o.text) for o in outcomes]
        return self.previous + new


def write_iteration(session, claim, evidence: list[dict], pipeline: str) -> NextStep:
    session.execute(
        insert(Iteration)
        .values(
            job_id=claim.job_id,
            index=claim.iteration,
            document=render_document(evidence),
            evidence=evidence,
        )
        .on_conflict_do_nothing(index_elements=["job_id", "index"])
    )
    kind = after_first_document(pipeline) if claim.iteration == 0 else StepKind.PLAN
    return NextStep(claim.iteration, kind)
