"""Bad input over HTTP against the running API: each request gets the right 4xx with a
reason a person can act on, and nothing is queued (no batch, no job, no broker message)."""

import json
import os

import httpx
import pytest
import redis
from sqlalchemy import func, select

from api.keys import create_key
from core.broker_redis import queue_depth
from models import Batch, Job
from models.db import session_scope
from tests.stack import api_client, tone_wav

UPLOAD_LIMIT = 50_000


@pytest.fixture
def api(stack, tmp_path):
    """The API alone (no workers: nothing it refuses may reach a queue anyway), a tenant
    with a server audio root holding one good clip, and a second tenant."""
    root = tmp_path / "root"
    (root / "clips").mkdir(parents=True)
    tone_wav(root / "clips" / "tone.wav")
    (tmp_path / "outside.wav").write_bytes((root / "clips" / "tone.wav").read_bytes())
    os.symlink(tmp_path / "outside.wav", root / "clips" / "escape.wav")
    stack.configure(max_audio_bytes=UPLOAD_LIMIT, data_dir=str(tmp_path / "data"))
    url = stack.start_api()
    suffix = os.urandom(4).hex()
    mine = api_client(url, create_key(f"lab-{suffix}", audio_root=root))
    theirs = api_client(url, create_key(f"other-{suffix}", audio_root=root))
    yield mine, theirs, url
    mine.close()
    theirs.close()


def _line(custom_id: str, audio: str, **extra) -> str:
    return json.dumps({"custom_id": custom_id, "audio": audio, "question": "What is heard?",
                       "choices": ["A tone", "A voice"], **extra})


def _queued_anything(broker_url: str) -> tuple[int, int, int]:
    """(batches, jobs, broker messages): a refused request must leave all three as they were."""
    with session_scope() as session:
        batches = session.scalar(select(func.count()).select_from(Batch))
        jobs = session.scalar(select(func.count()).select_from(Job))
    queues = redis.Redis.from_url(broker_url)
    return batches, jobs, sum(queue_depth(queues, q) for q in ("perception", "perception-cpu", "reasoning"))


def _errors(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    return response.json()["detail"]["errors"]


def test_malformed_line_missing_file_and_escapes_are_refused_by_line(api, broker_url):
    client, _, _ = api
    before = _queued_anything(broker_url)
    text = "\n".join([
        _line("ok", "clips/tone.wav"),
        "{not json",
        _line("missing", "clips/nope.wav"),
        _line("dotdot", "../outside.wav"),
        _line("absolute", "/etc/passwd"),
        _line("symlink", "clips/escape.wav"),
        _line("url", "https://example.com/a.wav"),
        json.dumps({"custom_id": "no-question", "audio": "clips/tone.wav"}),
        _line("ok", "clips/tone.wav"),
    ])
    errors = _errors(client.post("/v1/batches", json={"input": text}))
    assert errors[0].startswith("line 2: not valid JSON")
    assert any(e.startswith("line 8: missing field(s): question") for e in errors)
    assert any(e.startswith("line 9: duplicate id 'ok'") for e in errors)
    by_line = {e.split(":")[0]: e for e in errors}
    assert "audio file not found" in by_line["line 3"]
    assert "without '..'" in by_line["line 4"]
    assert "without '..'" in by_line["line 5"]
    assert "symbolic link" in by_line["line 6"]  # not followed, wherever it points
    assert "URLs are not accepted" in by_line["line 7"]
    assert "/etc" not in by_line["line 3"] and str(api[2]) not in json.dumps(errors)  # no server paths leak
    assert _queued_anything(broker_url) == before


def test_benchmark_files_with_problems_are_refused_whole(api, broker_url):
    client, _, _ = api
    before = _queued_anything(broker_url)
    mmau = [{"id": "a", "audio_id": "clips/tone.wav", "question": "q?", "choices": ["x", "y"], "answer": "x"},
            {"id": "b", "audio_id": "clips/gone.wav", "question": "q?", "choices": ["x", "y"], "answer": "y"}]
    errors = _errors(client.post("/v1/batches", json={"input": json.dumps(mmau), "input_format": "mmau"}))
    assert errors == ["item 2: audio file not found: clips/gone.wav"]
    errors = _errors(client.post("/v1/batches", json={"input": json.dumps(mmau[:1]), "audio_dir": "../"}))
    assert errors == ["item 1: audio_dir '../' must be relative to the audio root, without '..'"]
    assert _queued_anything(broker_url) == before


def test_oversize_upload_is_refused_before_it_is_read(api, broker_url, tmp_path):
    client, _, _ = api
    before = _queued_anything(broker_url)
    big = b"\0" * (UPLOAD_LIMIT + 100_000)
    response = client.post("/v1/audio", files={"file": ("big.wav", big)})
    assert response.status_code == 413, response.text
    assert f"{UPLOAD_LIMIT}-byte limit" in response.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    boundary = "agrtestboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()

    def body():
        yield head
        yield from chunks()
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post("/v1/audio", content=body(),
                           headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    assert not [p for p in (tmp_path / "data" / "uploads").glob("*")]  # no partial file left behind
    assert _queued_anything(broker_url) == before


def test_upload_then_reference_it(api, tmp_path):
    client, theirs, _ = api
    tone = tone_wav(tmp_path / "upload.wav")
    uploaded = client.post("/v1/audio", files={"file": ("tone.wav", tone.read_bytes())})
    assert uploaded.status_code == 201, uploaded.text
    body = uploaded.json()
    assert len(body["sha256"]) == 64 and body["duration_s"] == pytest.approx(1.0)
    assert client.get(f"/v1/audio/{body['id']}").json()["sha256"] == body["sha256"]
    assert theirs.get(f"/v1/audio/{body['id']}").status_code == 404
    # Another tenant cannot reference it in a batch either.
    line = json.dumps({"custom_id": "x", "audio": {"upload_id": body["id"]}, "question": "q?"})
    assert _errors(theirs.post("/v1/batches", json={"input": line})) == [f"line 1: upload {body['id']} not found"]
    assert client.post("/v1/audio", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 422


def test_keys_and_tenants(api):
    client, theirs, url = api
    assert api_client(url).get("/v1/batches").status_code == 401
    assert api_client(url, "agr_wrong").get("/v1/batches").status_code == 401
    created = client.post("/v1/batches", json={"input": _line("one", "clips/tone.wav"), "name": "mine"})
    assert created.status_code == 201, created.text
    batch = created.json()
    jobs = client.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]
    for path in (f"/v1/batches/{batch['id']}", f"/v1/batches/{batch['id']}/jobs", f"/v1/batches/{batch['id']}/output",
                 f"/v1/jobs/{jobs[0]['id']}", f"/v1/jobs/{jobs[0]['id']}/evidence"):
        assert client.get(path).status_code == 200, path
        assert theirs.get(path).status_code == 404, path
    assert theirs.post(f"/v1/batches/{batch['id']}/cancel").status_code == 404
    assert [b["id"] for b in theirs.get("/v1/batches").json()["data"]] == []
    assert client.get(f"/v1/batches/{batch['id']}").json()["status"] == "in_progress"  # their cancel did nothing


def test_idempotency_key_rate_limit_and_queue_cap(stack, tmp_path, broker_url):
    root = tmp_path / "root"
    root.mkdir()
    tone_wav(root / "tone.wav")
    url = stack.start_api()
    suffix = os.urandom(4).hex()
    client = api_client(url, create_key(f"small-{suffix}", audio_root=root,
                                        rate_limit_per_minute=8, max_queued_items=3))
    two = "\n".join(_line(f"q{i}", "tone.wav") for i in range(2))
    _, jobs_before, _ = _queued_anything(broker_url)
    first = client.post("/v1/batches", json={"input": two}, headers={"Idempotency-Key": "k1"})
    again = client.post("/v1/batches", json={"input": two}, headers={"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    changed = client.post("/v1/batches", json={"input": two, "name": "other"}, headers={"Idempotency-Key": "k1"})
    assert changed.status_code == 409
    over = client.post("/v1/batches", json={"input": two})  # 2 queued + 2 > 3
    assert over.status_code == 429 and "limit of 3" in over.json()["detail"]
    assert _queued_anything(broker_url)[1] == jobs_before + 2  # the one batch, once
    statuses = [client.get("/v1/batches").status_code for _ in range(6)]
    assert statuses[-1] == 429 and 200 in statuses
    limited = client.get("/v1/batches")
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


NUL = "\u0000"
# Lines Postgres would refuse (NUL in text or json, a lone surrogate, NaN or Infinity in
# json, a custom_id past its column) or Python could not read (an int of 5,000 digits, a
# path longer than the system allows): each is a 422 naming its line, never a 500.
UNSTORABLE_LINES = {
    "custom_id too long": _line("x" * 201, "clips/tone.wav"),
    "NUL in custom_id": _line(f"id{NUL}", "clips/tone.wav"),
    "NUL in question": json.dumps({"custom_id": "q", "audio": "clips/tone.wav", "question": f"What{NUL}?"}),
    "NUL in a choice": _line("c", "clips/tone.wav", choices=["a", f"b{NUL}"]),
    "NUL in answer": _line("a", "clips/tone.wav", answer=f"a{NUL}"),
    "NUL in audio": _line("p", f"clips/tone.wav{NUL}"),
    "NUL in audio.path": _line("p", {"path": f"clips/{NUL}tone.wav"}),
    "NUL deep in metadata": _line("m", "clips/tone.wav", metadata={"k": {"deep": [f"v{NUL}"]}}),
    "NUL in a metadata key": _line("m", "clips/tone.wav", metadata={f"k{NUL}": 1}),
    "NUL in an MMAR id": json.dumps({"id": f"i{NUL}", "audio_path": "clips/tone.wav", "question": "q?"}),
    "NUL in an MMAR field": json.dumps({"id": "i", "audio_path": "clips/tone.wav", "question": "q?",
                                        "category": f"c{NUL}"}),
    "lone surrogate": _line("s", "clips/tone.wav", answer="\ud800"),
    "NaN in metadata": _line("n", "clips/tone.wav", metadata={"x": float("nan")}),
    "1e400 in metadata": _line("f", "clips/tone.wav").replace('"choices"', '"metadata": {"x": 1e400}, "choices"'),
    "a 5000-digit int": _line("i", "clips/tone.wav").replace('"choices"', '"metadata": {"x": ' + "9" * 5000
                                                              + '}, "choices"'),
    "audio path too long": _line("l", "clips/" + "a" * 300 + ".wav"),
    "audio path far too long": _line("l", "a/" * 3000 + "x.wav"),
}


def test_lines_the_database_cannot_store_are_refused_by_line(api, broker_url):
    client, _, _ = api
    before = _queued_anything(broker_url)
    wrong = {}
    for case, line in UNSTORABLE_LINES.items():
        fmt = "mmar" if "MMAR" in case else "auto"
        good = (json.dumps({"id": "ok", "audio_path": "clips/tone.wav", "question": "q?"}) if fmt == "mmar"
                else _line("ok", "clips/tone.wav"))
        try:  # a connection of its own: one a 500 closed must not fail the next case
            with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=None) as fresh:
                response = fresh.post("/v1/batches", json={"input": good + "\n" + line, "input_format": fmt})
        except httpx.TransportError as exc:  # the API process died, or dropped the connection
            wrong[case] = repr(exc)
            continue
        errors = response.json()["detail"].get("errors") if response.status_code == 422 else None
        if not errors or not all(e.startswith("line 2: ") for e in errors):
            wrong[case] = f"{response.status_code} {response.text[:200]}"
    assert not wrong, "\n".join(f"{case}: {answer}" for case, answer in wrong.items())
    assert _queued_anything(broker_url) == before


BAD_BATCH_FIELDS = {
    "NUL in name": {"name": f"n{NUL}"}, "lone surrogate in name": {"name": "\ud800"}, "long name": {"name": "n" * 201},
    "NUL in a metadata value": {"metadata": {"k": f"v{NUL}"}}, "NUL in a metadata key": {"metadata": {f"k{NUL}": "v"}},
    "lone surrogate in metadata": {"metadata": {"k": "\udfff"}}, "long metadata key": {"metadata": {"k" * 65: "v"}},
    "long metadata value": {"metadata": {"k": "v" * 513}}, "NUL in audio_dir": {"audio_dir": f"clips{NUL}"},
    "audio_dir name too long": {"audio_dir": "a" * 300},
    "lone surrogate in input": {"input": _line("ok", "clips/tone.wav").replace("heard", "heard\ud800")},
    "NaN max_iters": {"max_iters": float("nan")}, "Infinity max_iters": {"max_iters": float("inf")},
}


def test_batch_fields_the_database_cannot_store_are_refused(api, broker_url):
    client, _, _ = api
    before = _queued_anything(broker_url)
    wrong = {}
    for case, field in BAD_BATCH_FIELDS.items():
        # Sent as JSON spells them (\u0000, \ud800, NaN), which a client library may refuse to.
        body = json.dumps({"input": _line("ok", "clips/tone.wav"), **field})
        try:
            with httpx.Client(base_url=client.base_url, headers=client.headers, timeout=None) as fresh:
                response = fresh.post("/v1/batches", content=body, headers={"Content-Type": "application/json"})
        except httpx.TransportError as exc:
            wrong[case] = repr(exc)
            continue
        if response.status_code != 422:
            wrong[case] = f"{response.status_code} {response.text[:200]}"
    assert not wrong, "\n".join(f"{case}: {answer}" for case, answer in wrong.items())
    assert _queued_anything(broker_url) == before
