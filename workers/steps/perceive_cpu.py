"""First step of a perception round: its CPU tools. It closes the round itself when the
round has no GPU call, and otherwise hands over to the round's GPU step."""

from dataclasses import dataclass

from models import StepKind
from workers.steps import NextStep
from workers.steps.perception_round import Round, write_iteration


@dataclass(frozen=True)
class CpuRoundResult:
    evidence: list[dict] | None  # None: the GPU step completes the round
    pipeline: str


def execute(claim) -> CpuRoundResult:
    round_ = Round(claim)
    round_.executor.run(round_.calls, device="cpu")
    return CpuRoundResult(None if round_.has_gpu_calls else round_.evidence(), round_.pipeline)


def commit(session, claim, result: CpuRoundResult) -> NextStep:
    if result.evidence is None:
        return NextStep(claim.iteration, StepKind.PERCEIVE_GPU)
    return write_iteration(session, claim, result.evidence, result.pipeline)
