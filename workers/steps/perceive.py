"""Perception step: build the coarse document (iteration 0) or run the previous round's
tool plan and append its results (iteration i > 0)."""

from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert

from models import Iteration, StepKind
from workers.perception.evidence import evidence_item, render_document
from workers.perception.executor import PlannedCall, RoundExecutor
from workers.perception.tools import coarse_tools
from workers.reasoning.interaction import accepted_calls
from workers.steps import NextStep
from workers.steps.context import load_iteration, load_job


@dataclass(frozen=True)
class PerceptionResult:
    evidence: list[dict]


def execute(claim) -> PerceptionResult:
    job = load_job(claim.job_id)
    if claim.iteration == 0:
        previous = []
        calls = [PlannedCall(tool.name, {}) for tool in coarse_tools()]
    else:
        before = load_iteration(claim.job_id, claim.iteration - 1)
        previous = list(before.evidence)
        calls = accepted_calls(before.tool_plan or [])
    outcomes = RoundExecutor(claim.job_id, claim.iteration, job.audio_path, job.audio_sha256).run(calls)
    new = [evidence_item(claim.iteration, o.call_index, o.tool, o.args, o.text) for o in outcomes]
    return PerceptionResult(previous + new)


def commit(session, claim, result: PerceptionResult) -> NextStep:
    session.execute(
        insert(Iteration)
        .values(
            job_id=claim.job_id,
            index=claim.iteration,
            document=render_document(result.evidence),
            evidence=result.evidence,
        )
        .on_conflict_do_nothing(index_elements=["job_id", "index"])
    )
    return NextStep(claim.iteration, StepKind.PLAN)
