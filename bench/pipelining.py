"""Pipelining: does a bulk batch keep the GPU busy?

One perception worker of concurrency 1 holds a simulated GPU model with a fixed compute
time per item (AGR_SIMULATED_GPU_S, no gain from batching), the LLM server answers every
call after a fixed latency, and a 200-item batch runs through the whole stack (coarse
document = signal facts + the simulated model; planner finds it sufficient; answerer).
Beside it, in the same run and with the same costs:

- the reference implementation's sequential per-item loop (perceive, plan, answer, one
  item after another), timed on `--reference-items` items;
- the GPU-bound ceiling: one item's GPU seconds times the items, plus what no pipeline can
  overlap, the last item's two LLM calls after its GPU step (at 100 items and 8 s per call
  that tail alone is 40% of the GPU time: leaving it out would cap the fraction at 0.61).

Prints a table and writes bench/results/pipelining.json with `ceiling_fraction` (ceiling
seconds over the batch's seconds; the target is >= 0.90), the same without the tail
(`throughput_fraction`: items/s over 1/GPU-seconds), the GPU worker's busy share over the
whole batch and over the span from its first to its last model call, and the
LLM calls the one reasoning worker kept in flight (peak, and mean over the batch).
The reasoning worker runs at the deployment's default concurrency (AGR_REASONING_CONCURRENCY,
as docker-compose.yml and `agr run` use it) unless --reasoning-concurrency says otherwise.

`--profile realistic` runs the production-shaped pair instead, 0.25 GPU-seconds per item
with an LLM of 3 s and of 8 s per call, and writes bench/results/pipelining-realistic.json.

`--profile engine` puts the audio-language models behind a serving engine instead: two ALMs
(AGR_ALMS) as endpoints of a simulated continuous-batching engine (bench/simulated_engine.py:
--engine-capacity requests decoded together, each --engine-latency-s seconds), asked over
HTTP by the real client; the crosscheck pipeline (each model captions the clip and its
thirds and answers: 10 model calls an item); one GPU perception worker process at its
defaults (a thread pool, as every model is an engine). Writes bench/results/pipelining-engine.json
with `ceiling_fraction`: the engine-bound ceiling (the batch's requests at capacity/latency
requests per second) over the batch's seconds (target >= 0.90), and the requests in flight.
Run: .venv/bin/python bench/pipelining.py [--items 200] [--gpu-s 0.25] [--llm-s 0.5]
     .venv/bin/python bench/pipelining.py --profile realistic [--items 100]
     .venv/bin/python bench/pipelining.py --profile engine [--items 200] [--engine-capacity 64] [--engine-latency-s 2]
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, write_result  # noqa: E402
from core.settings import get_settings  # noqa: E402
from local_stack import processes  # noqa: E402
from models.db import reset_after_fork  # noqa: E402

WARMUP_ITEMS = 8
LLM_CALLS_AFTER_GPU = 2  # planner and answerer: the coarse document is sufficient at once
REALISTIC_LLM_S = (3.0, 8.0)  # a hosted model's reply to a ~1k-token prompt; a slow reasoning model's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=None, help="measured items (default 200; 100 per run of a profile)")
    parser.add_argument("--gpu-s", type=float, default=0.25, help="simulated GPU seconds per item")
    parser.add_argument("--llm-s", type=float, default=0.5, help="LLM latency per call")
    parser.add_argument("--reasoning-concurrency", type=int, default=None,
                        help="threads of the one reasoning worker (default: AGR_REASONING_CONCURRENCY, the deployment's)")
    parser.add_argument("--reference-items", type=int, default=None,
                        help="items timed through the sequential loop (default 20; 3 per run of a profile)")
    parser.add_argument("--profile", choices=["realistic", "engine"], default=None,
                        help="realistic: --gpu-s 0.25 with --llm-s 3, then 8; engine: ALMs behind a simulated engine")
    parser.add_argument("--engine-capacity", type=int, default=64, help="engine profile: requests decoded together")
    parser.add_argument("--engine-latency-s", type=float, default=2.0, help="engine profile: seconds per request")
    parser.add_argument("--result", default="pipelining", help="name of the file written under bench/results/")
    args = parser.parse_args()
    if args.reasoning_concurrency is None:
        args.reasoning_concurrency = get_settings().reasoning_concurrency
    if args.profile == "engine":
        write_result("pipelining-engine", measure_engine(args.items or 200, args.engine_capacity,
                                                         args.engine_latency_s, args.llm_s, args.reasoning_concurrency))
    elif args.profile == "realistic":
        runs = [run_alone(args.items or 100, llm_s, args.reasoning_concurrency, args.reference_items or 3)
                for llm_s in REALISTIC_LLM_S]
        write_result("pipelining-realistic", {"profile": "realistic", "runs": runs})
    else:
        write_result(args.result, measure(args.items or 200, args.gpu_s, args.llm_s, args.reasoning_concurrency,
                                          args.reference_items or 20))


def run_alone(items: int, llm_s: float, reasoning_concurrency: int, reference_items: int) -> dict:
    """One run of the profile in a process of its own (its services, its Celery app)."""
    import json
    import subprocess

    name = f"pipelining-realistic-llm{llm_s:g}s"
    subprocess.run([sys.executable, __file__, "--items", str(items), "--gpu-s", "0.25", "--llm-s", str(llm_s),
                    "--reasoning-concurrency", str(reasoning_concurrency), "--reference-items", str(reference_items),
                    "--result", name], check=True)
    path = ROOT / "bench" / "results" / f"{name}.json"
    result = json.loads(path.read_text())
    path.unlink()  # kept inside pipelining-realistic.json
    return result


def measure(items: int, gpu_s: float, llm_s: float, reasoning_concurrency: int, reference_items: int) -> dict:
    from tests.scripted_llm import ScriptedLLM

    llm = ScriptedLLM()
    with bench_services("agr-bench-pipelining-", llm_latency_s=llm_s, llm=llm) as tmp:
        os.environ.update(AGR_SIMULATED_GPU_S=str(gpu_s), AGR_COARSE_TOOLS='["signal_facts", "simulated_gpu"]')
        get_settings.cache_clear()
        reset_after_fork()  # this process's engine must follow this run's database, not the last run's
        clips = distinct_clips(tmp / "clips", items + reference_items + WARMUP_ITEMS)
        reference = run_reference(clips[:reference_items])
        pipeline = run_pipeline(clips[reference_items:], items, reasoning_concurrency, tmp, llm)
    ceiling_ips = 1.0 / gpu_s
    ceiling_s = items * gpu_s + LLM_CALLS_AFTER_GPU * llm_s
    result = {
        "items": items, "gpu_s_per_item": gpu_s, "llm_s_per_call": llm_s,
        "reasoning_concurrency": reasoning_concurrency, "reasoning_processes": 1,
        "pipeline": pipeline, "reference_sequential": reference,
        "ceiling": {"items_per_s": ceiling_ips, "seconds": ceiling_s},
        "ceiling_fraction": round(ceiling_s / pipeline["seconds"], 3),
        "throughput_fraction": round(pipeline["items_per_s"] / ceiling_ips, 3),
        "speedup_over_reference": round(pipeline["items_per_s"] / reference["items_per_s"], 2),
    }
    report(result)
    return result


def measure_engine(items: int, capacity: int, latency_s: float, llm_s: float, reasoning_concurrency: int) -> dict:
    from bench.simulated_engine import SimulatedEngine
    from tests.scripted_llm import ScriptedLLM

    engine, llm = SimulatedEngine(capacity, latency_s, ["sim-a", "sim-b"]), ScriptedLLM()
    try:
        with bench_services("agr-bench-engine-", llm_latency_s=llm_s, llm=llm) as tmp:
            os.environ.update(AGR_ALMS=f"{engine.spec('sim-a')},{engine.spec('sim-b')}",
                              AGR_COARSE_TOOLS='["signal_facts"]')
            get_settings.cache_clear()
            reset_after_fork()
            clips = distinct_clips(tmp / "clips", items + WARMUP_ITEMS)
            options = {"max_iters": 1, "pipeline": "crosscheck", "mechanisms": {"round0_evidence": False}}
            pipeline = run_pipeline(clips, items, reasoning_concurrency, tmp, llm, gpu_concurrency=None,
                                    options=options, engine=engine)
    finally:
        engine.close()
    requests = pipeline.pop("engine_requests")
    ceiling_s = requests * latency_s / capacity
    result = {
        "items": items, "engine_capacity": capacity, "engine_latency_s": latency_s, "llm_s_per_call": llm_s,
        "engine_requests": requests, "requests_per_item": round(requests / items, 2),
        "gpu_worker": {"processes": 1, "threads": get_settings().engine_worker_concurrency},
        "pipeline": pipeline,
        "ceiling": {"requests_per_s": capacity / latency_s, "seconds": round(ceiling_s, 2)},
        "ceiling_fraction": round(ceiling_s / pipeline["seconds"], 3),
    }
    report_engine(result)
    return result


def report_engine(result: dict) -> None:
    pipeline, flight = result["pipeline"], result["pipeline"]["engine_in_flight"]
    print(f"{result['items']} items, crosscheck, {result['requests_per_item']} model calls each; engine of "
          f"{result['engine_capacity']} at {result['engine_latency_s']} s a request; one GPU worker of "
          f"{result['gpu_worker']['threads']} threads")
    print(f"  {pipeline['seconds']} s against the engine-bound ceiling's {result['ceiling']['seconds']} s: "
          f"ceiling_fraction {result['ceiling_fraction']}")
    print(f"  requests in flight: peak {flight['peak']}, mean {flight['mean']} over the batch, "
          f"{flight['mean_while_running']} from its first to its last request")


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

    from workers.method.perception.audio_io import load_audio
    from workers.method.perception.tools import TOOLS

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


def run_pipeline(clips: list[Path], items: int, reasoning_concurrency: int, tmp: Path, llm,
                 gpu_concurrency: int | None = 1, options: dict | None = None, engine=None) -> dict:
    """The batch through the stack (`gpu_concurrency` None: the GPU worker's default)."""
    from api.batch_view import batch_progress
    from api.intake.batch_input import Item
    from api.intake.submission import submit

    env = dict(os.environ)
    logs = tmp / "logs"
    workers = [
        processes.start_worker("perception-cpu", env, logs / "cpu.log", 1),
        processes.start_worker("perception", env, logs / "gpu.log", gpu_concurrency),
        processes.start_worker("reasoning", env, logs / "reasoning.log", reasoning_concurrency),
        processes.start_sweeper(env, logs / "sweeper.log"),
    ]

    def batch(name: str, paths: list[Path]):
        items = [Item(f"{name}-{i:04d}", p, "What is heard?", ["A tone", "A voice"], "A tone")
                 for i, p in enumerate(paths)]
        return submit(name, items, options or {"max_iters": 1})

    def wait(batch_id) -> None:
        deadline = time.monotonic() + 3600
        while not batch_progress(batch_id).batch_done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch did not finish; logs in {logs}")
            time.sleep(0.2)

    try:
        wait(batch("warmup", clips[:WARMUP_ITEMS]))
        measured = clips[WARMUP_ITEMS : WARMUP_ITEMS + items]
        llm.peak_in_flight = 0
        asked_before = engine.answered if engine else 0
        if engine:
            engine.peak_in_flight = 0
        started, since = time.perf_counter(), time.monotonic()
        batch_id = batch("pipelining", measured)
        wait(batch_id)
        elapsed, until = time.perf_counter() - started, time.monotonic()
        progress = batch_progress(batch_id)
        in_flight = {"peak": llm.peak_in_flight, "mean": round(llm.in_flight_seconds(since) / elapsed, 1)}
    finally:
        processes.stop_all(workers)
    if progress.counts.get("succeeded", 0) != len(measured):
        raise RuntimeError(f"not every item succeeded: {progress.counts}; logs in {logs}")
    if engine:
        first, last = engine.busy_span(since, until)
        return {"seconds": round(elapsed, 2), "items_per_s": round(len(measured) / elapsed, 3),
                "engine_requests": engine.answered - asked_before,
                "engine_in_flight": {"peak": engine.peak_in_flight,
                                     "mean": round(engine.mean_in_flight(since, until), 1),
                                     "mean_while_running": round(engine.mean_in_flight(first, last), 1)},
                "llm_calls_in_flight": in_flight}
    busy, span = gpu_busy_seconds(batch_id)
    return {"seconds": round(elapsed, 2), "items_per_s": round(len(measured) / elapsed, 3),
            "gpu_busy_s": round(busy, 2), "gpu_busy_share": round(busy / elapsed, 3),
            "gpu_busy_share_while_running": round(busy / span, 3),
            "llm_calls_in_flight": in_flight}


def gpu_busy_seconds(batch_id) -> tuple[float, float]:
    """The simulated model's compute time, each padded pass counted once, and the span from
    the start of its first pass to the end of its last."""
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        busy, span = session.execute(text(
            "SELECT coalesce(sum(latency_ms / batch_size), 0) / 1000, "
            "extract(epoch FROM max(t.created_at) - min(t.created_at - make_interval(secs => latency_ms / 1000))) "
            "FROM tool_calls t JOIN jobs j ON j.id = t.job_id "
            "WHERE j.batch_id = :b AND t.tool = 'simulated_gpu' AND NOT t.cache_hit"), {"b": batch_id}).one()
    return float(busy), float(span)


def report(result: dict) -> None:
    rows = [("pipeline (ours)", result["pipeline"]["items_per_s"]),
            ("reference sequential loop", result["reference_sequential"]["items_per_s"]),
            ("GPU-bound ceiling", result["ceiling"]["items_per_s"])]
    print(f"{result['items']} items; GPU {result['gpu_s_per_item']} s/item; LLM {result['llm_s_per_call']} s/call")
    for name, ips in rows:
        print(f"  {name:<28}{ips:>8.3f} items/s")
    in_flight = result["pipeline"]["llm_calls_in_flight"]
    print(f"  ceiling_fraction {result['ceiling_fraction']} (throughput alone {result['throughput_fraction']}), "
          f"GPU busy {result['pipeline']['gpu_busy_share']:.0%} of the wall time and "
          f"{result['pipeline']['gpu_busy_share_while_running']:.0%} from its first to its last call, "
          f"{result['speedup_over_reference']}x the reference loop")
    print(f"  one reasoning worker of {result['reasoning_concurrency']} threads: LLM calls in flight "
          f"peak {in_flight['peak']}, mean {in_flight['mean']}")


if __name__ == "__main__":
    main()
