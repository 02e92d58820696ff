"""Interaction step: turn the planner's "missing" into tool calls for the next round.

The agent is shown the job's tool catalogue (workers/method/perception/catalogue.py), and the
next round's calls are stored on its first step with the catalogue's models."""

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, update

from models import Iteration, StepKind
from workers.method.perception import catalogue
from workers.method.reasoning import interaction
from workers.method.reasoning.agent_call import ask_agent
from workers.method.steps import NextStep, StepHandler, final_listening
from workers.method.steps.context import load_job_and_iteration

ITERATIONS = cast(Table, Iteration.__table__)  # typed FromClause; a declarative model's is a Table


@dataclass(frozen=True)
class ToolPlan:
    plan: list[dict]  # every proposed call, accepted or dropped (the audit's record)
    calls: tuple  # the accepted ones as the next round's PlannedCalls
    final_listening: tuple = ()  # none accepted: crosscheck's final listening, if it has one


def execute(claim) -> ToolPlan:
    job, current = load_job_and_iteration(claim.job_id, claim.iteration)
    tools = catalogue.of_job(job.catalogue_version)
    offered = job.pipeline.offered(tools.tools)
    reply = ask_agent(
        claim.job_id, claim.iteration, "interaction",
        interaction.messages(job.question, job.choices, current.document,
                             current.verdict.missing if current.verdict else [], offered),
        interaction.schema(offered),
    )
    plan = interaction.plan_from(reply.valid_json, offered)
    calls = tuple(interaction.accepted_calls(plan, tools))
    return ToolPlan(plan, calls, () if calls else final_listening.calls(job, current.evidence, tools))


def commit(session, claim, result: ToolPlan) -> NextStep:
    session.execute(
        update(ITERATIONS)  # a Core statement: no ORM bookkeeping for one row
        .where(ITERATIONS.c.job_id == claim.job_id, ITERATIONS.c.index == claim.iteration)
        .values(tool_plan=result.plan)
    )
    if result.final_listening:  # nothing usable was asked for: the loop ends here
        return NextStep(claim.iteration + 1, StepKind.PERCEIVE_CPU, calls=result.final_listening)
    if not result.calls:
        # Nothing usable was asked for: another round would see the same document.
        return NextStep(claim.iteration, StepKind.ANSWER)
    return NextStep(claim.iteration + 1, StepKind.PERCEIVE_CPU, calls=result.calls)


HANDLER = StepHandler(execute, commit)
