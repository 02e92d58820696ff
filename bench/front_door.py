"""The OpenAI front door under a harness's load: N questions sent as chat completions by
C clients at once (the openai SDK, as lmms-eval or VoiceBench would), beside the same N
questions as one OpenAI Batch API file, with a production-paced reasoner (each LLM call
takes --llm-latency seconds), on the real stack (the API, a worker per queue, the
sweeper; private services: bench/harness.py).

Figures:
- wall time of each way, and their ratio (chat / batch: what holding N calls open costs
  against handing the service one file);
- per chat call, its latency minus its job's own run time (created to finished): the
  front door's overhead, p50 and p99, and as a share of the job's time;
- the same N requests sent again at once, as a harness retrying after timeouts: the jobs
  made (must be 0) and the wall time of the retries.

Writes bench/results/front_door.json. Run: .venv/bin/python bench/front_door.py
[--items N] [--concurrency C] [--llm-latency S]

`--held N` measures instead what holding calls open costs the API (a harness holds
128-300 at once): the API alone on private services (no worker, so every job stays
queued and every call stays held), idle, then with N distinct chat calls held open, then
after their clients left. Figures, each against the idle API in the same run: the API's
CPU share of one core, /healthz p50/p99 (sequential calls), resident memory per held call,
and what is still held once the clients are gone; `--held-crowds K` (default 2) sends K
such crowds one after another and prints what is kept after each, so memory kept per call
(growing crowd by crowd) shows apart from the heap's one-time high-water mark (level).
Writes bench/results/front_door-held.json.
Targets: under 0.10 of a core, p99 at most 2x idle, at most 50 KB per call, all returned.
"""

import argparse
import base64
import json
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, write_result  # noqa: E402

CHOICES = ("A tone", "A voice", "Silence")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32, help="chat calls in flight at once")
    parser.add_argument("--llm-latency", type=float, default=3.0, help="seconds per reasoner call")
    parser.add_argument("--held", type=int, default=None, help="measure N chat calls held open instead")
    parser.add_argument("--held-crowds", type=int, default=2,
                        help="with --held: crowds of N sent one after another (what is kept after each)")
    args = parser.parse_args()
    if args.held is not None:
        from bench.held_calls import measure_held_calls

        with bench_services("agr-bench-held-calls-") as tmp:
            result = measure_held_calls(tmp, args.held, args.held_crowds)
        print(json.dumps(result, indent=2))
        write_result("front_door-held", result)
        return
    with bench_services("agr-bench-front-door-", llm_latency_s=args.llm_latency) as tmp:
        result = _run(tmp, args.items, args.concurrency)
    result |= {"items": args.items, "concurrency": args.concurrency, "llm_latency_s": args.llm_latency}
    print(json.dumps(result, indent=2))
    write_result("front_door", result)


def _run(tmp: Path, items: int, concurrency: int) -> dict:
    import os

    import openai

    from api.keys import create_key
    from local_stack import processes

    key = create_key("bench", rate_limit_per_minute=10_000_000, max_queued_items=1_000_000)
    env, port = dict(os.environ), _free_port()
    started = [processes.start_worker(q, env, tmp / f"{q}.log") for q in ("perception-cpu", "perception", "reasoning")]
    started += [processes.start_sweeper(env, tmp / "sweeper.log"), processes.start_api(env, tmp / "api.log", port)]
    try:
        assert processes.wait_until_serving(f"http://127.0.0.1:{port}/healthz", started[-1], 120), "API down"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0, timeout=3600)
        _warm_up(client, tmp)
        chat = _chat_phase(client, [_request(tmp, f"chat-{i}") for i in range(items)], concurrency)
        batch = _batch_phase(client, [_request(tmp, f"batch-{i}") for i in range(items)])
    finally:
        processes.stop_all(started)
    return {**chat, **batch, "chat_over_batch_wall": round(chat["chat_wall_s"] / batch["batch_wall_s"], 3)}


def _request(tmp: Path, name: str, seconds: float = 1.0) -> dict:
    from tests.stack import tone_wav

    audio = base64.b64encode(tone_wav(tmp / f"{name}.wav", seconds=seconds).read_bytes()).decode()
    text = f"What is heard in {name}?\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(CHOICES))
    return {"model": "agr", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}, {"type": "text", "text": text}]}]}


def _warm_up(client, tmp: Path) -> None:
    """One call first, so worker imports and model loads are not in the figures."""
    client.chat.completions.create(**_request(tmp, "warm-up"))


def _chat_phase(client, requests: list[dict], concurrency: int) -> dict:
    def call(body: dict) -> tuple[float, str]:
        began = time.monotonic()
        reply = client.chat.completions.create(**body)
        return time.monotonic() - began, reply.agr["job_id"]

    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        calls = list(pool.map(call, requests))
    wall = time.monotonic() - began
    runs = _job_run_times([job_id for _, job_id in calls])
    overheads = sorted(latency - runs[job_id] for latency, job_id in calls)
    jobs_before = _job_count()
    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:  # a harness retrying every call
        retried = list(pool.map(call, requests))
    return {
        "chat_wall_s": round(wall, 2),
        "chat_overhead_p50_s": round(statistics.median(overheads), 3),
        "chat_overhead_p99_s": round(overheads[min(len(overheads) - 1, int(len(overheads) * 0.99))], 3),
        "chat_overhead_share_of_job_p50": round(statistics.median(
            (latency - runs[j]) / runs[j] for latency, j in calls), 4),
        "retries_jobs_made": _job_count() - jobs_before,
        "retries_same_jobs": sum(a[1] == b[1] for a, b in zip(calls, retried)),
        "retries_wall_s": round(time.monotonic() - began, 2),
    }


def _batch_phase(client, requests: list[dict]) -> dict:
    lines = "".join(json.dumps({"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
                    + "\n" for i, body in enumerate(requests))
    began = time.monotonic()
    uploaded = client.files.create(file=("requests.jsonl", lines.encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    while (batch := client.batches.retrieve(batch.id)).status not in ("completed", "failed", "cancelled", "expired"):
        time.sleep(0.2)
    output = client.files.content(batch.output_file_id).text.splitlines()
    return {"batch_wall_s": round(time.monotonic() - began, 2), "batch_status": batch.status,
            "batch_lines_out": len(output)}


def _job_run_times(job_ids: list[str]) -> dict:
    from sqlalchemy import select

    from models import Job
    from models.db import session_scope

    with session_scope() as session:
        rows = session.execute(select(Job.id, Job.created_at, Job.finished_at).where(Job.id.in_(job_ids))).all()
    return {str(i): (finished - created).total_seconds() for i, created, finished in rows}


def _job_count() -> int:
    from sqlalchemy import func, select

    from models import Job
    from models.db import session_scope

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Job))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    main()
