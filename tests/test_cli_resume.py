"""Ctrl-C (or SIGTERM) during `agr run` loses nothing: `agr resume` finishes the batch, and no LLM
reply that was already paid for is asked for again."""

import os
import signal
import subprocess
import time

import psutil
import pytest
from sqlalchemy import func, select

from local_stack import processes
from models import Batch, Job, JobStatus, LLMCall
from models.db import session_scope
from tests import children
from tests.stack import FAST_DURABILITY, agr_command, run_cli, tone_batch_file

ITEMS = 12


def _cli_env(scripted_llm, tmp_path) -> dict:
    return {**os.environ, **FAST_DURABILITY, "AGR_LLM_BASE_URL": scripted_llm.base_url,
            "AGR_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}


def _statuses(name: str) -> tuple[Batch | None, list[JobStatus]]:
    with session_scope() as session:
        batch = session.scalar(select(Batch).where(Batch.name == name))
        if batch is None:
            return None, []
        return batch, list(session.scalars(select(Job.status).where(Job.batch_id == batch.id)))


def _wait_for_first_paid_reply(name: str, timeout: float = 120) -> Batch:
    """The batch once its first LLM reply is stored: paid for, so a resume must reuse it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch, _ = _statuses(name)
        if batch is not None:
            with session_scope() as session:
                paid = session.scalar(select(func.count()).select_from(LLMCall).join(Job)
                                      .where(Job.batch_id == batch.id))
            if paid:
                return batch
        time.sleep(0.1)
    raise AssertionError(f"no LLM reply of {name} stored in {timeout}s")


# How a user stops `agr run`: a terminal's Ctrl-C; and SIGTERM (docker, systemd, a
# supervisor) to a run whose SIGINT was ignored from the start (nohup, a CI runner, a
# script's background job), which must not depend on SIGINT at all.
STOPS = {"ctrl-c": ("default", signal.SIGINT), "sigterm-with-sigint-ignored": ("ignore", signal.SIGTERM)}


@pytest.mark.parametrize("stop", STOPS)
def test_interrupted_run_resumes_without_repaying(database_url, broker_url, scripted_llm, tmp_path, stop):
    sigint, signum = STOPS[stop]
    # Two reasoning threads and a planner of 1 s: 12 planner calls need >= 5 s more after
    # the first reply is stored, so the stop lands mid-batch however fast the machine.
    scripted_llm.delays["planner"] = 1.0
    env = _cli_env(scripted_llm, tmp_path) | {"AGR_REASONING_CONCURRENCY": "2"}
    name = f"resumable-{stop}"  # the module's tests share its database
    run = children.start(agr_command("run", str(tone_batch_file(tmp_path, ITEMS)), "--name", name, "--max-iters", "0"),
                         env, sigint=sigint, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    batch = _wait_for_first_paid_reply(name)
    started = psutil.Process(run.pid).children(recursive=True)  # its workers, sweeper, Redis, Postgres
    run.send_signal(signum)
    try:
        output, _ = run.communicate(timeout=120)
    finally:
        how = children.stop(run)
    assert how == "exited", f"{stop} did not stop agr run: it took {how}"

    assert run.returncode == 128 + signum, output
    assert f"agr resume {batch.id}" in output
    assert not [p for p in started if processes.is_alive(p)], \
        f"{stop} left processes of agr run running"
    _, statuses = _statuses(name)
    assert statuses.count(JobStatus.SUCCEEDED) < ITEMS, "the batch finished before the interrupt"

    scripted_llm.delays["planner"] = 0.0
    resumed = run_cli(env, "resume", str(batch.id))

    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    _, statuses = _statuses(name)
    assert statuses == [JobStatus.SUCCEEDED] * ITEMS
    assert f"{ITEMS}/{ITEMS} correct, accuracy 1.000" in resumed.stdout
    with session_scope() as session:
        stored = session.scalar(select(func.count()).select_from(LLMCall).join(Job).where(Job.batch_id == batch.id))
    # Workers stop warm on Ctrl-C and on SIGTERM, so every reply paid for was stored and
    # none asked twice.
    assert len(scripted_llm.requests) == stored


def test_resume_of_unknown_batch_is_a_clear_error(database_url, broker_url, scripted_llm, tmp_path):
    unknown = "00000000-0000-0000-0000-000000000000"
    result = run_cli(_cli_env(scripted_llm, tmp_path), "resume", unknown, timeout=120)
    assert result.returncode == 2
    assert f"no batch {unknown}" in result.stdout
