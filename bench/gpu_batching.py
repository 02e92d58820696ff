"""Cross-job batching: tiny-ALM caption items per second at B=8 against B=1, in one run.

    .venv/bin/python bench/gpu_batching.py [--jobs 32] [--new-tokens 16]

Two measurements, each at B=1 and B=8 on the same machine in the same process:
- pipeline: N queued GPU steps of N jobs (distinct audio, so no cache hits) drained by
  `run_gpu_steps`, the code a GPU worker runs (claims, padded generate, fenced commits);
- model: the ALM's `generate_batch` alone, N items in chunks of B.
The ALM is a tiny random Qwen2-Audio built here (no hub weights), so absolute figures say
nothing about a 7B model; the ratio shows what one padded pass saves per item. Random
weights never emit an end token (see tests/tiny_models.py), so every item generates
exactly --new-tokens tokens at either batch size. Writes bench/results/gpu_batching.json.
"""

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import bench_services, write_result  # noqa: E402
from core.settings import get_settings  # noqa: E402

RATE = 16000
CLIP_S = 5.0
BATCH_SIZES = (1, 8)


def noise_clip(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(str(path), (0.1 * rng.standard_normal(int(CLIP_S * RATE))).astype(np.float32), RATE)
    return path


def queue_gpu_steps(tmp: Path, jobs: int, seed: int) -> None:
    """Submit `jobs` jobs and run their CPU steps here, leaving one queued GPU step each."""
    from api.intake.batch_input import Item
    from api.intake.submission import submit
    from workers.runtime.step_runner import run_step

    items = [Item(f"j{seed}-{i}", noise_clip(tmp / f"n{seed}-{i}.wav", seed * 1000 + i), "What is heard?",
                  ["Noise", "Music"], "Noise") for i in range(jobs)]
    submit(f"bench-{seed}", items, {"max_iters": 0})
    for step_id in queued("perceive_cpu"):
        run_step(step_id)
    assert len(queued("perceive_gpu")) == jobs


def queued(kind: str) -> list[int]:
    from sqlalchemy import select

    from models import Step
    from models.db import session_scope

    with session_scope() as session:
        return list(session.scalars(select(Step.id).where(Step.kind == kind, Step.status == "queued").order_by(Step.id)))


def drain_gpu_steps(batch_size: int) -> float:
    """Seconds to settle every queued GPU step, B at a time, as a GPU worker does."""
    from workers.runtime.gpu_batch import run_gpu_steps

    os.environ["AGR_GPU_BATCH_SIZE"] = str(batch_size)
    get_settings.cache_clear()
    started = time.perf_counter()
    while pending := queued("perceive_gpu"):
        run_gpu_steps(pending[0])
    return time.perf_counter() - started


def model_seconds(alm, jobs: int, batch_size: int) -> float:
    clips = [np.random.default_rng(i).standard_normal(int(CLIP_S * RATE)).astype(np.float32) * 0.1 for i in range(jobs)]
    started = time.perf_counter()
    for start in range(0, jobs, batch_size):
        chunk = clips[start : start + batch_size]
        alm.generate_batch(chunk, ["Describe this audio in detail."] * len(chunk))
    return time.perf_counter() - started


def batch_sizes_used() -> dict[str, int]:
    from sqlalchemy import func, select

    from models import ToolCall
    from models.db import session_scope

    with session_scope() as session:
        rows = session.execute(select(ToolCall.batch_size, func.count()).group_by(ToolCall.batch_size)).all()
    return {str(size): count for size, count in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    args = parser.parse_args()

    import torch

    from tests.tiny_models import build_tiny_qwen2_audio

    with bench_services("agr-gpu-batching-") as tmp:
        os.environ.update(AGR_ALM_MODEL=str(build_tiny_qwen2_audio(tmp / "tiny-alm")), AGR_ALM_DEVICE="cpu",
                          AGR_ALM_MAX_NEW_TOKENS=str(args.new_tokens), AGR_COARSE_TOOLS='["caption"]',
                          AGR_GPU_BATCH_WAIT_S="0")
        get_settings.cache_clear()
        from workers.method.perception.loaded_models import audio_language_model

        alm = audio_language_model()
        model_seconds(alm, 8, 8)  # warm-up: first-call allocations are not batching's cost
        pipeline, model = {}, {}
        for seed, batch_size in enumerate(BATCH_SIZES, start=1):
            queue_gpu_steps(tmp, args.jobs, seed)
            pipeline[batch_size] = args.jobs / drain_gpu_steps(batch_size)
            model[batch_size] = args.jobs / model_seconds(alm, args.jobs, batch_size)
        used = batch_sizes_used()

    b1, b8 = BATCH_SIZES
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "device": "cpu", "threads": torch.get_num_threads()},
        "jobs": args.jobs, "clip_seconds": CLIP_S, "new_tokens_per_item": args.new_tokens,
        "pipeline_items_per_s": {str(b): round(v, 3) for b, v in pipeline.items()},
        "pipeline_ratio_b8_over_b1": round(pipeline[b8] / pipeline[b1], 2),
        "model_items_per_s": {str(b): round(v, 3) for b, v in model.items()},
        "model_ratio_b8_over_b1": round(model[b8] / model[b1], 2),
        "stored_batch_sizes": used,
    }
    print(f"{'':28}{'B=1':>10}{'B=8':>10}{'ratio':>8}")
    print(f"{'pipeline items/s':28}{pipeline[b1]:>10.2f}{pipeline[b8]:>10.2f}{result['pipeline_ratio_b8_over_b1']:>8.2f}")
    print(f"{'model generate items/s':28}{model[b1]:>10.2f}{model[b8]:>10.2f}{result['model_ratio_b8_over_b1']:>8.2f}")
    print(f"tool-call rows by stored batch size: {used}")
    write_result("gpu_batching", result)


if __name__ == "__main__":
    main()
