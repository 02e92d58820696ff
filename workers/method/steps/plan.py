"""Planning step: the planner judges the current document; stop or refine. The tools it
is told of are the job's catalogue (workers/method/perception/catalogue.py), not this worker's.

In `crosscheck` the audio models' round-0 answers gate the loop (workers/method/perception/
agreement.py): agreement with a planner that finds the evidence sufficient ends it with
their answer; a conflict the planner would let stand is sent to the interaction agent to
resolve first. A final verdict not gated on agreement is followed by the audio model's
final listening (a GPU round) before the answer, when the pipeline has it."""

from dataclasses import dataclass, replace
from typing import cast

from sqlalchemy import Table, func, update

from models import Iteration, StepKind
from workers.method.perception import catalogue
from workers.method.perception.agreement import of_round_zero
from workers.method.reasoning import planner
from workers.method.reasoning.agent_call import ask_agent
from workers.method.steps import NextStep, StepHandler, final_listening
from workers.method.steps.context import load_job_and_iteration
from workers.method.verdict import GATE_AGREEMENT, GATE_DISAGREEMENT, Verdict

ITERATIONS = cast(Table, Iteration.__table__)  # typed FromClause; a declarative model's is a Table

RESOLVE_CONFLICT = "the audio models' answers conflict: evidence that tells their choices apart"


@dataclass(frozen=True)
class Plan:
    verdict: Verdict
    final_listening: tuple = ()  # the call of the audio model's final answer, if it comes next


def execute(claim) -> Plan:
    job, current = load_job_and_iteration(claim.job_id, claim.iteration)
    tools = catalogue.of_job(job.catalogue_version)
    offered = job.pipeline.offered(tools.tools)
    reply = ask_agent(
        claim.job_id, claim.iteration, "planner",
        planner.messages(job.question, job.choices, current.document, offered),
        planner.schema([t.name for t in offered]),
    )
    verdict = planner.verdict_from(reply.valid_json, reply.text)
    # The loop stops on "sufficient" or when the refinement budget is spent; the planner
    # has re-checked the document after every round, the last one included.
    verdict = replace(verdict, final=verdict.sufficient or claim.iteration >= job.max_iters)
    if claim.iteration == 0 and job.pipeline.gates_on_agreement:
        verdict = _gated(verdict, of_round_zero(current.evidence, job.choices), job.max_iters)
    if verdict.final and verdict.gated_answer is None:
        return Plan(verdict, final_listening.calls(job, current.evidence, tools))
    return Plan(verdict)


def _gated(verdict: Verdict, agreement, max_iters: int) -> Verdict:
    """Round 0's agreement as a decision, stored on the verdict for the audit. Only round 0
    gates: after a refinement round the planner judges what the round found, and the
    answering agent reads it, rather than the models' first answers deciding alone."""
    verdict = replace(verdict, agreement=agreement.as_json())
    if agreement.agreed and verdict.sufficient:
        return replace(verdict, gate=GATE_AGREEMENT, gated_answer=agreement.agreed, final=True)
    if agreement.conflict and max_iters > 0:
        # The conflict is resolved by a round planned for it, whatever the planner thought
        # of the rest.
        return replace(verdict, gate=GATE_DISAGREEMENT, final=False, missing=[RESOLVE_CONFLICT, *verdict.missing])
    return verdict


def commit(session, claim, plan: Plan) -> NextStep:
    session.execute(
        update(ITERATIONS)  # a Core statement: no ORM bookkeeping for one row
        .where(ITERATIONS.c.job_id == claim.job_id, ITERATIONS.c.index == claim.iteration)
        .values(verdict=plan.verdict.as_json(), planned_at=func.now())
    )
    if plan.final_listening:
        return NextStep(claim.iteration + 1, StepKind.PERCEIVE_CPU, calls=plan.final_listening)
    kind = StepKind.ANSWER if plan.verdict.final else StepKind.INTERACT
    return NextStep(claim.iteration, kind)


HANDLER = StepHandler(execute, commit)
