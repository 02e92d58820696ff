"""The real stack for a test: Celery worker processes per queue and the sweeper, started with
the settings the test chooses, plus helpers to submit work and inspect Postgres."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID

import httpx
import numpy as np
import psutil
import soundfile as sf
from sqlalchemy import func, insert, select, update

from api.intake.batch_input import Item
from api.intake.submission import BatchRequest, create_batch, submit
from core.settings import get_settings
from local_stack import processes
from models import Batch, BatchStatus, Iteration, Job, Step, StepKind
from models.db import session_scope
from tests import children

SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"

FAST_DURABILITY = {
    "AGR_STEP_LEASE_S": "4",
    "AGR_SWEEP_INTERVAL_S": "1",
    "AGR_LOST_MESSAGE_AFTER_S": "3",
    "AGR_RETRY_BACKOFF_S": "0.2",
    "AGR_LLM_MAX_RETRIES": "1",
    "AGR_LLM_TIMEOUT_S": "30",
}


class Stack:
    def __init__(self, database_url: str, broker_url: str, tmp: Path):
        self.tmp = tmp
        self.env = {"AGR_DATABASE_URL": database_url, "AGR_BROKER_URL": broker_url, **FAST_DURABILITY}
        self.workers: dict[str, subprocess.Popen] = {}
        self.role_settings: dict[str, dict] = {}  # a role's own settings over `env`

    def configure(self, **settings: str) -> None:
        self.env.update({f"AGR_{k.upper()}": str(v) for k, v in settings.items()})

    def start(self, *roles: str) -> None:
        for role in roles or ("perception-cpu", "perception", "reasoning", "sweeper"):
            self.start_role(role)
        time.sleep(0.5)

    def start_role(self, role: str, queue: str | None = None, **settings) -> subprocess.Popen:
        """Start the sweeper, or a worker named `role` on `queue` (default: the queue of that name):
        perception workers of concurrency 1, a reasoning worker with its thread pool at the
        configured concurrency; a role started again replaces its killed predecessor.
        `settings` are this process's own, over the configured ones (None: unset)."""
        log = self.tmp / f"{role}.log"
        self.role_settings[role] = settings
        env = {**self.env, **{f"AGR_{k.upper()}": str(v) for k, v in settings.items() if v is not None}}
        for key in [f"AGR_{k.upper()}" for k, v in settings.items() if v is None]:
            env.pop(key, None)
        if role == "sweeper":
            proc = processes.start_sweeper(env, log)
        else:
            proc = processes.start_worker(queue or role, env, log, name=role)
        self.workers[role] = proc
        return proc

    def start_api(self) -> str:
        """The HTTP API as its own uvicorn process; returns its base URL once it answers."""
        port = _free_port()
        self.workers["api"] = processes.start_api(self.env, self.tmp / "api.log", port)
        url = f"http://127.0.0.1:{port}"
        if processes.wait_until_serving(f"{url}/healthz", self.workers["api"], within_s=60):
            return url
        raise AssertionError(f"the API did not start\n{self.logs()}")

    def kill(self, role: str) -> None:
        """kill -9 the worker and its pool children: no shutdown, no acks, nothing saved."""
        parent = psutil.Process(self.workers[role].pid)
        for proc in parent.children(recursive=True) + [parent]:
            proc.send_signal(signal.SIGKILL)
        self.workers[role].wait()

    def stop_all(self) -> None:
        processes.stop_all(list(self.workers.values()))

    def log_of(self, role: str) -> str:
        return (self.tmp / f"{role}.log").read_text()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.tmp.glob("*.log"))

    # --- work ---
    def submit(self, items: list[Item], **options) -> UUID:
        """Submitted by this process, as the API would, with the configured settings: the
        submitter fixes each job's tools, models and coarse calls."""
        with _settings(self.env):
            return submit("test", items, options)

    def restart_exited(self) -> list[str]:
        """Start again every worker whose process ended, as docker-compose's restart policy
        (and `agr run`) would; returns their roles."""
        exited = [role for role, proc in self.workers.items() if role != "api" and proc.poll() is not None]
        for role in exited:
            self.start_role(role, **self.role_settings.get(role, {}))
        return exited

    def wait_for_batch(self, batch_id: UUID, timeout: float = 120, supervise: bool = False) -> Batch:
        """Wait for the batch to complete; `supervise`: restarting workers that exit meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if supervise:
                self.restart_exited()
            with session_scope() as session:
                batch = session.get(Batch, batch_id)
                if batch.status == BatchStatus.COMPLETED:
                    return batch
            time.sleep(0.2)
        raise AssertionError(f"batch {batch_id} did not complete in {timeout}s\n{self.job_summary(batch_id)}\n{self.logs()}")

    def jobs(self, batch_id: UUID) -> list[Job]:
        with session_scope() as session:
            return list(session.scalars(select(Job).where(Job.batch_id == batch_id).order_by(Job.custom_id)))

    def job_summary(self, batch_id: UUID) -> str:
        return "\n".join(f"{j.custom_id}: {j.status} {j.error or ''}" for j in self.jobs(batch_id))

    def wait_for_running_step(self, kind: str, batch_id: UUID, timeout: float = 60) -> Step:
        """A step of `kind` of this batch once one is running (the tests share a database:
        an earlier test's step may still read `running`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope() as session:
                step = session.scalar(select(Step).join(Job, Job.id == Step.job_id)
                                      .where(Job.batch_id == batch_id, Step.kind == kind, Step.status == "running")
                                      .limit(1))
                if step is not None:
                    return step
            time.sleep(0.02)
        raise AssertionError(f"no {kind} step started running in {timeout}s\n{self.logs()}")


@contextmanager
def _settings(env: dict):
    """This process's settings read from `env` over its own environment, meanwhile."""
    saved = dict(os.environ)
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


def api_client(url: str, key: str | None = None) -> httpx.Client:
    """A client of the test's API. No client timeout: on a slow machine the API answers
    slowly, not wrongly (a first request may wait on imports, a submission on Postgres); a
    hung API is caught by the test's own time limit, with the logs."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=None)


def post_tone_batch(api_url: str, tenant: str, audio_root: Path, items: int, max_iters: int = 1):
    """A new tenant's key, and a batch over HTTP of `items` questions on the clips
    `0.wav`, `1.wav`, ... under its audio root; returns (the tenant's client, batch id)."""
    from api.keys import create_key

    client = api_client(api_url, create_key(tenant, audio_root=audio_root))
    lines = [json.dumps({"custom_id": f"q{i:04d}", "audio": f"{i}.wav", "question": "What is heard?",
                         "choices": ["A tone", "A voice"], "answer": "A tone"}) for i in range(items)]
    created = client.post("/v1/batches", json={"input": "\n".join(lines), "input_format": "jsonl",
                                               "max_iters": max_iters})
    assert created.status_code == 201, created.text
    return client, created.json()["id"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tone_wav(path: Path, seconds: float = 1.0, freq: float = 440.0, rate: int = 16000) -> Path:
    """A sine tone whose bytes are new on every call (a random starting phase).

    Perception results are cached by audio content across every batch in the database,
    and the tests share one database: equal tones written by two tests would let the
    first answer the second's perception from the cache. A test that wants the same
    audio twice reuses the file."""
    t = np.arange(int(seconds * rate)) / rate
    phase = np.random.default_rng().uniform(0, 2 * np.pi)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32), rate)
    return path


def question_item(custom_id: str, audio: Path, choices=("A tone", "A voice", "Silence"), answer="A tone") -> Item:
    return Item(custom_id, audio, "What is heard?", list(choices), answer)


def planning_steps(tmp_path: Path, name: str, count: int, **request) -> tuple[UUID, list[int]]:
    """A batch of `count` jobs on one short tone, each with its coarse document made and its
    planning step queued (its message due, not sent): the state a perception step's commit
    leaves, made in seconds. `request`: BatchRequest's other fields (tenant_id, ...)."""
    audio = tone_wav(tmp_path / f"{name}.wav", seconds=0.5)
    items = [question_item(f"{name}{i:05d}", audio) for i in range(count)]
    batch_id, ids = create_batch(BatchRequest(name, items, {"max_iters": 0}, **request))
    with session_scope() as session:
        jobs = list(session.scalars(select(Step.job_id).where(Step.id.in_(ids))))
        session.execute(insert(Iteration), [{"job_id": j, "index": 0, "document": "[0] a steady tone",
                                             "evidence": []} for j in jobs])
        session.execute(update(Step).where(Step.id.in_(ids)).values(kind=StepKind.PLAN, calls=None))
    return batch_id, ids


def count_rows(model, **filters) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).filter_by(**filters))


def tone_batch_file(folder: Path, items: int) -> Path:
    """An MMAR-format file of `items` questions on one tone, for the CLI's commands."""
    tone_wav(folder / "tone.wav")
    lines = [{"id": f"item-{i}", "audio_path": "tone.wav", "question": "What is heard?",
              "choices": ["A tone", "A voice"], "answer": "A tone"} for i in range(items)]
    path = folder / "batch.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def agr_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def run_cli(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`agr ARGS` as a user runs it, in its own process with `env` (tests/children.run)."""
    return children.run(agr_command(*args), env, timeout)
