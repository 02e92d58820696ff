"""A database outage mid-batch does not end `agr run`: it says once that the database is
unreachable, keeps the workers it started running, and finishes the batch once Postgres
is back. Against a Postgres and a Redis of the test's own (tests/private_services.py), so
the machine's shared services are never touched, and a scripted LLM, so it is cheap.

The commands that watch through the HTTP API (`agr status --watch`, `agr submit --wait`)
see the outage as the API's 503, and wait it out the same way."""

import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from cli.client import ApiError
from core.migrate import upgrade_to_head
from models import Batch, Job, JobStatus
from tests import children
from tests.private_services import PrivatePostgres, PrivateRedis
from tests.scripted_llm import default_reply
from tests.stack import FAST_DURABILITY, agr_command, tone_batch_file

ITEMS = 6
OUTAGE_S = 20  # longer than the lease below: steps running when it began lapse meanwhile
LEASE_S = 6


@pytest.fixture
def private_services(tmp_path):
    # Postgres's folder is outside pytest's: pgserver runs it as another user, and a pytest
    # session starting meanwhile makes /tmp/pytest-of-<user> private to us again, so a
    # restart there would find its own data folder out of reach.
    with tempfile.TemporaryDirectory(prefix="agr-outage-") as pg_folder:
        postgres, broker = PrivatePostgres(Path(pg_folder) / "pg"), PrivateRedis(tmp_path / "redis")
        try:
            postgres.start()
            broker.start()
            upgrade_to_head(postgres.url)
            yield postgres, broker
        finally:
            broker.stop()
            postgres.stop()


def _succeeded(engine, name: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(Job).join(Batch, Batch.id == Job.batch_id)
                           .where(Batch.name == name, Job.status == JobStatus.SUCCEEDED))


@pytest.mark.timeout(300)
def test_agr_run_waits_out_a_database_outage(private_services, scripted_llm, tmp_path):
    postgres, broker = private_services
    # The first answer goes through; every later one is held until Postgres has crashed,
    # so the crash lands mid-batch however fast the machine (a planner delay alone let a
    # fast run finish all six first). The held replies then reach their steps during the
    # outage, which must store them once Postgres is back.
    crashed, first = threading.Event(), threading.Lock()

    def answer_after_the_first(body):
        if not first.acquire(blocking=False):
            crashed.wait(timeout=240)
        return default_reply("answerer", body)

    scripted_llm.default_replies["answerer"] = answer_after_the_first
    scripted_llm.delays["planner"] = 1.5
    env = {**os.environ, **FAST_DURABILITY, "AGR_STEP_LEASE_S": str(LEASE_S),
           "AGR_DATABASE_URL": postgres.url, "AGR_BROKER_URL": broker.url,
           "AGR_LLM_BASE_URL": scripted_llm.base_url, "AGR_REASONING_CONCURRENCY": "2",
           "AGR_COARSE_TOOLS": '["signal_facts"]',  # no model to load: the perception workers start fast
           "AGR_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    run = children.start(agr_command("run", str(tone_batch_file(tmp_path, ITEMS)), "--name", "outage", "--max-iters", "0"),
                         env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    engine = create_engine(postgres.url, pool_pre_ping=True)
    try:
        deadline = time.monotonic() + 120
        while _succeeded(engine, "outage") == 0:
            assert run.poll() is None, run.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "no job answered in 120 s"
            time.sleep(0.1)
        answered_before = _succeeded(engine, "outage")
        engine.dispose()

        postgres.crash()
        crashed.set()
        time.sleep(OUTAGE_S)
        postgres.restart()
        output, _ = run.communicate(timeout=180)
        answered = _succeeded(engine, "outage")
    finally:
        crashed.set()  # released however the test ends
        if run.poll() is None:
            children.stop(run)
        engine.dispose()

    logs = tmp_path / "data" / "logs"
    worker_logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(logs.glob("*.log")))
    print(output)
    assert answered_before < ITEMS, "the batch finished before the outage"
    assert run.returncode == 0, output[-3000:]
    assert output.count("database unreachable, retrying") == 1, output[-3000:]  # once, not every poll
    assert "database reachable again" in output
    assert "Traceback" not in output, output[-3000:]
    assert answered == ITEMS, worker_logs
    assert f"{ITEMS}/{ITEMS} correct, accuracy 1.000" in output
    assert all(f"item-{i}" in output for i in range(ITEMS))


# --- the commands that watch through the HTTP API -----------------------------------------

DOWN = "down"  # a scripted API answer: the database is away


class ScriptedApi:
    """The CLI's ApiClient, answering from a script: batch statuses in turn, DOWN for the
    API's 503 during a database outage."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def _next(self):
        answer = self.answers.pop(0)
        if answer == DOWN:
            raise ApiError(503, "the database is unavailable; retry shortly")
        return answer

    def create_batch(self, body, idempotency_key=None):
        return self._next()

    def batch(self, batch_id):
        return self._next()

    def score(self, batch_id, rule="token"):
        return self._next()


def _batch(status: str, completed: int) -> dict:
    return {"id": "b1", "name": "n", "status": status, "pipeline": "agr", "output_file": None, "error_file": None,
            "request_counts": {"total": 2, "completed": completed, "failed": 0, "cancelled": 0, "expired": 0}}


SCORE = {"rule": "token", "by_group": {},
         "overall": {"correct": 2, "scored": 2, "total": 2, "official": 1.0, "strict": 1.0, "missing": 0}}


@pytest.fixture
def scripted_api(monkeypatch):
    import cli.db_outage
    from cli import remote as cli_remote

    monkeypatch.setattr(cli.db_outage, "RETRY_S", 0.0)
    monkeypatch.setattr(cli_remote, "POLL_S", 0.0)
    monkeypatch.setenv("COLUMNS", "200")

    def use(*answers) -> ScriptedApi:
        client = ScriptedApi(*answers)
        monkeypatch.setattr(cli_remote, "_client", lambda: client)
        return client

    return use


def _agr(*args):
    from typer.testing import CliRunner

    from cli.main import app

    return CliRunner().invoke(app, list(args))


def test_status_watch_waits_out_the_apis_503(scripted_api):
    client = scripted_api(_batch("in_progress", 0), DOWN, DOWN, DOWN, _batch("in_progress", 1),
                          _batch("completed", 2))
    result = _agr("status", "b1", "--watch")
    assert result.exit_code == 0, result.output
    assert result.output.count("database unreachable, retrying") == 1  # one outage, one line
    assert result.output.count("database reachable again") == 1
    assert "completed=2" in result.output and not client.answers


def test_submit_wait_waits_out_the_apis_503_in_the_watch_and_the_score(scripted_api, tmp_path):
    client = scripted_api(_batch("validating", 0), _batch("in_progress", 0), DOWN, DOWN, _batch("completed", 2),
                          DOWN, SCORE)
    batch_file = tmp_path / "b.jsonl"
    batch_file.write_text(json.dumps({"custom_id": "a", "audio": "a.wav", "question": "q?", "choices": ["x"]}) + "\n")
    result = _agr("submit", str(batch_file), "--server-audio-dir", "", "--wait")
    assert result.exit_code == 0, result.output
    assert result.output.count("database unreachable, retrying") == 2  # two outages
    assert result.output.count("database reachable again") == 2
    assert "rule token: official 100.0%" in result.output and not client.answers


def test_the_api_answers_503_while_the_database_is_away(monkeypatch):
    """What the watch keys on: the real app and client, the database unreachable."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from cli.client import ApiClient
    from tests.private_services import _free_port, this_process_uses

    nowhere = f"postgresql+psycopg://postgres@127.0.0.1:{_free_port()}/agr"
    with this_process_uses(nowhere, os.environ["AGR_BROKER_URL"]):
        client = ApiClient(key="agr_whatever")
        client.http = TestClient(create_app(), headers=client.http.headers)
        for read in (lambda: client.batch("00000000-0000-0000-0000-000000000000"),
                     lambda: client.score("00000000-0000-0000-0000-000000000000")):
            with pytest.raises(ApiError) as refused:
                read()
            assert refused.value.status == 503, refused.value
