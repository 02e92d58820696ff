"""The kinds of step. Each module has `execute(claim)`, the slow part run without a
transaction open, and `commit(session, claim, result)`, which writes the result and names
the successor step (or None when the job is finished).

A step's module is imported when a worker first runs a step of its kind, so a reasoning
worker never loads the perception stack and a perception worker never loads the agents.
"""

import importlib
from dataclasses import dataclass
from types import ModuleType

from models.status import StepKind


@dataclass(frozen=True)
class NextStep:
    iteration: int
    kind: StepKind
    # A perception step's calls (PlannedCall), stored on its row when it is made, so the
    # round runs what was planned whichever worker takes it.
    calls: tuple | None = None


HANDLER_MODULES = {
    StepKind.PERCEIVE_CPU: "workers.method.steps.perceive_cpu",
    StepKind.PERCEIVE_GPU: "workers.method.steps.perceive_gpu",
    StepKind.PLAN: "workers.method.steps.plan",
    StepKind.INTERACT: "workers.method.steps.interact",
    StepKind.ANSWER: "workers.method.steps.answer",
}


def handler_for(kind: StepKind) -> ModuleType:
    return importlib.import_module(HANDLER_MODULES[kind])
