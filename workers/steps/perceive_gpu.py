"""Second step of a perception round: its GPU tools, then the round's evidence.

A GPU worker runs several jobs' GPU steps at once (workers/gpu_batch.py): the pending
calls of tools that share a batch runner (the routes of one audio-language model) go
through it together, in chunks of at most `batch_size`; a failure belongs to the jobs
whose calls were in the failing chunk, not to the whole batch.
"""

import time
from dataclasses import dataclass
from itertools import groupby

from workers.perception.audio_io import BadAudioError
from workers.perception.executor import PlannedCall
from workers.perception.tools import TOOLS, ToolResult
from workers.steps.perception_round import Round, write_iteration


@dataclass(frozen=True)
class GpuRoundResult:
    evidence: list[dict]
    pipeline: str


@dataclass(frozen=True)
class PendingCall:
    step_id: int
    round: Round
    index: int
    call: PlannedCall


def execute(claim) -> GpuRoundResult:
    outcome = execute_many([claim], batch_size=1)[claim.step_id]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def execute_many(claims, batch_size: int) -> dict[int, GpuRoundResult | Exception]:
    """Each claimed step's result, or the exception that failed it."""
    outcomes: dict[int, GpuRoundResult | Exception] = {}
    rounds = {c.step_id: _attempt(outcomes, c.step_id, lambda c=c: Round(c)) for c in claims}
    pending: list[PendingCall] = []
    for step_id, round_ in rounds.items():
        todo = _attempt(outcomes, step_id, lambda r=round_: r.executor.pending(r.calls, device="gpu"))
        pending += [PendingCall(step_id, round_, i, call) for i, call in todo or []]
    batchable = [p for p in pending if TOOLS[p.call.tool].run_batch is not None]
    for p in pending:
        if p not in batchable and p.step_id not in outcomes:
            _attempt(outcomes, p.step_id, lambda p=p: p.round.executor.compute(p.index, p.call))
    for _, group in groupby(sorted(batchable, key=_runner_id), key=_runner_id):
        group = list(group)
        for start in range(0, len(group), batch_size):
            _run_chunk([p for p in group[start : start + batch_size] if p.step_id not in outcomes], outcomes)
    for step_id, round_ in rounds.items():
        if step_id not in outcomes:
            _attempt(outcomes, step_id, lambda r=round_: GpuRoundResult(r.evidence(), r.pipeline), keep=True)
    return outcomes


def commit(session, claim, result: GpuRoundResult):
    return write_iteration(session, claim, result.evidence, result.pipeline)


def _runner_id(p: PendingCall) -> int:
    return id(TOOLS[p.call.tool].run_batch)


def _run_chunk(chunk: list[PendingCall], outcomes: dict) -> None:
    """One forward pass for the chunk; each result is stored on its own job's round."""
    runnable = []
    for p in chunk:
        try:
            runnable.append((p, p.round.executor.clip_for(p.call)))
        except BadAudioError as exc:  # a window outside the clip: that call's error only
            p.round.executor.save(p.index, p.call, ToolResult({}, f"tool error: {exc}"), str(exc), 0.0)
        except Exception as exc:  # undecodable audio: that job's step fails
            outcomes[p.step_id] = exc
    if not runnable:
        return
    started = time.perf_counter()
    try:
        results = TOOLS[runnable[0][0].call.tool].run_batch([(p.call.tool, clip, p.call.args) for p, clip in runnable])
    except Exception as exc:
        for p, _ in runnable:
            outcomes.setdefault(p.step_id, exc)
        return
    latency_ms = (time.perf_counter() - started) * 1000
    for (p, _), result in zip(runnable, results, strict=True):
        p.round.executor.save(p.index, p.call, result, None, latency_ms, batch_size=len(runnable))


def _attempt(outcomes: dict, step_id: int, work, keep: bool = False):
    """Run `work` for one step; an exception becomes that step's outcome."""
    try:
        value = work()
    except Exception as exc:
        outcomes[step_id] = exc
        return None
    if keep:
        outcomes[step_id] = value
    return value
