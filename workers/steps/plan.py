"""Planning step: the planner judges the current document; stop or refine. The tools it
is told of are the job's catalogue (workers/perception/catalogue.py), not this worker's."""

from sqlalchemy import func, update

from models import Iteration, StepKind
from workers.perception import catalogue
from workers.reasoning import planner
from workers.reasoning.agent_call import ask_agent
from workers.steps import NextStep

ITERATIONS = Iteration.__table__
from workers.steps.context import load_job_and_iteration


def execute(claim) -> dict:
    job, current = load_job_and_iteration(claim.job_id, claim.iteration)
    document = current.document
    tools = list(catalogue.of_job(job.catalogue_version).tools)
    reply = ask_agent(
        claim.job_id, claim.iteration, "planner",
        planner.messages(job.question, job.choices, document, tools),
        planner.schema([t.name for t in tools]),
    )
    verdict = planner.verdict_from(reply.valid_json, reply.text).as_json()
    # The loop stops on "sufficient" or when the refinement budget is spent; the planner
    # has re-checked the document after every round, the last one included.
    verdict["final"] = verdict["sufficient"] or claim.iteration >= job.max_iters
    return verdict


def commit(session, claim, verdict: dict) -> NextStep:
    session.execute(
        update(ITERATIONS)  # a Core statement: no ORM bookkeeping for one row
        .where(ITERATIONS.c.job_id == claim.job_id, ITERATIONS.c.index == claim.iteration)
        .values(verdict=verdict, planned_at=func.now())
    )
    kind = StepKind.ANSWER if verdict["final"] else StepKind.INTERACT
    return NextStep(claim.iteration, kind)
