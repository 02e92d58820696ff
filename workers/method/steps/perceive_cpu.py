"""First step of a perception round: its CPU tools. It closes the round itself when the
round has no GPU call, and otherwise hands over to the round's GPU step, giving it the
round's stored calls. Its tools' results are stored in its own fenced commit, with the
iteration or the GPU step they lead to (workers/method/perception/executor.py)."""

from dataclasses import dataclass

from models import StepKind
from workers.method.perception.executor import store_rows
from workers.method.steps import NextStep, StepHandler
from workers.method.steps.perception_round import Round, RoundWritten, write_iteration


@dataclass(frozen=True)
class CpuRoundResult:
    written: RoundWritten | None  # None: the GPU step completes the round
    calls: tuple  # the round's calls, for its GPU step
    tool_calls: tuple = ()  # rows of the calls computed here, stored by the commit


def execute(claim) -> CpuRoundResult:
    round_ = Round(claim)
    for index, call in round_.pending("cpu"):
        # A speech tool on the CPU queue runs in the step that runs voice activity: it is
        # skipped here when that found no speech, as the GPU step skips it.
        if not round_.executor.skipped_without_speech(index, call):
            round_.executor.compute_unsaved(index, call)
    written = None if round_.has_gpu_calls else round_.written()
    return CpuRoundResult(written, tuple(round_.calls), tuple(round_.executor.unsaved))


def keep_partial(session, claim, result: CpuRoundResult) -> None:
    """Its job ended while it worked: the results it paid for are kept (no successor)."""
    store_rows(session, list(result.tool_calls))


def commit(session, claim, result: CpuRoundResult) -> NextStep:
    store_rows(session, list(result.tool_calls))
    if result.written is None:
        return NextStep(claim.iteration, StepKind.PERCEIVE_GPU, calls=result.calls)
    return write_iteration(session, claim, result.written)


HANDLER = StepHandler(execute, commit, keep_partial=keep_partial)
