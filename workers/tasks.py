"""Celery tasks. Each is a thin door into the step runner: messages carry a step id only."""

from models.status import StepKind
from workers.celery_app import app
from workers.gpu_batch import run_gpu_steps
from workers.step_runner import run_step
from workers.sweeper import sweep as sweep_once


@app.task(name="workers.tasks.perceive_cpu")
def perceive_cpu(step_id: int) -> None:
    run_step(step_id)


@app.task(name="workers.tasks.perceive_gpu")
def perceive_gpu(step_id: int) -> None:
    # Takes other queued GPU steps along, so their model calls share one forward pass.
    run_gpu_steps(step_id)


@app.task(name="workers.tasks.reason")
def reason(step_id: int) -> None:
    run_step(step_id)


@app.task(name="workers.tasks.sweep")
def sweep() -> None:
    sweep_once()


def task_for(kind: StepKind):
    return {StepKind.PERCEIVE_CPU: perceive_cpu, StepKind.PERCEIVE_GPU: perceive_gpu}.get(kind, reason)
