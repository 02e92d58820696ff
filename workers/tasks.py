"""Celery tasks. Each is a thin door into the step runner: messages carry a step id only.

Senders never import this module: workers/dispatch.py sends by the task names that
workers/routing.py lists (tests/test_roles.py checks they match these). This module
loads only what every role shares: a step kind's code is imported when a worker first runs
a step of that kind (workers/steps/__init__.py), the GPU batch pipeline when a GPU worker
first takes a GPU step.
"""

from sqlalchemy.exc import InterfaceError, OperationalError

from workers.celery_app import app
from workers.step_runner import run_step
from workers.sweeper import sweep as sweep_once

# Postgres unreachable (a restart, a failover): the step's state could not be read or
# written, so nothing was settled. Acking the message would leave the step to the
# sweeper's slow stale-message path; sending it again with backoff resumes as soon as the
# database is back. A step whose claim did commit keeps its lease, so the retried message
# finds it held and leaves it to the lease's expiry: never two executions at once.
DATABASE_UNREACHABLE = dict(autoretry_for=(OperationalError, InterfaceError), max_retries=None,
                            retry_backoff=1, retry_backoff_max=30, retry_jitter=True)


@app.task(name="workers.tasks.perceive_cpu", **DATABASE_UNREACHABLE)
def perceive_cpu(step_id: int) -> None:
    run_step(step_id)


@app.task(name="workers.tasks.perceive_gpu", **DATABASE_UNREACHABLE)
def perceive_gpu(step_id: int) -> None:
    # Takes other queued GPU steps along, so their model calls share one forward pass.
    from workers.gpu_batch import run_gpu_steps  # the perception stack: GPU workers only

    run_gpu_steps(step_id)


@app.task(name="workers.tasks.reason", **DATABASE_UNREACHABLE)
def reason(step_id: int) -> None:
    run_step(step_id)


@app.task(name="workers.tasks.sweep")
def sweep() -> None:
    sweep_once()
