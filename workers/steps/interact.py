"""Interaction step: turn the planner's "missing" into tool calls for the next round."""

from sqlalchemy import update

from models import Iteration, StepKind
from workers.perception.tools import available_tools
from workers.reasoning import interaction
from workers.reasoning.agent_call import ask_agent
from workers.steps import NextStep
from workers.steps.context import load_iteration, load_job


def execute(claim) -> list[dict]:
    job = load_job(claim.job_id)
    current = load_iteration(claim.job_id, claim.iteration)
    tools = available_tools()
    reply = ask_agent(
        claim.job_id, claim.iteration, "interaction",
        interaction.messages(job.question, job.choices, current.document,
                             (current.verdict or {}).get("missing", []), tools),
        interaction.schema(tools),
    )
    return interaction.plan_from(reply.valid_json, tools)


def commit(session, claim, plan: list[dict]) -> NextStep:
    session.execute(
        update(Iteration)
        .where(Iteration.job_id == claim.job_id, Iteration.index == claim.iteration)
        .values(tool_plan=plan)
    )
    if not interaction.accepted_calls(plan):
        # Nothing usable was asked for: another round would see the same document.
        return NextStep(claim.iteration, StepKind.ANSWER)
    return NextStep(claim.iteration + 1, StepKind.PERCEIVE_CPU)
