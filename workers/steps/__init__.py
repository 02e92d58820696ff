"""The four kinds of step. Each module has `execute(claim)`, the slow part run without a
transaction open, and `commit(session, claim, result)`, which writes the result and names
the successor step (or None when the job is finished)."""

from dataclasses import dataclass

from models.status import StepKind


@dataclass(frozen=True)
class NextStep:
    iteration: int
    kind: StepKind


from workers.steps import answer, interact, perceive_cpu, perceive_gpu, plan  # noqa: E402  (they import NextStep)

HANDLERS = {
    StepKind.PERCEIVE_CPU: perceive_cpu,
    StepKind.PERCEIVE_GPU: perceive_gpu,
    StepKind.PLAN: plan,
    StepKind.INTERACT: interact,
    StepKind.ANSWER: answer,
}
