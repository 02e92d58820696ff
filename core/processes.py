"""Starting the stack's worker processes: one Celery worker per queue, and the sweeper.

Used by `agr run`, the benches and the tests, so all exercise the same real processes.

A reasoning worker is one process with a pool of threads (AGR_REASONING_CONCURRENCY):
its steps spend their time waiting on the LLM server, so tens of them share one process
and one database pool. Perception workers are prefork processes (a model is loaded after
the fork, and prefork keeps Celery's time limits), of concurrency 1 by default.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


CELERY_APP = "workers.celery_app"


def celery_command(*args: str, app: str = CELERY_APP) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app, *args]


def start_worker(queue: str, env: dict, log_path: Path, concurrency: int | None = None,
                 name: str | None = None, app: str = CELERY_APP, pool: str | None = None) -> subprocess.Popen:
    """A worker on `queue`; the reasoning queue's gets the thread pool and the configured
    concurrency unless told otherwise."""
    threaded = queue == "reasoning"
    pool = pool or ("threads" if threaded else "prefork")
    if concurrency is None:
        concurrency = reasoning_concurrency(env) if threaded else 1
    args = ["worker", "-Q", queue, "--pool", pool, "--concurrency", str(concurrency), "--prefetch-multiplier", "1",
            "-n", f"{name or queue}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    return _spawn(celery_command(*args, app=app), env, log_path)


def reasoning_concurrency(env: dict) -> int:
    """AGR_REASONING_CONCURRENCY as the started worker will see it (`env` over ours)."""
    from core.settings import get_settings

    configured = env.get("AGR_REASONING_CONCURRENCY")
    return int(configured) if configured else get_settings().reasoning_concurrency


def start_sweeper(env: dict, log_path: Path) -> subprocess.Popen:
    """The sweeper's loop (workers/sweeper_loop.py); several may run, one sweeps."""
    return _spawn([sys.executable, "-m", "workers.sweeper_loop"], env, log_path)


def start_api(env: dict, log_path: Path, port: int, host: str = "127.0.0.1") -> subprocess.Popen:
    args = ["-m", "uvicorn", "--factory", "api.app:create_app", "--host", host, "--port", str(port),
            "--log-level", "warning"]
    return _spawn([sys.executable, *args], env, log_path)


def wait_until_serving(url: str, process: subprocess.Popen, within_s: float) -> bool:
    """Whether `url` answered 200 before `within_s` passed (False at once if `process` exited)."""
    import httpx

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            time.sleep(0.2)
    return False


def tied_to_this_process(command: list[str]) -> list[str]:
    """`command`, stopped by the kernel if this process dies (see core/die_with_parent.py)."""
    return [sys.executable, str(ROOT / "core" / "die_with_parent.py"), str(os.getpid()), *command]


def _spawn(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    return subprocess.Popen(
        tied_to_this_process(command), cwd=ROOT, env={**os.environ, **env}, stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops its pool children
    )


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Warm shutdown (SIGTERM lets Celery finish its current task), then force."""
    stop_all([process], timeout)


def stop_all(processes: list[subprocess.Popen], timeout: float = 20) -> None:
    """Stop several at once: all are told first, so none keeps taking new work while
    another is still shutting down; any still running after `timeout` is killed."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        # The main process only: it stops taking messages and waits for its pool children
        # to finish their tasks. SIGTERM to the whole group would kill those children
        # mid-task, losing (and later re-paying) an LLM reply that was about to be stored.
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in running:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
