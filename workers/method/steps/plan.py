"""Planning step: the planner judges the current document; stop or refine. The tools it
is told of are the job's catalogue (workers/method/perception/catalogue.py), not this worker's.

In `crosscheck` the audio models' round-0 answers gate the loop (workers/method/perception/
agreement.py): agreement with a planner that finds the evidence sufficient ends it with
their answer; a conflict the planner would let stand is sent to the interaction agent to
resolve first. A final verdict not gated on agreement is followed by the audio model's
final listening (a GPU round) before the answer, when the pipeline has it."""

from dataclasses import dataclass

from sqlalchemy import func, update

from models import Iteration, StepKind
from workers.method.perception import catalogue
from workers.method.perception.agreement import of_round_zero
from workers.method.pipelines import gates_on_agreement, tools_for
from workers.method.reasoning import planner
from workers.method.reasoning.agent_call import ask_agent
from workers.method.steps import NextStep, final_listening

ITERATIONS = Iteration.__table__
from workers.method.steps.context import load_job_and_iteration

RESOLVE_CONFLICT = "the audio models' answers conflict: evidence that tells their choices apart"


@dataclass(frozen=True)
class Plan:
    verdict: dict
    final_listening: tuple = ()  # the call of the audio model's final answer, if it comes next


def execute(claim) -> Plan:
    job, current = load_job_and_iteration(claim.job_id, claim.iteration)
    tools = catalogue.of_job(job.catalogue_version)
    offered = tools_for(job.pipeline, tools.tools)
    reply = ask_agent(
        claim.job_id, claim.iteration, "planner",
        planner.messages(job.question, job.choices, current.document, offered),
        planner.schema([t.name for t in offered]),
    )
    verdict = planner.verdict_from(reply.valid_json, reply.text).as_json()
    # The loop stops on "sufficient" or when the refinement budget is spent; the planner
    # has re-checked the document after every round, the last one included.
    verdict["final"] = verdict["sufficient"] or claim.iteration >= job.max_iters
    if claim.iteration == 0 and gates_on_agreement(job.pipeline, job.mechanisms):
        _gate(verdict, of_round_zero(current.evidence, job.choices), job.max_iters)
    if verdict["final"] and "gated_answer" not in verdict:
        return Plan(verdict, final_listening.calls(job, current.evidence, tools))
    return Plan(verdict)


def _gate(verdict: dict, agreement, max_iters: int) -> None:
    """Round 0's agreement as a decision, stored on the verdict for the audit. Only round 0
    gates: after a refinement round the planner judges what the round found, and the
    answering agent reads it, rather than the models' first answers deciding alone."""
    verdict["agreement"] = agreement.as_json()
    if agreement.agreed and verdict["sufficient"]:
        verdict["gate"] = "agreement"
        verdict["gated_answer"] = agreement.agreed
        verdict["final"] = True
    elif agreement.conflict and max_iters > 0:
        # The conflict is resolved by a round planned for it, whatever the planner thought
        # of the rest.
        verdict["gate"] = "disagreement"
        verdict["final"] = False
        verdict["missing"] = [RESOLVE_CONFLICT, *verdict["missing"]]


def commit(session, claim, plan: Plan) -> NextStep:
    session.execute(
        update(ITERATIONS)  # a Core statement: no ORM bookkeeping for one row
        .where(ITERATIONS.c.job_id == claim.job_id, ITERATIONS.c.index == claim.iteration)
        .values(verdict=plan.verdict, planned_at=func.now())
    )
    if plan.final_listening:
        return NextStep(claim.iteration + 1, StepKind.PERCEIVE_CPU, calls=plan.final_listening)
    kind = StepKind.ANSWER if plan.verdict["final"] else StepKind.INTERACT
    return NextStep(claim.iteration, kind)
