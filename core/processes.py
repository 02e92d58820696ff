"""Starting the stack's worker processes: one Celery worker per queue, and beat.

Used by `agr run` and by the tests, so both exercise the same real processes.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


CELERY_APP = "workers.celery_app"


def celery_command(*args: str, app: str = CELERY_APP) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", app, *args]


def start_worker(queue: str, env: dict, log_path: Path, concurrency: int = 1, name: str | None = None,
                 app: str = CELERY_APP) -> subprocess.Popen:
    args = ["worker", "-Q", queue, "--concurrency", str(concurrency), "--prefetch-multiplier", "1",
            "-n", f"{name or queue}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    return _spawn(celery_command(*args, app=app), env, log_path)


def start_beat(env: dict, log_path: Path, schedule_path: Path) -> subprocess.Popen:
    args = ["beat", "-s", str(schedule_path), "--loglevel", "INFO"]
    return _spawn(celery_command(*args), env, log_path)


def _spawn(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopping it stops its pool children
    )


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Warm shutdown (SIGTERM lets Celery finish its current task), then force."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()
