"""Pipelining: does a bulk batch keep the GPU busy?

One perception worker of concurrency 1 holds a simulated GPU model with a fixed compute
time per item (AGR_SIMULATED_GPU_S, no gain from batching), the LLM server answers every
call after a fixed latency, and a 200-item batch runs through the whole stack (coarse
document = signal facts + the simulated model; planner finds it sufficient; answerer).
Beside it, in the same run and with the same costs:

- the reference implementation's sequential per-item loop (perceive, plan, answer, one
  item after another), timed on `--reference-items` items;
- the GPU-bound ceiling: one item's GPU seconds times the items.

Prints a table and writes bench/results/pipelining.json with `ceiling_fraction` (pipeline
items/s over ceiling items/s; the target is >= 0.90) and the GPU worker's busy share.
Run: .venv/bin/python bench/pipelining.py [--items 200] [--gpu-s 0.25] [--llm-s 0.5]
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, write_result  # noqa: E402
from core import processes  # noqa: E402
from core.settings import get_settings  # noqa: E402

WARMUP_ITEMS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--gpu-s", type=float, default=0.25, help="simulated GPU seconds per item")
    parser.add_argument("--llm-s", type=float, default=0.5, help="LLM latency per call")
    parser.add_argument("--reasoning-concurrency", type=int, default=8)
    parser.add_argument("--reference-items", type=int, default=20)
    args = parser.parse_args()
    with bench_services("agr-bench-pipelining-", llm_latency_s=args.llm_s) as tmp:
        os.environ.update(AGR_SIMULATED_GPU_S=str(args.gpu_s), AGR_COARSE_TOOLS='["signal_facts", "simulated_gpu"]')
        get_settings.cache_clear()
        clips = distinct_clips(tmp / "clips", args.items + args.reference_items + WARMUP_ITEMS)
        reference = run_reference(clips[: args.reference_items])
        pipeline = run_pipeline(clips[args.reference_items:], args, tmp)
    ceiling_ips = 1.0 / args.gpu_s
    result = {
        "items": args.items, "gpu_s_per_item": args.gpu_s, "llm_s_per_call": args.llm_s,
        "reasoning_concurrency": args.reasoning_concurrency,
        "pipeline": pipeline, "reference_sequential": reference,
        "ceiling": {"items_per_s": ceiling_ips, "seconds": args.items * args.gpu_s},
        "ceiling_fraction": round(pipeline["items_per_s"] / ceiling_ips, 3),
        "speedup_over_reference": round(pipeline["items_per_s"] / reference["items_per_s"], 2),
    }
    report(result)
    write_result("pipelining", result)


def distinct_clips(folder: Path, count: int) -> list[Path]:
    """Clips that differ by a sample, so no item reuses another's cached GPU result."""
    import numpy as np
    import soundfile as sf

    folder.mkdir(parents=True)
    t = np.arange(1600) / 16000
    paths = []
    for i in range(count):
        wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        wave[0] = i / (count + 1)
        paths.append(folder / f"{i}.wav")
        sf.write(str(paths[-1]), wave, 16000)
    return paths


def run_reference(clips: list[Path]) -> dict:
    """One item after another: the same tools and the same two LLM calls, nothing overlapped."""
    from openai import OpenAI

    from workers.perception.audio_io import load_audio
    from workers.perception.tools import TOOLS

    settings = get_settings()
    client = OpenAI(base_url=settings.llm_base_url, api_key="not-needed", max_retries=0)
    started = time.perf_counter()
    for clip_path in clips:
        clip = load_audio(clip_path)
        TOOLS["signal_facts"].run(clip, {})
        TOOLS["simulated_gpu"].run(clip, {})
        for agent in ("planning agent", "answering agent"):
            client.chat.completions.create(model=settings.llm_model, messages=[
                {"role": "system", "content": f"You are the {agent}."},
                {"role": "user", "content": "Choices:\n- A tone\n- A voice\n\n"}])
    elapsed = time.perf_counter() - started
    return {"items_timed": len(clips), "seconds": round(elapsed, 2), "items_per_s": round(len(clips) / elapsed, 3)}


def run_pipeline(clips: list[Path], args, tmp: Path) -> dict:
    from api.batch_input import Item
    from api.batch_view import batch_progress
    from api.submission import submit

    env = dict(os.environ)
    logs = tmp / "logs"
    workers = [
        processes.start_worker("perception-cpu", env, logs / "cpu.log", 1),
        processes.start_worker("perception", env, logs / "gpu.log", 1),
        processes.start_worker("reasoning", env, logs / "reasoning.log", args.reasoning_concurrency),
        processes.start_beat(env, logs / "beat.log", tmp / "beat-schedule"),
    ]

    def batch(name: str, paths: list[Path]):
        items = [Item(f"{name}-{i:04d}", p, "What is heard?", ["A tone", "A voice"], "A tone")
                 for i, p in enumerate(paths)]
        return submit(name, items, {"max_iters": 1})

    def wait(batch_id) -> None:
        deadline = time.monotonic() + 3600
        while not batch_progress(batch_id).batch_done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch did not finish; logs in {logs}")
            time.sleep(0.2)

    try:
        wait(batch("warmup", clips[:WARMUP_ITEMS]))
        measured = clips[WARMUP_ITEMS : WARMUP_ITEMS + args.items]
        started = time.perf_counter()
        batch_id = batch("pipelining", measured)
        wait(batch_id)
        elapsed = time.perf_counter() - started
        progress = batch_progress(batch_id)
    finally:
        processes.stop_all(workers)
    if progress.counts.get("succeeded", 0) != len(measured):
        raise RuntimeError(f"not every item succeeded: {progress.counts}; logs in {logs}")
    busy = gpu_busy_seconds(batch_id)
    return {"seconds": round(elapsed, 2), "items_per_s": round(len(measured) / elapsed, 3),
            "gpu_busy_s": round(busy, 2), "gpu_busy_share": round(busy / elapsed, 3)}


def gpu_busy_seconds(batch_id) -> float:
    """The simulated model's compute time, each padded pass counted once."""
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        return session.scalar(text(
            "SELECT coalesce(sum(latency_ms / batch_size), 0) / 1000 FROM tool_calls t JOIN jobs j ON j.id = t.job_id "
            "WHERE j.batch_id = :b AND t.tool = 'simulated_gpu' AND NOT t.cache_hit"), {"b": batch_id})


def report(result: dict) -> None:
    rows = [("pipeline (ours)", result["pipeline"]["items_per_s"]),
            ("reference sequential loop", result["reference_sequential"]["items_per_s"]),
            ("GPU-bound ceiling", result["ceiling"]["items_per_s"])]
    print(f"{result['items']} items; GPU {result['gpu_s_per_item']} s/item; LLM {result['llm_s_per_call']} s/call")
    for name, ips in rows:
        print(f"  {name:<28}{ips:>8.3f} items/s")
    print(f"  ceiling_fraction {result['ceiling_fraction']}, GPU busy {result['pipeline']['gpu_busy_share']:.0%} "
          f"of the wall time, {result['speedup_over_reference']}x the reference loop")


if __name__ == "__main__":
    main()
