"""Bulk submissions against the real API process (uvicorn, Postgres, Redis): many files a
request, asking which are held already, submission files checked off the request path
(`validating`, then `in_progress` or `failed` with every bad line), and the CLI's submit
that resumes: a re-run uploads nothing and finds the same batch, through a rate limit it
has to wait out. No worker runs: what is under test ends once the batch is queued."""

import json
import os
import time

import pytest

from api.keys import create_key
from models import Job, Upload
from tests.stack import api_client, count_rows, run_cli, tone_wav


@pytest.fixture
def api(stack, tmp_path):
    # A 1-second rate-limit window, so a client's waits on a 429 take seconds, not a minute.
    stack.configure(data_dir=str(tmp_path / "data"), rate_limit_period_s=1)
    return stack.start_api()


def keyed(api: str, limit: int = 100_000) -> tuple:
    key = create_key(f"bulk-{os.urandom(4).hex()}", rate_limit_per_minute=limit)
    return api_client(api, key), key


def wait_while_validating(client, batch_id: str, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] != "validating":
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch_id} is still validating")


def test_many_files_a_request_a_lookup_by_content_and_a_file_checked_off_the_request_path(api, tmp_path):
    client, _ = keyed(api)
    clips = [tone_wav(tmp_path / f"c{i}.wav", seconds=0.2) for i in range(5)]
    sent = client.post("/v1/audio/bulk", files=[("file", (c.name, c.read_bytes())) for c in clips])
    assert sent.status_code == 201, sent.text
    uploads = sent.json()["data"]
    assert [u["filename"] for u in uploads] == [c.name for c in clips]  # in the order of the parts

    digests = [u["sha256"] for u in uploads]
    unknown = "0" * 64
    known = client.post("/v1/audio/known", json={"sha256": digests[:3] + [unknown]}).json()["data"]
    assert sorted(k["sha256"] for k in known) == sorted(digests[:3])
    other, _ = keyed(api)  # another tenant is never told what this one holds
    assert other.post("/v1/audio/known", json={"sha256": digests}).json()["data"] == []

    def line(i, upload_id, **change):
        item = {"custom_id": f"q{i}", "audio": {"upload_id": upload_id}, "question": "What is heard?",
                "choices": ["A tone", "A voice"], "answer": "A tone"}
        return json.dumps(item | change)

    bad = "\n".join([line(0, uploads[0]["id"]), line(1, "00000000-0000-0000-0000-000000000000"),
                     line(2, uploads[2]["id"]), line(3, uploads[3]["id"], choices="A tone")])
    bad_file = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("bad.jsonl", bad.encode())})
    assert bad_file.status_code == 200, bad_file.text
    created = client.post("/v1/batches", json={"input_file_id": bad_file.json()["id"], "input_format": "jsonl"})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "validating"
    refused = wait_while_validating(client, created.json()["id"])
    assert refused["status"] == "failed"
    assert [e["line"] for e in refused["errors"]["data"]] == [2, 4], refused["errors"]  # every bad line
    assert count_rows(Job, batch_id=refused["id"]) == 0

    good = "\n".join(line(i, u["id"]) for i, u in enumerate(uploads)).encode()
    first = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("good.jsonl", good)}).json()
    again = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("again.jsonl", good)}).json()
    assert again["id"] == first["id"]  # the same bytes are the same file
    body = {"input_file_id": first["id"], "input_format": "jsonl", "max_iters": 0}
    created = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "good-1"})
    queued = wait_while_validating(client, created.json()["id"])
    assert queued["status"] == "in_progress" and queued["request_counts"]["total"] == 5, queued
    replay = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "good-1"})
    assert replay.status_code == 200 and replay.json()["id"] == queued["id"]

    assert client.post("/v1/files", data={"purpose": "fine-tune"},
                       files={"file": ("x.jsonl", good)}).status_code == 422
    assert client.post("/v1/batches", json={"input_file_id": first["id"], "input": "x"}).status_code == 422
    not_theirs = other.post("/v1/batches", json=body)  # another tenant's file id is no file of theirs
    assert not_theirs.status_code == 422 and not_theirs.json()["detail"]["errors"][0].startswith("no file")


def test_cli_submit_resumes_uploads_only_what_is_missing_and_waits_out_the_rate_limit(api, tmp_path):
    # MMAR's layout: the file beside an audio/ folder, its paths `./audio/<id>.wav`.
    dataset = tmp_path / "mmar"
    (dataset / "audio").mkdir(parents=True)
    lines = []
    for i in range(30):
        tone_wav(dataset / "audio" / f"id{i}.wav", seconds=0.2)
        lines.append({"id": f"id{i}", "audio_path": f"./audio/id{i}.wav", "question": "What is heard?",
                      "choices": ["A tone", "A voice"], "answer": "A tone", "modality": "sound"})
    meta = dataset / "MMAR-meta.jsonl"
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines))
    client, key = keyed(api, limit=120)  # 2 requests a second: the CLI must wait some out
    env = {**os.environ, "AGR_API_URL": api, "AGR_API_KEY": key, "COLUMNS": "200"}

    def submit(audio_dir):
        done = run_cli(env, "submit", str(meta), "--audio-dir", str(audio_dir), "--max-iters", "0", timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    first = submit(dataset / "audio")  # the audio/ folder itself: ./audio/<id>.wav still resolves
    assert "30 to upload" in first and "rate limited by the API" in first, first
    batch_id = first.split("batch ")[-1].split()[0]
    assert count_rows(Upload, tenant_id=_tenant_of(client)) == 30

    again = submit(dataset)  # the dataset folder: the same files, so the same request
    assert "30 held by the service already, 0 to upload" in again, again
    assert again.split("batch ")[-1].split()[0] == batch_id  # the same batch, not a second
    assert count_rows(Upload, tenant_id=_tenant_of(client)) == 30
    batch = client.get(f"/v1/batches/{batch_id}").json()
    assert batch["request_counts"]["total"] == 30 and batch["status"] == "in_progress"


def _tenant_of(client):
    from api.keys import caller_for

    return caller_for(client.headers["Authorization"].removeprefix("Bearer ")).tenant_id


def test_a_refused_file_lists_its_first_thousand_problems_frees_its_key_and_bad_parts_answer_4xx(api, tmp_path):
    client, _ = keyed(api)
    # 3,000 broken lines after one nested past Python's recursion limit: the intake must
    # refuse the file (not die on it, leaving it `validating` for ever), list 1,000
    # problems and count the rest.
    text = "[" * 100_000 + "\n" + "not json\n" * 3000
    sent = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("bad.jsonl", text.encode())})
    body = {"input_file_id": sent.json()["id"], "input_format": "jsonl"}
    first = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "bad-1"}).json()
    refused = wait_while_validating(client, first["id"], timeout_s=120)
    assert refused["status"] == "failed", refused["status"]
    problems = refused["errors"]["data"]
    assert len(problems) == 1001 and problems[0]["line"] == 1 and "nested too deeply" in problems[0]["message"]
    assert problems[-1]["message"] == "... and 2001 more problem(s), not listed", problems[-1]
    # The same request again (the cause fixed elsewhere, say a tenant's queue now with room)
    # makes a new batch: a failed one is not answered again for ever.
    again = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "bad-1"})
    assert again.status_code == 201 and again.json()["id"] != first["id"], again.text

    # A file's bytes are kept as sent (a CR is JSON whitespace, not a line end).
    crlf = b'{"custom_id": "a",\r "audio": "x.wav", "question": "q"}\r\n'
    kept = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("crlf.jsonl", crlf)}).json()
    assert client.get(f"/v1/files/{kept['id']}/content").content == crlf

    broken = client.post("/v1/audio/bulk", content=b"--XXgarbage\r\n",
                         headers={"Content-Type": "multipart/form-data; boundary=XX"})
    assert broken.status_code == 422 and "multipart" in broken.text, broken.text
    clip = tone_wav(tmp_path / "c.wav", seconds=0.2).read_bytes()
    # httpx would escape a NUL in a file name: sent raw, as a hostile client can.
    raw = (b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.wav"\r\n\r\n' + clip
           + b"\r\n--XX--\r\n")
    named = client.post("/v1/audio/bulk", content=raw, headers={"Content-Type": "multipart/form-data; boundary=XX"})
    assert named.status_code == 201 and named.json()["data"][0]["filename"] == "ab.wav", named.text
