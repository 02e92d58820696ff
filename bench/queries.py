"""The API's read paths with 100,000 jobs in the database (issue 16): latency that stays
near an empty request's, and SQL statements that stay constant with size.

Runs on private services (bench/harness.py), rows written by SQL (no pipeline, no
workers): 100,000 finished jobs in one tenant's 101 batches (one of 10,000, a hundred of
900), then VACUUM ANALYZE, as autovacuum leaves a table at rest. Figures:

- latency, from the API as its own uvicorn process, sequential keep-alive requests from one
  client: `GET /healthz` (no database) and the status poll `GET /v1/batches/{id}` of the
  10,000-job batch and of a 900-job one, taken in turn (so a busy machine slows each alike), `GET /v1/batches?limit=100`, and `/score` of the
  10,000-job batch; each poll's p99 as a ratio to /healthz's p99 in the same run (the
  status poll's must be at most 5);
- SQL statements each request sends (a `before_cursor_execute` listener on the engine of an
  in-process app, the key's lookup included), each at two sizes: the listing of a
  tenant's 10 and 100 batches, and /score, /output, /errors and the status of a batch of
  1,000 and of 10,000 jobs. Constant means the same number at both sizes; the output and
  error files are the exception by design: one short statement per 1,000 lines sent (980
  and 9,800 lines here), so a slow download holds no pooled connection between chunks.

Writes bench/results/queries.json. Run: .venv/bin/python bench/queries.py [--polls N]
"""

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import _env, _free_port, _latencies, _wait_for_api  # noqa: E402
from bench.harness import bench_services, write_result  # noqa: E402

BIG, SMALL, SMALL_BATCHES = 10_000, 900, 100  # 10,000 + 100 x 900 = 100,000 jobs
STATUS_P99_RATIO_ALLOWED = 5.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--polls", type=int, default=2000, help="requests per latency figure")
    args = parser.parse_args()
    with bench_services("agr-bench-queries-") as tmp:
        from api.keys import create_key
        from local_stack import processes

        key = create_key("bench", rate_limit_per_minute=10_000_000)
        started = time.perf_counter()
        audio = _audio_asset()
        big, small = _fill(key_tenant="bench", sizes=[BIG] + [SMALL] * SMALL_BATCHES, audio=audio)
        _vacuum()
        fill_s = time.perf_counter() - started
        database = _sizes() | {"fill_s": round(fill_s, 1)}
        api = processes.start_api(_env(), tmp / "api.log", port=_free_port())
        try:
            latency = _measure(_wait_for_api(api), key, big, small, args.polls)
        except Exception:
            print((tmp / "api.log").read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            processes.stop(api)
        statements = _statement_counts(audio)  # after: its tenants' 12,100 jobs are not in the latency figures
        result = {"database": database, "latency": latency, "sql_statements": statements}
    _print(result)
    write_result("queries", result)


def _audio_asset() -> int:
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        return session.execute(text(
            "INSERT INTO audio_assets (sha256, bytes, format) VALUES (:sha, 1, 'wav') RETURNING id"),
            {"sha": uuid.uuid4().hex * 2}).scalar_one()


def _fill(key_tenant: str, sizes: list[int], audio: int) -> list[str]:
    """Finished batches of the tenant, with `sizes` jobs each (one in 50 errored), oldest
    first; returns the ids of the first and the last."""
    from sqlalchemy import text

    from models.db import session_scope

    ids = []
    with session_scope() as session:
        tenant = session.execute(text("SELECT id FROM tenants WHERE name = :n"), {"n": key_tenant}).scalar_one()
        for i, size in enumerate(sizes):
            batch_id = str(uuid.uuid4())
            ids.append(batch_id)
            session.execute(text(
                "INSERT INTO batches (id, tenant_id, name, status, options, batch_metadata, created_at) "
                "VALUES (:id, :tenant, 'filler', 'completed', '{\"pipeline\": \"agr\"}', '{}', "
                " now() - make_interval(secs => :age))"), {"id": batch_id, "tenant": tenant, "age": len(sizes) - i})
            session.execute(text(
                "INSERT INTO jobs (id, batch_id, custom_id, audio_id, question, choices, options, item_metadata, "
                " reference_answer, status, attempts, answer, raw_answer, normalisation, error) "
                "SELECT gen_random_uuid(), :batch, 'q' || lpad(n::text, 6, '0'), :audio, 'What is heard?', "
                " '[\"A tone\", \"A voice\"]', '{}', '{\"modality\": \"sound\", \"category\": \"tones\"}', "
                " 'A tone', CASE WHEN n % 50 = 0 THEN 'errored' ELSE 'succeeded' END, 3, "
                " CASE WHEN n % 50 = 0 THEN NULL ELSE 'A tone' END, 'A tone', 'exact', "
                " CASE WHEN n % 50 = 0 THEN 'timed out' END "
                "FROM generate_series(1, :size) AS n"), {"batch": batch_id, "audio": audio, "size": size})
    return [ids[0], ids[-1]]


def _vacuum() -> None:
    from sqlalchemy import text

    from models.db import get_engine

    with get_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))
        conn.execute(text("VACUUM ANALYZE batches"))


def _sizes() -> dict:
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        return {"jobs": session.execute(text("SELECT count(*) FROM jobs")).scalar_one(),
                "batches": session.execute(text("SELECT count(*) FROM batches")).scalar_one()}


def _statement_counts(audio: int) -> dict:
    """Statements per request, each at two sizes, from an in-process app on the same database."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from api.app import create_app
    from api.keys import create_key
    from models.db import get_engine

    tenants = {}
    for name, sizes in {"few": [10] * 10, "many": [10] * 100, "1k": [1_000], "10k": [10_000]}.items():
        key = create_key(f"count-{name}", rate_limit_per_minute=10_000_000)
        tenants[name] = ({"Authorization": f"Bearer {key}"}, _fill(f"count-{name}", sizes, audio)[0])
    _vacuum()
    statements = []

    def note(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    def count(client, path, tenant) -> int:
        headers = tenants[tenant][0]
        client.get(path, headers=headers).raise_for_status()  # warm
        statements.clear()
        event.listen(get_engine(), "before_cursor_execute", note)
        try:
            client.get(path, headers=headers).raise_for_status()
        finally:
            event.remove(get_engine(), "before_cursor_execute", note)
        return len(statements)

    figures = {}
    with TestClient(create_app()) as client:
        figures["GET /v1/batches?limit=100"] = {
            "10_batches": count(client, "/v1/batches?limit=100", "few"),
            "100_batches": count(client, "/v1/batches?limit=100", "many")}
        for suffix in ("", "/score", "/output", "/errors"):
            figures[f"GET /v1/batches/{{id}}{suffix}"] = {
                f"{size}_jobs": count(client, f"/v1/batches/{tenants[tenant][1]}{suffix}", tenant)
                for size, tenant in ((1_000, "1k"), (10_000, "10k"))}
    for name, at_sizes in figures.items():
        at_sizes["constant"] = len(set(at_sizes.values())) == 1
    return figures


def _measure(url: str, key: str, big: str, small: str, polls: int) -> dict:
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600)
    # /healthz and the two status polls in turn, request by request: whatever else the
    # machine is doing meanwhile slows all three alike, so their p99s compare.
    baseline, status_big, status_small = _interleaved(
        http, ["/healthz", f"/v1/batches/{big}", f"/v1/batches/{small}"], polls)
    figures = {
        "healthz_baseline": baseline,
        "status_10000_jobs": status_big,
        "status_900_jobs": status_small,
        "list_100_batches": _latencies(http, lambda i: "/v1/batches?limit=100", max(50, polls // 10)),
        "score_10000_jobs": _latencies(http, lambda i: f"/v1/batches/{big}/score", max(20, polls // 50)),
        "output_10000_jobs": _latencies(http, lambda i: f"/v1/batches/{big}/output", max(20, polls // 50)),
    }
    for name, measured in figures.items():
        if name != "healthz_baseline":
            measured["p99_ratio_to_healthz_p99"] = round(measured["p99_ms"] / baseline["p99_ms"], 2)
    status_ratio = figures["status_10000_jobs"]["p99_ratio_to_healthz_p99"]
    figures["status_p99_within_allowed_ratio"] = status_ratio <= STATUS_P99_RATIO_ALLOWED
    return figures


def _interleaved(http: httpx.Client, paths: list[str], count: int) -> list[dict]:
    """`count` requests to each path, taken in turn; bench/api.py's figures for each."""
    for _ in range(20):  # warm the connection and the server's caches
        for path in paths:
            http.get(path).raise_for_status()
    samples = [[] for _ in paths]
    for _ in range(count):
        for path, taken in zip(paths, samples):
            started = time.perf_counter()
            http.get(path).raise_for_status()
            taken.append((time.perf_counter() - started) * 1000)
    figures = []
    for taken in samples:
        taken.sort()
        figures.append({"requests": count, "p50_ms": round(statistics.median(taken), 2),
                        "p99_ms": round(taken[int(0.99 * (count - 1))], 2), "max_ms": round(taken[-1], 2)})
    return figures


def _print(result: dict) -> None:
    print(f"database: {result['database']}")
    print(f"{'latency':<22}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'p99/healthz p99':>17}")
    for name, figures in result["latency"].items():
        if isinstance(figures, dict):
            ratio = figures.get("p99_ratio_to_healthz_p99", 1.0)
            print(f"{name:<22}{figures['requests']:>9}{figures['p50_ms']:>9}{figures['p99_ms']:>9}"
                  f"{figures['max_ms']:>9}{ratio:>17}")
    print(f"status poll p99 within {STATUS_P99_RATIO_ALLOWED}x /healthz p99: "
          f"{result['latency']['status_p99_within_allowed_ratio']}")
    print("SQL statements per request (the key's lookup included):")
    for name, at_sizes in result["sql_statements"].items():
        sizes = ", ".join(f"{k}: {v}" for k, v in at_sizes.items() if k != "constant")
        print(f"  {name:<30} {sizes}  constant: {at_sizes['constant']}")


if __name__ == "__main__":
    main()
