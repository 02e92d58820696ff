"""Scale: 100,000 queued jobs. What it costs to submit them, to sweep them, to poll them,
and to keep them in Postgres.

Runs on private services (bench/harness.py) with the API as its own uvicorn process and
no workers, so the jobs stay queued while they are measured. Figures, each beside a
baseline taken in the same run:

- submission: `POST /v1/batches` of 10 batches of 10,000 items (each its own audio file in
  the tenant's server-side root: parsed, resolved, hashed, committed, each first step due
  and a window of them sent: workers/runtime/outbox.py);
  the last batch's time against the first's shows whether a fuller database slows it;
- the sweeper (`workers.runtime.sweeper.Sweeper.sweep`, what the sweeper process runs every AGR_SWEEP_INTERVAL_S) per pass:
  with nothing to do, against the same pass on an empty database; with 1% of the steps'
  leases lapsed (their workers died); and the recovery pass after the broker lost every
  message (Redis restarted empty), which re-sends the window's (the backlog behind it
  waits in Postgres); each pass also tops the windows up, its fair pick reading the
  100,000 due steps;
- status polls: p50/p99 of `GET /v1/batches/{id}` (10,000 queued jobs, live counts) and
  `GET /v1/jobs/{id}`, as ratios to `GET /healthz`;
- Postgres bytes per queued job (database growth, and per table).

Writes bench/results/scale.json. Run: .venv/bin/python bench/scale.py [--jobs 100000]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import _env, _free_port, _latencies, _wait_for_api, queued_steps  # noqa: E402
from bench.harness import bench_services, tone_clip, write_result  # noqa: E402

SWEEP_PASSES = 20
TABLES = ("batches", "jobs", "steps", "audio_assets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--polls", type=int, default=1000)
    args = parser.parse_args()
    with bench_services("agr-bench-scale-") as tmp:
        from api.keys import create_key
        from local_stack import processes

        root = tmp / "audio"
        root.mkdir()
        key = create_key("bench", audio_root=root, rate_limit_per_minute=10_000_000, max_queued_items=10_000_000)
        api = processes.start_api(_env(), tmp / "api.log", port=_free_port())
        try:
            http = httpx.Client(base_url=_wait_for_api(api), headers={"Authorization": f"Bearer {key}"}, timeout=1200)
            result = measure(http, root, args)
        except Exception:
            print((tmp / "api.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            processes.stop(api)
    report(result)
    write_result("scale", result)


def measure(http: httpx.Client, root: Path, args) -> dict:
    empty_sweep = sweep_passes(SWEEP_PASSES)
    size_before = table_bytes()
    submissions = submit_all(http, root, args.jobs, args.batch_size)
    size_after = table_bytes()
    idle_sweep = sweep_passes(SWEEP_PASSES)
    polls = status_polls(http, submissions["batch_ids"][0], args.polls)
    lapsed = lapsed_lease_pass(args.jobs // 100)
    recovery = broker_lost_pass()
    jobs = args.jobs
    return {
        "jobs": jobs,
        "submission": {k: v for k, v in submissions.items() if k != "batch_ids"},
        "sweeper": {
            "empty_database_pass": empty_sweep,
            "idle_pass": idle_sweep | {"ratio_to_empty_database": round(idle_sweep["p50_ms"] / empty_sweep["p50_ms"], 2)},
            "pass_with_1pct_leases_lapsed": lapsed,
            "pass_after_broker_lost_everything": recovery,
        },
        "status_poll": polls,
        "postgres": {
            "bytes_per_job": round((size_after["database"] - size_before["database"]) / jobs),
            "per_table_bytes_per_job": {t: round((size_after[t] - size_before[t]) / jobs) for t in TABLES},
        },
    }


def submit_all(http: httpx.Client, root: Path, jobs: int, batch_size: int) -> dict:
    from core.broker_redis import broker_redis, queue_depth

    clip = tone_clip(root / "source.wav").read_bytes()
    seconds, batch_ids = [], []
    for number, start in enumerate(range(0, jobs, batch_size)):
        count = min(batch_size, jobs - start)
        lines = []
        for i in range(start, start + count):
            # Each file differs in its last samples, so each is hashed and stored as its own asset.
            (root / f"{i}.wav").write_bytes(clip[:-4] + i.to_bytes(4, "little"))
            lines.append(json.dumps({"custom_id": f"b{number}-{i:06d}", "audio": f"{i}.wav",
                                     "question": "What is heard?", "choices": ["A tone", "A voice"]}))
        started = time.perf_counter()
        response = http.post("/v1/batches", json={"input": "\n".join(lines), "name": f"scale-{number}"})
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        batch_ids.append(response.json()["id"])
        print(f"  batch {number}: {count} items in {seconds[-1]:.1f} s", flush=True)
    waiting = queued_steps()
    assert waiting == jobs, f"{waiting} steps queued for {jobs} jobs"
    return {
        "batches": len(seconds), "batch_size": batch_size, "seconds": round(sum(seconds), 1),
        "items_per_s": round(jobs / sum(seconds)), "first_batch_s": round(seconds[0], 2),
        "last_batch_s": round(seconds[-1], 2), "last_over_first": round(seconds[-1] / seconds[0], 2),
        "steps_queued": waiting, "messages_queued": queue_depth(broker_redis(), "perception-cpu"),
        "batch_ids": batch_ids,
    }


def sweep_passes(passes: int) -> dict:
    from workers.runtime.sweeper import Sweeper

    sweeper = Sweeper()
    samples, resent = [], 0
    for _ in range(passes):
        started = time.perf_counter()
        report = sweeper.sweep()
        samples.append((time.perf_counter() - started) * 1000)
        resent += report.lapsed_leases + report.lost_messages + report.relayed
    samples.sort()
    return {"passes": passes, "p50_ms": round(statistics.median(samples), 2), "max_ms": round(samples[-1], 2),
            "steps_resent": resent}


def lapsed_lease_pass(count: int) -> dict:
    """`count` steps made to look taken by workers that died: running, lease lapsed."""
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        session.execute(text(
            "UPDATE steps SET status = 'running', attempts = 1, lease_expires_at = now() - interval '1 minute' "
            "WHERE id IN (SELECT id FROM steps ORDER BY random() LIMIT :n)"), {"n": count})
    return one_pass() | {"lapsed": count}


def broker_lost_pass() -> dict:
    from core.broker_redis import broker_redis, queue_depth

    broker_redis().flushdb()  # what a Redis restart without persistence leaves
    return one_pass() | {"messages_after": queue_depth(broker_redis(), "perception-cpu")}


def one_pass() -> dict:
    from workers.runtime.sweeper import Sweeper

    sweeper = Sweeper(last_pass_at=time.monotonic())  # one that has been sweeping: no post-gap grace
    started = time.perf_counter()
    report = sweeper.sweep()
    return {"seconds": round(time.perf_counter() - started, 3),
            "steps_resent": report.lapsed_leases + report.lost_messages + report.relayed}


def status_polls(http: httpx.Client, batch_id: str, polls: int) -> dict:
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        job_ids = [str(j) for j in session.execute(
            text("SELECT id FROM jobs ORDER BY random() LIMIT 1000")).scalars()]
    baseline = _latencies(http, lambda i: "/healthz", polls)
    batch = _latencies(http, lambda i: f"/v1/batches/{batch_id}", polls)
    job = _latencies(http, lambda i: f"/v1/jobs/{job_ids[i % len(job_ids)]}", polls)
    ratio = lambda figures: round(figures["p50_ms"] / baseline["p50_ms"], 2)  # noqa: E731
    return {"healthz_baseline": baseline,
            "batch_of_10000_queued": batch | {"p50_ratio_to_baseline": ratio(batch)},
            "job": job | {"p50_ratio_to_baseline": ratio(job)}}


def table_bytes() -> dict:
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        session.execute(text("CHECKPOINT"))
        sizes = {t: session.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar_one() for t in TABLES}
        sizes["database"] = session.execute(text("SELECT pg_database_size(current_database())")).scalar_one()
    return sizes


def report(result: dict) -> None:
    sub = result["submission"]
    print(f"\nsubmission: {result['jobs']} jobs in {sub['batches']} batches, {sub['seconds']} s "
          f"({sub['items_per_s']} items/s); last batch / first: {sub['last_over_first']}")
    sweeper = result["sweeper"]
    print(f"sweeper pass: empty db {sweeper['empty_database_pass']['p50_ms']} ms, "
          f"{result['jobs']} queued {sweeper['idle_pass']['p50_ms']} ms "
          f"(x{sweeper['idle_pass']['ratio_to_empty_database']}); "
          f"1% lapsed: {sweeper['pass_with_1pct_leases_lapsed']}; "
          f"broker lost everything: {sweeper['pass_after_broker_lost_everything']}")
    for name, figures in result["status_poll"].items():
        print(f"poll {name:<24} p50 {figures['p50_ms']} ms  p99 {figures['p99_ms']} ms  "
              f"x{figures.get('p50_ratio_to_baseline', 1.0)}")
    print(f"postgres: {result['postgres']}")


if __name__ == "__main__":
    main()
