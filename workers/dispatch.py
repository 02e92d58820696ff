"""Sending a step: its id, by task name, to its queue.

Senders (the API's submission, the step runner, the sweeper) import this module only, not
the task modules, so none of them loads the code that runs the step.
"""

from models.status import StepKind
from workers.celery_app import app
from workers.routing import STEP_ROUTES

# Ride out a broker restart of a few seconds before giving up a send (kombu's default
# gives up after ~0.6 s).
SEND_RETRY_POLICY = {"max_retries": 10, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}


def send_step(step_id: int, kind: StepKind, countdown: float | None = None) -> None:
    route = STEP_ROUTES[kind]
    app.send_task(route.task, args=[step_id], queue=route.queue, countdown=countdown,
                  retry=True, retry_policy=SEND_RETRY_POLICY)
