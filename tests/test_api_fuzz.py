"""The OpenAPI schema fuzzed with schemathesis against the running API: whatever a
client sends, with a valid key or without, the answer is never a 5xx."""

import os

from collections import Counter, defaultdict

import hypothesis
from hypothesis import strategies as st
import schemathesis
from schemathesis import runner
from schemathesis.checks import not_a_server_error
from schemathesis.models import Status
from schemathesis.runner import events

from api.keys import create_key
from tests.stack import api_client, tone_wav

EXAMPLES_PER_OPERATION = 40


def test_no_request_gets_a_server_error(stack, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    tone_wav(root / "tone.wav")
    stack.configure(data_dir=str(tmp_path / "data"))
    url = stack.start_api()
    key = create_key(f"fuzz-{os.urandom(4).hex()}", audio_root=root, rate_limit_per_minute=1_000_000)
    real_ids = _a_batch_and_its_job(url, key)
    # Ids the fuzzer makes up are mostly unknown (404); mixing in real ones takes it past
    # the lookups into the handlers' own code.
    schemathesis.openapi.format("uuid", st.sampled_from(real_ids) | st.uuids().map(str))
    # FastAPI writes OpenAPI 3.1, which schemathesis 3 reads when told to treat it as 3.0.
    schema = schemathesis.from_uri(f"{url}/openapi.json", base_url=url, force_schema_version="30")
    run = runner.from_schema(
        schema, checks=[not_a_server_error], headers={"Authorization": f"Bearer {key}"},
        hypothesis_settings=hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
                                                database=None, derandomize=True),
    )
    failures, operations, statuses = [], 0, defaultdict(Counter)
    for event in run.execute():
        if isinstance(event, events.AfterExecution):
            operations += 1
            statuses[event.result.verbose_name].update(c.response.status_code for c in event.result.checks if c.response)
            for check in event.result.checks:
                if check.value == Status.failure:
                    failures.append(f"{event.result.verbose_name}: {check.message or check.name} "
                                    f"({check.example.method if check.example else ''})")
            failures += [f"{event.result.verbose_name}: {e.exception}" for e in event.result.errors]
        if isinstance(event, events.InternalError):
            failures.append(f"schemathesis internal error: {event.message}")
    assert operations >= 14, operations
    reached = {name: codes for name, codes in statuses.items() if 200 in codes or 201 in codes}
    for name in ("GET /v1/batches/{batch_id}", "GET /v1/batches/{batch_id}/jobs", "GET /v1/jobs/{job_id}/evidence",
                 "POST /v1/audio"):
        assert name in reached, f"the fuzzer never got past validation of {name}: {dict(statuses)}"
    assert not failures, "\n".join(failures[:20]) + "\n" + stack.logs()[-4000:]


def _a_batch_and_its_job(url: str, key: str) -> list[str]:
    http = api_client(url, key)
    line = '{"custom_id": "one", "audio": "tone.wav", "question": "What is heard?", "choices": ["a", "b"]}'
    batch = http.post("/v1/batches", json={"input": line})
    assert batch.status_code == 201, batch.text
    job = http.get(f"/v1/batches/{batch.json()['id']}/jobs").json()["data"][0]
    return [batch.json()["id"], job["id"]]
