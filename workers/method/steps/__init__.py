"""The kinds of step. Each module declares its `HANDLER`, a StepHandler: `execute(claim)`,
the slow part run without a transaction open; `commit(session, claim, result)`, which
writes the result and names the successor step (or None: the job is finished); and
`keep_partial(session, claim, result)`, what to keep of a result whose job ended while it
ran (by default nothing).

A step's module is imported when a worker first runs a step of its kind, so a reasoning
worker never loads the perception stack and a perception worker never loads the agents.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def _keep_nothing(session, claim, result) -> None:
    return None


@dataclass(frozen=True)
class StepHandler:
    """What the step runner calls for a kind of step (claim: the runtime's StepClaim)."""

    execute: Callable[[Any], Any]
    commit: Callable[[Any, Any, Any], NextStep | None]
    keep_partial: Callable[[Any, Any, Any], None] = _keep_nothing


def handler_for(kind: StepKind) -> StepHandler:
    return importlib.import_module(HANDLER_MODULES[kind]).HANDLER
