"""Test services: the machine's real Postgres and Redis (or those named by
AGR_TEST_ADMIN_DATABASE_URL / AGR_TEST_BROKER_URL), a fresh database per test session."""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytest_plugins = ["tests.s3_server"]  # its `s3_server` fixture: a real S3 server, one per session

ADMIN_URL = os.environ.get("AGR_TEST_ADMIN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BROKER_URL = os.environ.get("AGR_TEST_BROKER_URL", "redis://127.0.0.1:6379/7")
SHARED = Path(__file__).resolve().parents[2] / "shared"
DEVSET = SHARED / "devset"

_DB_NAME = f"agr_test_{uuid.uuid4().hex[:8]}"
DATABASE_URL = make_url(ADMIN_URL).set(database=_DB_NAME).render_as_string(hide_password=False)

# One audio store for the session, shared by this process and every process it starts
# (they inherit the environment), and removed at the end.
AUDIO_STORE = Path(tempfile.mkdtemp(prefix="agr-test-store-"))

# The test process submits batches itself, so it reads the same settings as the workers.
os.environ.update(AGR_DATABASE_URL=DATABASE_URL, AGR_BROKER_URL=BROKER_URL,
                  AGR_AUDIO_STORE_URL=f"file://{AUDIO_STORE}")


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true",
                     help="run the long fault-injection suite (tests/test_chaos.py) instead of the bounded one")


@pytest.fixture
def soak(request) -> bool:
    return request.config.getoption("--soak")


@pytest.fixture(scope="session")
def database_url():
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{_DB_NAME}"'))
    from core.migrate import upgrade_to_head

    upgrade_to_head(DATABASE_URL)
    yield DATABASE_URL
    from models.db import get_engine

    get_engine().dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{_DB_NAME}" WITH (FORCE)'))
    admin.dispose()
    shutil.rmtree(AUDIO_STORE, ignore_errors=True)


@pytest.fixture
def broker_url(database_url):
    from workers.sweeper import BROKER_MARKER_KEY

    _cancel_earlier_tests_unfinished_jobs()
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()  # no message of an earlier test leaks in
    # Emptied on purpose, not lost: without the marker the first sweep would re-send every
    # queued step in the shared test database, earlier tests' leftovers included.
    broker.set(BROKER_MARKER_KEY, "1")
    return BROKER_URL


def _cancel_earlier_tests_unfinished_jobs() -> None:
    """The tests share one database, and the sweeper re-sends any unfinished job's lost
    messages: a batch an earlier test left queued (an API test without workers, say) would
    be worked on by this test's workers, with this test's LLM. Cancelled, it is left alone."""
    from sqlalchemy import update

    from models import Job, JobStatus
    from models.db import session_scope
    from models.status import TERMINAL_JOB_STATUSES

    with session_scope() as session:
        session.execute(update(Job).where(Job.status.not_in(TERMINAL_JOB_STATUSES))
                        .values(status=JobStatus.CANCELLED, error="left unfinished by an earlier test"))


@pytest.fixture
def scripted_llm():
    from tests.scripted_llm import ScriptedLLM

    server = ScriptedLLM()
    yield server
    server.close()


@pytest.fixture
def stack(database_url, broker_url, tmp_path):
    from tests.stack import Stack

    running = Stack(database_url, broker_url, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def devset():
    if not (DEVSET / "meta.jsonl").is_file():
        pytest.skip("../shared/devset is not present")
    return DEVSET
