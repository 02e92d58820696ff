"""HTTP API at scale: status polls with 100,000 jobs in the database, and validating and
queueing one 10,000-item batch.

Runs on private services (bench/harness.py) with the API as its own uvicorn process and
no workers, so nothing drains the queue while it is measured. Figures:

- status-poll latency (p50/p99, sequential keep-alive requests from one client) for a
  job (`GET /v1/jobs/{id}`) and for batches of 1,000 and 10,000 jobs with live counts
  (`GET /v1/batches/{id}`), each also as a ratio to `GET /healthz` (the same server and
  client, no database) measured in the same run;
- the wall time of `POST /v1/batches` for 10,000 items each with its own audio file in the
  tenant's server-side root (every line parsed, every path resolved, every file hashed and
  its header read, then the batch, jobs and steps committed, their messages due, and the
  perception queue's window of them sent: workers/runtime/outbox.py), beside a 1,000-item batch
  to show how it scales.

Writes bench/results/api.json. Run: .venv/bin/python bench/api.py [--polls N]
"""

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, tone_clip, write_result  # noqa: E402

FILLER_BATCHES = 89  # of 1,000 jobs; with one 10,000-job batch and one of 1,000: 100,000 jobs
STEPS_PER_FINISHED_JOB = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=2000, help="requests per latency figure")
    args = parser.parse_args()
    with bench_services("agr-bench-api-") as tmp:
        from api.keys import create_key
        from local_stack import processes

        root = tmp / "audio"
        root.mkdir()
        key = create_key("bench", audio_root=root, rate_limit_per_minute=10_000_000, max_queued_items=1_000_000)
        started = time.perf_counter()
        big, small, job_ids = _fill_database(tone_clip(root / "filler.wav"))
        fill_s = time.perf_counter() - started
        api = processes.start_api(_env(), tmp / "api.log", port=_free_port())
        try:
            result = _measure(api, tmp, root, key, big, small, job_ids, args.polls)
        except Exception:
            print((tmp / "api.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            processes.stop(api)
        result["database"] |= {"fill_s": round(fill_s, 1)}
    _print(result)
    write_result("api", result)


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k.startswith("AGR_")}


def _free_port() -> int:
    from tests.stack import _free_port as free

    return free()


def _fill_database(clip: Path) -> tuple[str, str, list[str]]:
    """100,000 finished jobs in 91 batches, with their steps, written by Postgres itself."""
    from sqlalchemy import text

    from api.intake.audio_ingest import stage_path, store_staged
    from models.db import session_scope

    with session_scope() as session:
        tenant = session.execute(text("SELECT id FROM tenants WHERE name = 'bench'")).scalar_one()
        staged = stage_path(clip)
        audio_id = store_staged(session, tenant, [staged])[staged.sha256]
        sizes = [10_000, 1_000] + [1_000] * FILLER_BATCHES
        batch_ids = []
        for size in sizes:
            batch_id = str(uuid.uuid4())
            batch_ids.append(batch_id)
            session.execute(text(
                "INSERT INTO batches (id, tenant_id, name, status, options, batch_metadata) "
                "VALUES (:id, :tenant, 'filler', 'completed', '{\"pipeline\": \"agr\"}', '{}')"),
                {"id": batch_id, "tenant": tenant})
            session.execute(text(
                "INSERT INTO jobs (id, batch_id, custom_id, audio_id, question, choices, options, item_metadata, "
                " reference_answer, status, attempts, answer, raw_answer, normalisation) "
                "SELECT gen_random_uuid(), :batch, 'q' || lpad(n::text, 6, '0'), :audio, 'What is heard?', "
                " '[\"A tone\", \"A voice\"]', '{}', '{\"modality\": \"sound\"}', 'A tone', "
                " CASE WHEN n % 50 = 0 THEN 'errored' ELSE 'succeeded' END, 3, 'A tone', 'A tone', 'exact' "
                "FROM generate_series(1, :size) AS n"), {"batch": batch_id, "audio": audio_id, "size": size})
        session.execute(text(
            "INSERT INTO steps (job_id, iteration, kind, status, attempts, finished_at) "
            "SELECT j.id, 0, k.kind, 'done', 1, now() FROM jobs j "
            "CROSS JOIN (VALUES ('perceive_cpu'), ('plan'), ('answer')) AS k(kind)"))
        job_ids = [str(r) for r in session.execute(text("SELECT id FROM jobs ORDER BY random() LIMIT 5000")).scalars()]
    with session_scope() as session:
        session.execute(text("ANALYZE"))
    return batch_ids[0], batch_ids[1], job_ids


def _measure(api, tmp: Path, root: Path, key: str, big: str, small: str, job_ids: list[str], polls: int) -> dict:
    from sqlalchemy import text

    from models.db import session_scope

    url = _wait_for_api(api)
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
    baseline = _latencies(http, lambda i: "/healthz", polls)
    job = _latencies(http, lambda i: f"/v1/jobs/{job_ids[i % len(job_ids)]}", polls)
    batch_1k = _latencies(http, lambda i: f"/v1/batches/{small}", polls)
    batch_10k = _latencies(http, lambda i: f"/v1/batches/{big}", polls)
    with session_scope() as session:
        jobs = session.execute(text("SELECT count(*) FROM jobs")).scalar_one()
        steps = session.execute(text("SELECT count(*) FROM steps")).scalar_one()
    _submit(http, root, 10, "warmup")  # the first batch imports the worker code the enqueue needs
    submit_1k = _submit(http, root, 1_000, "s1k")
    submit_10k = _submit(http, root, 10_000, "s10k")
    base_p50 = baseline["p50_ms"]
    return {
        "database": {"jobs": jobs, "steps": steps},
        "status_poll": {
            "healthz_baseline": baseline,
            "job": job | {"p50_ratio_to_baseline": round(job["p50_ms"] / base_p50, 2)},
            "batch_1000_jobs": batch_1k | {"p50_ratio_to_baseline": round(batch_1k["p50_ms"] / base_p50, 2)},
            "batch_10000_jobs": batch_10k | {"p50_ratio_to_baseline": round(batch_10k["p50_ms"] / base_p50, 2)},
        },
        "submit": {"items_1000": submit_1k, "items_10000": submit_10k,
                   "per_item_ratio_10000_vs_1000": round(submit_10k["ms_per_item"] / submit_1k["ms_per_item"], 2)},
    }


def _wait_for_api(api) -> str:
    port = api.args[api.args.index("--port") + 1]
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the API did not start")


def _latencies(http: httpx.Client, path_of, count: int) -> dict:
    for i in range(20):  # warm the connection and the server's caches
        http.get(path_of(i)).raise_for_status()
    samples = []
    for i in range(count):
        started = time.perf_counter()
        http.get(path_of(i)).raise_for_status()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"requests": count, "p50_ms": round(statistics.median(samples), 2),
            "p99_ms": round(samples[int(0.99 * (count - 1))], 2), "max_ms": round(samples[-1], 2)}


def queued_steps() -> int:
    """Steps waiting for a worker: in the broker's window or due in Postgres behind it."""
    from sqlalchemy import func, select

    from models import Step, StepStatus
    from models.db import session_scope

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Step).where(Step.status == StepStatus.QUEUED))


def _submit(http: httpx.Client, root: Path, count: int, prefix: str) -> dict:
    """`count` items, each with its own small audio file under the root, queued in one request."""
    folder = root / prefix
    folder.mkdir()
    clip = tone_clip(folder / "source.wav").read_bytes()
    lines = []
    for i in range(count):
        # Each file differs by one byte, so each is hashed and stored as its own asset.
        (folder / f"{i}.wav").write_bytes(clip[:-2] + i.to_bytes(4, "little")[:2])
        lines.append(json.dumps({"custom_id": f"{prefix}-{i:05d}", "audio": f"{prefix}/{i}.wav",
                                 "question": "What is heard?", "choices": ["A tone", "A voice"], "answer": "A tone"}))
    before = queued_steps()
    started = time.perf_counter()
    response = http.post("/v1/batches", json={"input": "\n".join(lines), "name": prefix})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    queued = queued_steps() - before
    assert response.json()["request_counts"]["total"] == count and queued == count, (response.text[:500], queued)
    return {"items": count, "seconds": round(elapsed, 2), "ms_per_item": round(1000 * elapsed / count, 3),
            "items_per_s": round(count / elapsed), "steps_queued": queued}


def _print(result: dict) -> None:
    print(f"database: {result['database']}")
    print(f"{'status poll':<22}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'p50/healthz':>13}")
    for name, figures in result["status_poll"].items():
        ratio = figures.get("p50_ratio_to_baseline", 1.0)
        print(f"{name:<22}{figures['p50_ms']:>10}{figures['p99_ms']:>10}{figures['max_ms']:>10}{ratio:>13}")
    for name, figures in result["submit"].items():
        print(f"submit {name}: {figures}")


if __name__ == "__main__":
    main()
