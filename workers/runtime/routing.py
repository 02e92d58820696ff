"""Where each task goes: the one definition of the queues and of which task runs which step.

Pure data, importable by every role (the API, beat, the sweeper, the metrics) without the
task modules: a sender names the task and its queue, it never imports the task.
"""

from dataclasses import dataclass

from models.status import StepKind

PERCEPTION_QUEUE = "perception"  # GPU tools: audio-language models, speech recognition
PERCEPTION_CPU_QUEUE = "perception-cpu"  # CPU tools, so a GPU never waits on librosa
REASONING_QUEUE = "reasoning"  # the LLM agents
QUEUES = (PERCEPTION_QUEUE, PERCEPTION_CPU_QUEUE, REASONING_QUEUE)

# Message priorities (Redis: the lower, the sooner; kombu keeps one list per priority step
# and a consumer drains the lower one first). A step's first message goes at NORMAL_PRIORITY;
# any later one (a lost message re-sent, a dead worker's step, a retry) goes URGENT: it has
# waited its turn once already.
URGENT_PRIORITY = 0
NORMAL_PRIORITY = 6


@dataclass(frozen=True)
class Route:
    task: str  # the registered Celery task name
    queue: str


STEP_ROUTES: dict[StepKind, Route] = {
    StepKind.PERCEIVE_CPU: Route("workers.tasks.perceive_cpu", PERCEPTION_CPU_QUEUE),
    StepKind.PERCEIVE_GPU: Route("workers.tasks.perceive_gpu", PERCEPTION_QUEUE),
    StepKind.PLAN: Route("workers.tasks.reason", REASONING_QUEUE),
    StepKind.INTERACT: Route("workers.tasks.reason", REASONING_QUEUE),
    StepKind.ANSWER: Route("workers.tasks.reason", REASONING_QUEUE),
}


def task_routes() -> dict[str, dict]:
    """Celery's `task_routes`, derived from the table above (a task re-sent by its own
    retry goes back to its queue)."""
    return {r.task: {"queue": r.queue} for r in STEP_ROUTES.values()}


def queue_of(kind: StepKind) -> str:
    return STEP_ROUTES[kind].queue
