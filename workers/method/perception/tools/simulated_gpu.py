"""A stand-in GPU model with a fixed compute time per call, for throughput benchmarks
(bench/pipelining.py): it lets a bench measure how busy the pipeline keeps a GPU worker
without a real model's variance. Available only when AGR_SIMULATED_GPU_S is set."""

import time
from typing import TYPE_CHECKING

from core.settings import get_settings
from workers.method.perception.tools.base import Tool, ToolResult

if TYPE_CHECKING:
    from workers.method.perception.audio_io import AudioClip


def run_batch(calls: list[tuple[str, "AudioClip", dict]]) -> list[ToolResult]:
    seconds = get_settings().simulated_gpu_s
    assert seconds is not None  # a worker runs a tool only when available() (Round.pending): it is set
    # No gain from batching: n calls cost n times one, so the GPU-bound ceiling is exact.
    time.sleep(seconds * len(calls))
    return [ToolResult({"seconds": clip.duration_s}, f"simulated model heard {clip.duration_s:.2f} s")
            for _, clip, _ in calls]


TOOL = Tool(
    "simulated_gpu",
    "A benchmark stand-in for a GPU model: fixed compute time, no real output.",
    "gpu",
    run=lambda clip, args: run_batch([("simulated_gpu", clip, args)])[0],
    model_name=lambda: f"simulated-{get_settings().simulated_gpu_s}s",
    available=lambda: get_settings().simulated_gpu_s is not None,
    run_batch=run_batch,
)
