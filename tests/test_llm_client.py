"""The reasoner client's structured-output form ("auto"), against a real HTTP server.

No Celery, Postgres or Redis: each test starts a scripted OpenAI-compatible server and
one ReasonerClient, so what is checked is what goes over the wire. The refusals are
worded as the real servers word them:

- llama.cpp's llama-server (before it took `json_schema`): its OpenAI-parameter parser
  throws `response_format type must be one of "text" or "json_object", but got:
  json_schema`, which the server answers as HTTP 500 with
  `{"error": {"code": 500, "message": ..., "type": "server_error"}}`.
- llama-cpp-python's `llama_cpp.server` (the embedded reasoner): its request model only
  allows `text` / `json_object`, and its error route turns FastAPI's validation error
  into HTTP 500 `{"error": {"message": str(error), "type": "internal_server_error", ...}}`.
"""

import threading

import openai
import pytest

from core.settings import Settings
from tests.scripted_llm import ScriptedLLM
from workers.method.reasoning.llm_client import ReasonerClient, ReasonerUnavailable

pytestmark = pytest.mark.timeout(60)

MESSAGES = [{"role": "system", "content": "You are the planning agent."},
            {"role": "user", "content": "Is the evidence enough?"}]
SCHEMA = {"type": "object", "properties": {"sufficient": {"type": "boolean"}}, "required": ["sufficient"]}

LLAMA_SERVER_REFUSAL = (500, {"error": {
    "code": 500, "type": "server_error",
    "message": 'response_format type must be one of "text" or "json_object", but got: json_schema'}})
LLAMA_CPP_PYTHON_REFUSAL = (500, {"error": {
    "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
               "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
               "'ctx': {'expected': \"'text' or 'json_object'\"}}",
    "type": "internal_server_error", "param": None, "code": None}})


@pytest.fixture
def llm():
    server = ScriptedLLM()
    yield server
    server.close()


def make_client(llm: ScriptedLLM, **overrides) -> ReasonerClient:
    options = dict(llm_base_url=llm.base_url, llm_response_format="auto", llm_max_retries=2, llm_timeout_s=5.0)
    return ReasonerClient(Settings(**(options | overrides)))


def formats_sent(llm: ScriptedLLM) -> list[str | None]:
    return [(r["body"].get("response_format") or {}).get("type") for r in llm.requests]


def call(client: ReasonerClient):
    return client.complete_json(MESSAGES, SCHEMA, name="planner")


def test_a_500_blip_on_the_first_call_is_retried_and_keeps_json_schema(llm):
    llm.queue("planner", 500)  # a hosted API's one-off "server had an error"
    client = make_client(llm)
    assert '"sufficient": true' in call(client).text
    assert formats_sent(llm) == ["json_schema", "json_schema"]
    assert client.format == "json_schema"
    call(client)
    assert formats_sent(llm)[-1] == "json_schema"


def test_a_429_on_the_first_call_is_retried(llm):
    llm.queue("planner", 429)
    client = make_client(llm)
    assert '"sufficient": true' in call(client).text
    assert formats_sent(llm) == ["json_schema", "json_schema"]
    assert client.format == "json_schema"


def test_a_timeout_on_the_first_call_is_retried(llm):
    # The first request is held past the client's timeout; the retry then releases both
    # (the first one's late answer meets a closed socket: the server logs a BrokenPipeError).
    llm.hold_until_in_flight("planner", 2, timeout_s=10)
    client = make_client(llm, llm_timeout_s=0.5)
    call(client)
    assert formats_sent(llm) == ["json_schema", "json_schema"]
    assert client.format == "json_schema"


def test_blips_past_the_retries_raise_and_teach_nothing(llm):
    llm.queue("planner", 500, 503, 500)
    client = make_client(llm)
    with pytest.raises(ReasonerUnavailable):
        call(client)
    assert formats_sent(llm) == ["json_schema"] * 3  # the first try and two retries
    assert client.format == "auto"
    call(client)
    assert client.format == "json_schema"


def test_an_unreachable_server_teaches_nothing(llm):
    llm.close()
    client = make_client(llm, llm_max_retries=1, llm_timeout_s=1.0)
    with pytest.raises(ReasonerUnavailable):
        call(client)
    assert client.format == "auto"


@pytest.mark.parametrize("refusal", [LLAMA_SERVER_REFUSAL, LLAMA_CPP_PYTHON_REFUSAL],
                         ids=["llama-server", "llama-cpp-python"])
def test_a_format_refusal_switches_to_json_object_for_good(llm, refusal):
    llm.refuse_response_format("json_schema", *refusal)
    client = make_client(llm)
    assert '"sufficient": true' in call(client).text
    # The refusal is not retried: one json_schema request, then the confirming json_object.
    assert formats_sent(llm) == ["json_schema", "json_object"]
    assert llm.requests[1]["body"]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert client.format == "json_object"
    llm.queue("planner", 500)  # a later blip is an ordinary retry, in the learned form
    call(client)
    call(client)
    assert formats_sent(llm)[2:] == ["json_object"] * 3
    assert client.format == "json_object"


def test_a_refusal_that_json_object_does_not_cure_teaches_nothing(llm):
    # Looks like a format refusal, but the json_object form is refused as well (a bad
    # schema, say): no form is learned and the error is the caller's.
    llm.refuse_response_format("json_schema", 400, {"error": {"message": "Invalid schema for response_format 'planner'"}})
    llm.refuse_response_format("json_object", 400, {"error": {"message": "Invalid schema for response_format 'planner'"}})
    client = make_client(llm)
    with pytest.raises(openai.BadRequestError):
        call(client)
    assert formats_sent(llm) == ["json_schema", "json_object"]
    assert client.format == "auto"


def test_a_refusal_whose_confirmation_blips_teaches_nothing_yet(llm):
    llm.refuse_response_format("json_schema", *LLAMA_SERVER_REFUSAL)
    llm.queue("planner", 500, 500, 500)  # the json_object confirmation fails past its retries
    client = make_client(llm)
    with pytest.raises(ReasonerUnavailable):
        call(client)
    assert client.format == "auto"
    call(client)
    assert client.format == "json_object"


def _call_concurrently(client: ReasonerClient, threads: int) -> list:
    results, errors = [], []

    def one():
        try:
            results.append(call(client))
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert not errors, errors
    return results


def test_concurrent_first_calls_against_a_refusing_server_agree_on_json_object(llm):
    threads = 8  # more at once overflow the test server's listen backlog (5): 1 s SYN retries
    llm.refuse_response_format("json_schema", *LLAMA_SERVER_REFUSAL)
    llm.hold_until_in_flight("planner", threads, timeout_s=10)  # every first call probes at once
    client = make_client(llm)
    assert len(_call_concurrently(client, threads)) == threads
    assert client.format == "json_object"
    sent = formats_sent(llm)
    assert sent.count("json_schema") <= threads  # each thread probed at most once
    _call_concurrently(client, threads)
    assert formats_sent(llm)[len(sent):] == ["json_object"] * threads


def test_concurrent_first_calls_with_blips_never_leave_json_schema(llm):
    # Some of the simultaneous first calls hit a 500 blip; none may flip the process to
    # json_object, and none may flip it back and forth.
    threads = 8  # more at once overflow the test server's listen backlog (5): 1 s SYN retries
    llm.queue("planner", *[500] * 5)
    llm.hold_until_in_flight("planner", threads, timeout_s=10)
    client = make_client(llm)
    assert len(_call_concurrently(client, threads)) == threads
    assert client.format == "json_schema"
    assert set(formats_sent(llm)) == {"json_schema"}
    assert len(llm.requests) == threads + 5
