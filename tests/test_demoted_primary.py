"""A fail-over's old primary: it still accepts connections, but read-only, and every write
fails with SQLSTATE 25006 until clients reach the new primary. That is an outage, not a bug.

Made real here the way a client sees it: the module's database set read-only for new
sessions and every open session ended, so each process reconnects to a server that refuses
its writes with 25006; then set writable again (the new primary). Longer than a step's lease.
"""

import json
import threading
import time

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api.keys import create_key
from tests.stack import api_client, question_item, tone_wav

READ_ONLY_S = 6.0  # longer than the tests' 4 s lease


class Demotion:
    """The module's database made read-only, as a demoted primary is, and writable again."""

    def __init__(self, database_url: str):
        self.admin = create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with self.admin.connect() as connection:
            self.name = connection.execute(text("SELECT current_database()")).scalar()

    def _run(self, *statements: str) -> None:
        with self.admin.connect() as connection:
            connection.execute(text("SET default_transaction_read_only = off"))  # this session only
            for statement in statements:
                connection.execute(text(statement))

    def demote(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = on',
                  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE datname = current_database() AND pid <> pg_backend_pid()")

    def promote(self) -> None:
        self._run(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')


def test_a_paid_reply_waits_out_a_demoted_primary_and_is_not_bought_again(stack, scripted_llm, database_url,
                                                                          tmp_path):
    replied, demoted = threading.Event(), threading.Event()

    def answer_once_demoted(body):
        replied.set()
        demoted.wait(60)  # the reply arrives at a worker whose database just went read-only
        return {"reasoning": "scripted", "answer": "A tone", "confidence": 0.6}

    scripted_llm.default_replies.update(answerer=answer_once_demoted)
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts"]')
    stack.start("perception-cpu", "reasoning", "sweeper")
    batch_id = stack.submit([question_item("only", tone_wav(tmp_path / "clip.wav"))], max_iters=0)
    assert replied.wait(120), "the answering agent was never asked"
    demotion = Demotion(database_url)
    demotion.demote()
    demoted.set()
    time.sleep(READ_ONLY_S)
    demotion.promote()
    stack.wait_for_batch(batch_id, timeout=180)

    (job,) = stack.jobs(batch_id)
    assert job.status == "succeeded" and job.answer == "A tone", stack.job_summary(batch_id)
    assert len(scripted_llm.requests_of("answerer")) == 1  # the reply was kept, not bought again
    assert "database unreachable" in stack.log_of("reasoning")


def test_the_api_answers_a_demoted_primary_with_503(stack, database_url, tmp_path):
    url = stack.start_api()
    root = tmp_path / "root"
    root.mkdir()
    tone_wav(root / "clip.wav")
    http = api_client(url, create_key("demoted", audio_root=root))
    line = {"custom_id": "a", "audio": "clip.wav", "question": "What is heard?", "choices": ["A tone", "A voice"]}
    demotion = Demotion(database_url)
    demotion.demote()
    try:
        refused = http.post("/v1/batches", json={"input": json.dumps(line)})
    finally:
        demotion.promote()
    assert refused.status_code == 503 and refused.headers["Retry-After"], refused.text
    deadline = time.monotonic() + 60
    while (created := http.post("/v1/batches", json={"input": json.dumps(line)})).status_code == 503:
        assert time.monotonic() < deadline, created.text
        time.sleep(0.5)
    assert created.status_code == 201, created.text  # the API reaches the new primary
    assert isinstance(httpx.get(f"{url}/healthz").json(), dict)
