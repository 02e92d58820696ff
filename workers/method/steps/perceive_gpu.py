"""Second step of a perception round: its GPU tools, then the round's evidence.

A GPU worker runs several jobs' GPU steps at once (workers/runtime/gpu_batch.py): the pending
calls of tools that share a batch runner (the routes of one audio-language model) go
through it together, in chunks of at most `batch_size` (so do transcription's calls on a
CUDA worker, as one batched decode); a failure belongs to the jobs whose calls were in
the failing chunk, not to the whole batch, and a runner that tells one call's failure
from the others' (an exception in its place) fails only that call's job. The work comes in three
phases, prepare (Postgres, decoding), compute (the model) and finish (Postgres), so the
worker can keep the model busy with one batch while it prepares or finishes another.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby

from core.database_outage import database_unreachable
from core.settings import get_settings
from workers.method.perception.audio_io import AudioClip, BadAudioError
from workers.method.perception.tools import TOOLS, PlannedCall, ToolResult
from workers.method.steps import StepHandler
from workers.method.steps.perception_round import Round, RoundWritten, write_iteration


@dataclass(frozen=True)
class PendingCall:
    step_id: int
    round: Round
    index: int
    call: PlannedCall


@dataclass
class GpuBatch:
    """Claimed GPU steps made ready for the model: their rounds loaded, the calls still to
    run found (stored and cached results are reused) and their audio decoded. Preparing
    and finishing one (Postgres, decoding) can run beside another batch's computing."""

    claims: list
    rounds: dict[int, Round]
    outcomes: dict[int, RoundWritten | Exception]  # failures so far; results once finished
    singles: list[PendingCall]  # calls of GPU tools without a batch runner
    chunks: list[list[tuple[PendingCall, AudioClip]]]  # one forward pass each


@dataclass(frozen=True)
class ComputedChunk:
    calls: list[PendingCall]
    results: list[ToolResult]
    latency_ms: float


def execute(claim) -> RoundWritten:
    outcome = execute_many([claim], batch_size=1)[claim.step_id]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def execute_many(claims, batch_size: int) -> dict[int, RoundWritten | Exception]:
    """Each claimed step's result, or the exception that failed it."""
    batch = prepare(claims, batch_size)
    return finish(batch, compute(batch))


def prepare(claims, batch_size: int) -> GpuBatch:
    outcomes: dict[int, RoundWritten | Exception] = {}
    rounds = {c.step_id: _attempt(outcomes, c.step_id, lambda c=c: Round(c)) for c in claims}
    pending: list[PendingCall] = []
    for step_id, round_ in rounds.items():
        if step_id not in outcomes:
            todo = _attempt(outcomes, step_id, lambda r=round_: r.pending("gpu"))
            pending += [PendingCall(step_id, round_, i, call) for i, call in todo or []]
    singles = [p for p in pending if TOOLS[p.call.tool].run_batch is None]
    chunks = []
    batchable = [p for p in pending if TOOLS[p.call.tool].run_batch is not None]
    for _, group in groupby(sorted(batchable, key=_runner_id), key=_runner_id):
        runnable = _decoded(list(group), outcomes)
        chunks += [runnable[start : start + batch_size] for start in range(0, len(runnable), batch_size)]
    return GpuBatch(list(claims), rounds, outcomes, singles, chunks)


def compute(batch: GpuBatch) -> list[ComputedChunk]:
    """The model's part: a forward pass per chunk (a failure belongs to that chunk's jobs)."""
    outcomes = batch.outcomes
    for p in batch.singles:
        if p.step_id not in outcomes:
            _attempt(outcomes, p.step_id, lambda p=p: p.round.executor.compute(p.index, p.call))
    chunks = [[(p, clip) for p, clip in chunk if p.step_id not in outcomes] for chunk in batch.chunks]
    chunks = [chunk for chunk in chunks if chunk]
    if get_settings().gpu_models_remote and len(chunks) > 1:
        # Every model is an engine: the chunks (each tool's calls, each model's) are HTTP
        # requests, sent together so a step's calls wait on the engine at once, not in turn.
        with ThreadPoolExecutor(len(chunks)) as pool:
            computed = list(pool.map(lambda chunk: _run_chunk(chunk, outcomes), chunks))
    else:
        computed = [_run_chunk(chunk, outcomes) for chunk in chunks]
    return [c for c in computed if c is not None]


def _run_chunk(chunk: list, outcomes: dict) -> "ComputedChunk | None":
    started = time.perf_counter()
    try:
        run_batch = TOOLS[chunk[0][0].call.tool].run_batch
        assert run_batch is not None  # chunks hold only calls of tools with a run_batch (prepare)
        results = run_batch([(p.call.tool, clip, p.call.args) for p, clip in chunk])
        if len(results) != len(chunk):
            raise RuntimeError(f"{chunk[0][0].call.tool}: {len(results)} results for {len(chunk)} calls")
    except Exception as exc:
        for p, _ in chunk:
            outcomes.setdefault(p.step_id, exc)
        return None
    # A runner may put an exception in one call's place (transcription: that job's audio
    # broke the decode): it fails that call's job only.
    kept = []
    for (p, _), result in zip(chunk, results, strict=True):
        if isinstance(result, Exception):
            outcomes.setdefault(p.step_id, result)
        else:
            kept.append((p, result))
    if not kept:
        return None
    return ComputedChunk([p for p, _ in kept], [r for _, r in kept], (time.perf_counter() - started) * 1000)


def finish(batch: GpuBatch, computed: list[ComputedChunk]) -> dict[int, RoundWritten | Exception]:
    """Store every result on its own job's round, then each round's evidence."""
    for chunk in computed:
        for p, result in zip(chunk.calls, chunk.results, strict=True):
            if p.step_id in batch.outcomes:
                continue  # that job's step failed already: its other results wait for its retry
            # A result Postgres refuses (a NUL byte in a model's reply) fails its own job's
            # attempt, not its batch-mates'.
            _attempt(batch.outcomes, p.step_id, lambda p=p, result=result: p.round.executor.save(
                p.index, p.call, result, None, chunk.latency_ms, batch_size=len(chunk.calls)))
    for step_id, round_ in batch.rounds.items():
        if step_id not in batch.outcomes:
            _attempt(batch.outcomes, step_id, lambda r=round_: r.written(), keep=True)
    return batch.outcomes


def commit(session, claim, result: RoundWritten):
    return write_iteration(session, claim, result)


def _runner_id(p: PendingCall) -> int:
    return id(TOOLS[p.call.tool].run_batch)


def _decoded(calls: list[PendingCall], outcomes: dict) -> list[tuple[PendingCall, AudioClip]]:
    """Each call with its audio window, decoded now so the forward pass does not wait on it."""
    runnable = []
    for p in calls:
        if p.step_id in outcomes:
            continue
        try:
            runnable.append((p, p.round.executor.clip_for(p.call)))
        except BadAudioError as exc:  # a window outside the clip: that call's error only
            p.round.executor.save(p.index, p.call, ToolResult({}, f"tool error: {exc}"), str(exc), 0.0)
        except Exception as exc:  # undecodable audio: that job's step fails
            outcomes[p.step_id] = exc
    return runnable


def _attempt(outcomes: dict, step_id: int, work, keep: bool = False):
    """Run `work` for one step; an exception becomes that step's outcome, except the
    database being unreachable: that is the whole batch's, and is waited out above."""
    try:
        value = work()
    except Exception as exc:
        if database_unreachable(exc):
            raise
        outcomes[step_id] = exc
        return None
    if keep:
        outcomes[step_id] = value
    return value


HANDLER = StepHandler(execute, commit)
