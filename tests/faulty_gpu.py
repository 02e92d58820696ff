"""A GPU worker with faults planted in it, for tests/test_gpu_batching.py: the real Celery
app and pipeline, run as `celery -A tests.faulty_gpu worker`, where the simulated model
misbehaves on two clip lengths:

- a clip of POISON_COMPUTE_S seconds in a batch crashes the whole forward pass (an
  exception out of `compute`, as a CUDA error would raise);
- a clip of POISON_REPLY_S seconds gets a reply with a NUL byte, which Postgres refuses
  to store (an ALM's stray control token).
"""

import dataclasses

from workers.method.perception import tools
from workers.method.perception.tools import ToolResult
from workers.method.steps import perceive_gpu
from workers.runtime.celery_app import app  # noqa: F401  (what `-A tests.faulty_gpu` runs)

POISON_COMPUTE_S = 0.7
POISON_REPLY_S = 0.9

_tool = tools.TOOLS["simulated_gpu"]
_compute = perceive_gpu.compute


def _is(clip, seconds: float) -> bool:
    return abs(clip.duration_s - seconds) < 0.01


def _run_batch(calls):
    results = _tool.run_batch(calls)
    return [ToolResult(r.output, r.text + " \x00") if _is(clip, POISON_REPLY_S) else r
            for r, (_, clip, _) in zip(results, calls, strict=True)]


def _crashing_compute(batch):
    if any(_is(clip, POISON_COMPUTE_S) for chunk in batch.chunks for _, clip in chunk):
        raise RuntimeError("injected: the forward pass crashed")
    return _compute(batch)


tools.TOOLS["simulated_gpu"] = dataclasses.replace(_tool, run_batch=_run_batch)
perceive_gpu.compute = _crashing_compute
