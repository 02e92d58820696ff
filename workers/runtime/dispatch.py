"""Handing a step's message to the broker: its id, by task name, to its queue.

Only workers/runtime/outbox.py calls this: a message is sent once its step's send was taken in
Postgres, so the broker's state follows from the database's. Senders never import the
task modules, so none of them loads the code that runs the step.
"""

from models.status import StepKind
from workers.runtime.celery_app import app
from workers.runtime.routing import NORMAL_PRIORITY, STEP_ROUTES, URGENT_PRIORITY

# Ride out a broker restart of a few seconds before giving up a send (kombu's default
# gives up after ~0.6 s).
SEND_RETRY_POLICY = {"max_retries": 10, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2.0}


def send_step(step_id: int, kind: StepKind, urgent: bool = False, seq: int | None = None) -> None:
    """`urgent`: ahead of the queue's backlog (a re-sent lost message has waited its turn
    once); `seq`: the message's number in the outbox, which the claim records."""
    route = STEP_ROUTES[kind]
    app.send_task(route.task, args=[step_id], kwargs={} if seq is None else {"seq": seq}, queue=route.queue,
                  priority=URGENT_PRIORITY if urgent else NORMAL_PRIORITY,
                  retry=True, retry_policy=SEND_RETRY_POLICY)
