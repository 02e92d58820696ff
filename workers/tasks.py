"""Celery tasks. Each is a thin door into the step runner: messages carry a step id only."""

from models.status import StepKind
from workers.celery_app import app
from workers.step_runner import run_step
from workers.sweeper import sweep as sweep_once


@app.task(name="workers.tasks.perceive")
def perceive(step_id: int) -> None:
    run_step(step_id)


@app.task(name="workers.tasks.reason")
def reason(step_id: int) -> None:
    run_step(step_id)


@app.task(name="workers.tasks.sweep")
def sweep() -> None:
    sweep_once()


def task_for(kind: StepKind):
    return perceive if kind is StepKind.PERCEIVE else reason
