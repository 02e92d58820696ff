"""Starting the stack's worker processes: one Celery worker per queue, and the sweeper.

Used by `agr run`, the benches and the tests, so all exercise the same real processes.

A reasoning worker is one process with a pool of threads (AGR_REASONING_CONCURRENCY):
its steps spend their time waiting on the LLM server, so tens of them share one process
and one database pool. Perception workers are prefork processes (a model is loaded after
the fork, and prefork keeps Celery's time limits), of concurrency 1 by default; except the
GPU one when all its models are engines (Settings.gpu_models_remote): it then waits on
HTTP as the reasoning worker does, with a pool of AGR_ENGINE_WORKER_CONCURRENCY threads.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


CELERY_APP = "workers.runtime.celery_app"
_reading_settings = threading.Lock()


def celery_command(*args: str, app: str = CELERY_APP) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app, *args]


def start_worker(queue: str, env: dict, log_path: Path, concurrency: int | None = None,
                 name: str | None = None, app: str = CELERY_APP, pool: str | None = None) -> subprocess.Popen:
    """A worker on `queue`; the reasoning queue's gets the thread pool and the configured
    concurrency unless told otherwise."""
    threaded = queue == "reasoning" or (queue == "perception" and _loads_no_model(env))
    pool = pool or ("threads" if threaded else "prefork")
    if concurrency is None:
        concurrency = threads_of(queue, env) if threaded else 1
    args = ["worker", "-Q", queue, "--pool", pool, "--concurrency", str(concurrency), "--prefetch-multiplier", "1",
            "-n", f"{name or queue}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    return _spawn(celery_command(*args, app=app), env, log_path)


def reasoning_concurrency(env: dict) -> int:
    """AGR_REASONING_CONCURRENCY as the started worker will see it (`env` over ours)."""
    return _settings_of(env).reasoning_concurrency


def threads_of(queue: str, env: dict) -> int:
    settings = _settings_of(env)
    return settings.reasoning_concurrency if queue == "reasoning" else settings.engine_worker_concurrency


def _loads_no_model(env: dict) -> bool:
    try:
        return _settings_of(env).gpu_models_remote
    except ValueError:  # a bad setting: the worker itself refuses it, naming it, in its log
        return False


def _settings_of(env: dict):
    """The settings a process started with `env` reads: its environment is ours updated with
    `env` (_spawn). Settings read os.environ only, so `env`'s AGR_* stand in for ours while
    they are read (under a lock; nothing but AGR_* is touched)."""

    overrides = {k: v for k, v in env.items() if k.startswith("AGR_")}
    with _reading_settings:
        saved = {k: os.environ.get(k) for k in overrides}
        try:
            os.environ.update(overrides)
            return Settings()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def start_sweeper(env: dict, log_path: Path) -> subprocess.Popen:
    """The sweeper's loop (workers/runtime/sweeper_loop.py); several may run, one sweeps."""
    return _spawn([sys.executable, "-m", "workers.runtime.sweeper_loop"], env, log_path)


def start_api(env: dict, log_path: Path, port: int, host: str = "127.0.0.1") -> subprocess.Popen:
    args = ["-m", "uvicorn", "--factory", "api.app:create_app", "--host", host, "--port", str(port),
            "--log-level", "warning"]
    # What a crowd of held chat calls used goes back to the system once it has gone
    # (api/front_door/held_jobs.py trims the heap): Python's objects in glibc's heap, whose free pages
    # a trim returns, not in pymalloc's arenas, which one live object keeps whole (30 MiB
    # kept after 1,000 calls; 9-11 with glibc), and in two arenas, not one per thread.
    # docker-compose.yml sets the same.
    return _spawn([sys.executable, *args], {"MALLOC_ARENA_MAX": "2", "PYTHONMALLOC": "malloc", **env}, log_path)


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


def tied_to_this_process(command: list[str], sigint: str = "default") -> list[str]:
    """`command`, stopped by the kernel if this process dies, with SIGINT at `sigint`
    ("default" or "ignore") and SIGQUIT at its default (see local_stack/tied_child.py)."""
    return [sys.executable, str(ROOT / "local_stack" / "tied_child.py"), str(os.getpid()), f"--sigint={sigint}", *command]


def _spawn(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    return subprocess.Popen(
        tied_to_this_process(command), cwd=ROOT, env={**os.environ, **env}, stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopping it stops its pool children
    )


def stop(process: subprocess.Popen, timeout: float = 20, first: int = signal.SIGTERM) -> str:
    """Stop one process and everything it started; how it ended (see stop_all)."""
    return stop_all([process], timeout, first)[process.pid]


def stop_all(processes: list[subprocess.Popen], timeout: float = 20, first: int = signal.SIGTERM) -> dict[int, str]:
    """Stop several at once by an escalation that always ends: `first` (SIGTERM: Celery's
    warm shutdown finishes the current task; SIGINT: a Ctrl-C) to each, a wait of up to
    `timeout`; then SIGTERM and a wait of up to TERM_GRACE_S; then SIGKILL to each one's
    whole tree, its process group and every descendant, wherever it moved to.

    All are told first, so none keeps taking new work while another is still shutting down.
    Returns, by pid, what ended each: "exited" (before we asked), the name of the signal
    it obeyed, or "SIGKILL". A descendant still running once its root has ended is stopped
    too: nothing this call was asked to stop outlives it."""
    running = [p for p in processes if p.poll() is None]
    ended = {p.pid: "exited" for p in processes if p not in running}
    trees = {p.pid: _descendants(p.pid) for p in running}  # now: a dead parent's children move away
    steps = [(first, timeout)] + ([(signal.SIGTERM, TERM_GRACE_S)] if first != signal.SIGTERM else [])
    for signum, grace in steps:
        for process in running:
            # The main process only: it stops taking messages and waits for its pool children
            # to finish their tasks. A signal to the whole group would kill those children
            # mid-task, losing (and later re-paying) an LLM reply that was about to be stored.
            process.send_signal(signum)
        running = _wait_all(running, grace)
        for process in processes:
            if process.pid not in ended and process.poll() is not None:
                ended[process.pid] = signal.Signals(signum).name
    for process in running:
        trees[process.pid] += _descendants(process.pid)
        _kill_group(process.pid)
        process.kill()
        process.wait()
        ended[process.pid] = "SIGKILL"
    end_processes([child for tree in trees.values() for child in tree])
    return ended


TERM_GRACE_S = 10.0


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _wait_all(processes: list[subprocess.Popen], within_s: float) -> list[subprocess.Popen]:
    """Those of `processes` still running after waiting up to `within_s` for all."""
    deadline = time.monotonic() + within_s
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    return [p for p in processes if p.poll() is None]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # not a group leader (started without a session of its own), or already gone


def end_processes(children: list[psutil.Process]) -> None:
    """SIGTERM, a short grace, SIGKILL: descendants that outlived the process that started them."""
    alive = [c for c in children if is_alive(c)]
    for child in alive:
        _signal(child, signal.SIGTERM)
    _, alive = psutil.wait_procs(alive, timeout=TERM_GRACE_S)
    for child in alive:
        _signal(child, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=TERM_GRACE_S)


def is_alive(process: psutil.Process) -> bool:
    """Running and not a zombie (an exited child its parent has not reaped yet)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(process: psutil.Process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except psutil.NoSuchProcess:
        pass
