"""Celery tasks. Each is a thin door into the step runner: messages carry a step id only.

Senders never import this module: workers/runtime/dispatch.py sends by the task names that
workers/runtime/routing.py lists (tests/test_roles.py checks they match these). This module
loads only what every role shares: a step kind's code is imported when a worker first runs
a step of that kind (workers/method/steps/__init__.py), the GPU batch pipeline when a GPU worker
first takes a GPU step.

No task retries itself through Celery: a database outage is waited out inside the step
(core/database_outage.py, bounded by AGR_DATABASE_OUTAGE_TOLERANCE_S), a failed attempt
is retried through the outbox (workers/runtime/outbox.py), and a message whose task gave up is
found lost and re-sent by the sweeper. So no countdown message waits in a worker's memory.
Each task is counted in flight, so that a thread-pool worker restarting after a broker
outage lets its steps finish first (workers/runtime/broker_watchdog.py).
"""

from workers.runtime.broker_watchdog import run_unless_draining
from workers.runtime.celery_app import app
from workers.runtime.step_runner import run_step


# `seq`: the message's number (workers/runtime/outbox.py); absent from messages sent before it.
@app.task(name="workers.tasks.perceive_cpu")
def perceive_cpu(step_id: int, seq: int | None = None) -> None:
    run_unless_draining(run_step, step_id, seq)


@app.task(name="workers.tasks.perceive_gpu")
def perceive_gpu(step_id: int, seq: int | None = None) -> None:
    # Takes other queued GPU steps along, so their model calls share one forward pass.
    from workers.runtime.gpu_batch import run_gpu_steps  # the perception stack: GPU workers only

    run_unless_draining(run_gpu_steps, step_id, seq)


@app.task(name="workers.tasks.reason")
def reason(step_id: int, seq: int | None = None) -> None:
    run_unless_draining(run_step, step_id, seq)
