"""Batches over HTTP against the running stack (API process, Celery workers per queue,
the sweeper, Postgres, Redis, a scripted OpenAI-compatible reasoner): the devset through the CLI,
MMAR- and MMAU-format files with stand-in audio, cancel mid-batch, expiry, pipelines."""

import json
import os
import re
import subprocess
import time

import httpx
import pytest

from api.keys import create_key
from tests.stack import SHARED_BENCHMARKS, api_client, run_cli, tone_wav

QUICK_COARSE_TOOLS = '["signal_facts", "voice_activity"]'  # the flow is under test here, not perception
METRICS_TOKEN = "scraper-" + os.urandom(8).hex()  # /metrics answers only its token


@pytest.fixture
def served(stack, scripted_llm, tmp_path):
    """The whole stack with the API; returns (API URL, a helper making keyed clients)."""
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools=QUICK_COARSE_TOOLS,
                    data_dir=str(tmp_path / "data"), metrics_token=METRICS_TOKEN)
    stack.start()
    url = stack.start_api()

    def client(audio_root=None) -> tuple[httpx.Client, str]:
        key = create_key(f"t-{os.urandom(4).hex()}", audio_root=audio_root, rate_limit_per_minute=100_000)
        return api_client(url, key), key

    return url, client


def wait_for(client: httpx.Client, batch_id: str, until, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.get(f"/v1/batches/{batch_id}").json()
        if until(batch):
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} never reached the state wanted: {batch}")


def ended(batch: dict) -> bool:
    return batch["status"] in ("completed", "cancelled", "expired", "failed")


def jsonl(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def stand_in_audio(root, paths) -> None:
    """One real clip, and each benchmark path a hard link to it inside the root (symbolic
    links are not followed under a root)."""
    root.mkdir(parents=True, exist_ok=True)
    tone = tone_wav(root / "_tone.wav")
    for relative in paths:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(tone, target)


def _agr(*args, env_extra: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", **env_extra}
    return run_cli(env, *args, timeout=timeout)


def test_devset_through_the_cli_over_http(served, devset, tmp_path):
    url, client = served
    http, key = client()
    env = {"AGR_API_URL": url, "AGR_API_KEY": key}
    submitted = _agr("submit", str(devset / "meta.jsonl"), "--audio-dir", str(devset), "--wait", env_extra=env)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    batch_id = re.search(r"batch (\S+) queued: 24 item\(s\)", submitted.stdout).group(1)
    assert "24 distinct audio file(s): 0 held by the service already, 24 to upload" in submitted.stdout
    assert "uploaded 24 file(s)" in submitted.stdout
    assert re.search(r"rule token: official \d+\.\d%", submitted.stdout)  # the score, printed at the end

    batch = http.get(f"/v1/batches/{batch_id}").json()
    assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 24

    out = tmp_path / "answers.jsonl"
    fetched = _agr("results", batch_id, "-o", str(out), env_extra=env)
    assert fetched.returncode == 0, fetched.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 24 and all(line["answer"] in line["choices"] for line in lines)
    exported = tmp_path / "mmar.json"
    assert _agr("results", batch_id, "-o", str(exported), "--format", "mmar", env_extra=env).returncode == 0
    assert all("answer_prediction" in item for item in json.loads(exported.read_text()))

    job = http.get(f"/v1/batches/{batch_id}/jobs", params={"limit": 1}).json()["data"][0]
    audited = _agr("audit", job["id"], env_extra=env)
    assert audited.returncode == 0, audited.stderr
    assert "iteration 0: coarse document" in audited.stdout and "planner" in audited.stdout
    assert f"answer: {job['answer']}" in audited.stdout

    scored = _agr("eval", "--batch", batch_id, env_extra=env)
    assert scored.returncode == 0 and "overall" in scored.stdout


def test_mmar_and_mmau_files_with_stand_in_audio(served, tmp_path):
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip("../shared/benchmarks is not present")
    mmar_lines = (SHARED_BENCHMARKS / "MMAR-meta.jsonl").read_text().splitlines()[:8]
    mmau_items = json.loads((SHARED_BENCHMARKS / "mmau-test-mini.json").read_text())[:8]
    root = tmp_path / "root"
    stand_in_audio(root, [json.loads(line)["audio_path"] for line in mmar_lines] + [i["audio_id"] for i in mmau_items])
    http, _ = served[1](root)
    mmar = http.post("/v1/batches", json={"input": "\n".join(mmar_lines), "name": "mmar-8"})
    mmau = http.post("/v1/batches", json={"input": json.dumps(mmau_items), "name": "mmau-8"})
    assert (mmar.status_code, mmau.status_code) == (201, 201), mmar.text + mmau.text

    for created, items, modality_field in ((mmar, [json.loads(x) for x in mmar_lines], "modality"),
                                           (mmau, mmau_items, "task")):
        batch = wait_for(http, created.json()["id"], ended)
        assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 8
        output = jsonl(http.get(batch["output_file"]))
        assert [o["custom_id"] for o in output] == sorted(i["id"] for i in items)
        assert jsonl(http.get(batch["error_file"])) == []  # the error file exists, empty
        by_id = {i["id"]: i for i in items}
        for line in output:
            assert line["reference_answer"] == by_id[line["custom_id"]]["answer"]
            assert line["metadata"][modality_field] == by_id[line["custom_id"]][modality_field]
        report = http.get(f"/v1/batches/{batch['id']}/score").json()
        assert report["overall"]["total"] == 8 and report["overall"]["missing"] == 0
        assert set(report["by_group"]["modality"]) == {i[modality_field] for i in items}

    job = http.get(f"/v1/batches/{mmar.json()['id']}/jobs", params={"limit": 1}).json()["data"][0]
    chain = http.get(f"/v1/jobs/{job['id']}/evidence").json()
    first = chain["iterations"][0]
    assert [t["tool"] for t in first["tool_calls"]] == ["signal_facts", "voice_activity"]
    assert first["document"] and first["verdict"]["sufficient"] is True
    agents = [c["agent"] for c in first["llm_calls"]]
    assert agents == ["planner", "answerer"]
    planner = first["llm_calls"][0]
    assert planner["messages"][0]["role"] == "system" and job["question"] in planner["messages"][1]["content"]
    assert planner["latency_ms"] > 0 and planner["prompt_tokens"] is not None
    assert [s["kind"] for s in chain["steps"]] == ["perceive_cpu", "plan", "answer"]

    assert served[0] and api_client(served[0]).get("/readyz").json() == {
        "status": "ready", "checks": {"database": "ok", "broker": "ok"}}
    metrics = api_client(served[0], METRICS_TOKEN).get("/metrics").text
    for name in ('agr_jobs{status="succeeded"}', 'agr_queue_depth{queue="perception"}',
                 'agr_step_seconds_bucket{kind="plan",le="+Inf"}', 'agr_llm_usage_total{kind="prompt"}'):
        assert name in metrics, name


def test_cancel_mid_batch_keeps_finished_results(served, scripted_llm, tmp_path):
    if not SHARED_BENCHMARKS.is_dir():
        pytest.skip("../shared/benchmarks is not present")
    text = (SHARED_BENCHMARKS / "mmau-test-mini.json").read_text()
    root = tmp_path / "root"
    stand_in_audio(root, [i["audio_id"] for i in json.loads(text)])
    http, _ = served[1](root)
    created = http.post("/v1/batches", json={"input": text, "name": "mmau-full"})  # the whole real file
    assert created.status_code == 201, created.text[:2000]
    batch_id = created.json()["id"]
    assert created.json()["request_counts"]["total"] == 1000

    wait_for(http, batch_id, lambda b: b["request_counts"]["completed"] >= 3)
    # Racing the reasoning worker's threads committing jobs of the same batch: the cancel
    # takes the locks in their order (job, then batch), so it neither deadlocks nor 503s.
    cancel = http.post(f"/v1/batches/{batch_id}/cancel")
    assert cancel.status_code == 200, cancel.text
    cancelled = cancel.json()
    assert cancelled["status"] in ("cancelling", "cancelled")
    batch = wait_for(http, batch_id, ended, timeout=60)
    counts = batch["request_counts"]
    assert batch["status"] == "cancelled" and counts["completed"] >= 3
    assert counts["completed"] + counts["cancelled"] + counts["failed"] == 1000 and counts["cancelled"] > 900

    output = jsonl(http.get(batch["output_file"]))
    assert len(output) == counts["completed"] and all(o["answer"] for o in output)
    errors = jsonl(http.get(batch["error_file"]))
    assert sum(e["status"] == "cancelled" for e in errors) == counts["cancelled"]
    assert all(e["error"] == "cancelled before it finished" for e in errors if e["status"] == "cancelled")
    calls = len(scripted_llm.requests)
    time.sleep(3)  # nothing of the batch runs any more
    assert http.get(f"/v1/batches/{batch_id}").json()["request_counts"] == counts
    assert len(scripted_llm.requests) == calls


def test_expiry_keeps_the_batch_readable(stack, tmp_path):
    root = tmp_path / "root"
    stand_in_audio(root, ["a.wav", "b.wav"])
    url = stack.start_api()  # no workers: nothing can finish before the window closes
    key = create_key(f"t-{os.urandom(4).hex()}", audio_root=root)
    http = api_client(url, key)
    lines = "\n".join(json.dumps({"custom_id": n, "audio": f"{n}.wav", "question": "q?"}) for n in "ab")
    created = http.post("/v1/batches", json={"input": lines, "completion_window": "1s"}).json()
    time.sleep(1.5)
    batch = http.get(f"/v1/batches/{created['id']}").json()
    assert batch["status"] == "expired" and batch["request_counts"]["expired"] == 2
    errors = jsonl(http.get(batch["error_file"]))
    assert {e["error"] for e in errors} == {"the batch expired before this job finished"}
    assert http.post(f"/v1/batches/{created['id']}/cancel").json()["status"] == "expired"


def test_cascade_and_direct_pipelines(stack, scripted_llm, tmp_path):
    from tests.tiny_models import build_tiny_qwen2_audio

    alm = build_tiny_qwen2_audio(tmp_path / "tiny-alm")
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["signal_facts", "voice_activity", "caption"]',
                    alm_model=str(alm),
                    alm_device="cpu", alm_max_new_tokens=6, data_dir=str(tmp_path / "data"))
    stack.start()
    url = stack.start_api()
    root = tmp_path / "root"
    stand_in_audio(root, ["a.wav"])
    key = create_key(f"t-{os.urandom(4).hex()}", audio_root=root)
    http = api_client(url, key)
    line = json.dumps({"custom_id": "q", "audio": "a.wav", "question": "What is heard?",
                       "choices": ["A tone", "A voice"]})

    cascade = wait_for(http, http.post("/v1/batches", json={"input": line, "pipeline": "cascade"}).json()["id"], ended)
    assert cascade["status"] == "completed" and cascade["pipeline"] == "cascade"
    assert [r["agent"] for r in scripted_llm.requests] == ["answerer"]  # no planner: no loop
    job = http.get(f"/v1/batches/{cascade['id']}/jobs").json()["data"][0]
    chain = http.get(f"/v1/jobs/{job['id']}/evidence").json()
    assert [t["tool"] for t in chain["iterations"][0]["tool_calls"]] == ["signal_facts", "voice_activity", "caption"]

    direct = wait_for(http, http.post("/v1/batches", json={"input": line, "pipeline": "direct"}).json()["id"], ended)
    assert direct["status"] == "completed", direct
    assert len(scripted_llm.requests) == 1  # the direct pipeline asks no reasoner
    job = http.get(f"/v1/batches/{direct['id']}/jobs").json()["data"][0]
    assert job["status"] == "succeeded" and job["raw_answer"]  # the ALM's own reply is the answer
    chain = http.get(f"/v1/jobs/{job['id']}/evidence").json()
    (call,) = chain["iterations"][0]["tool_calls"]
    assert call["tool"] == "audio_qa" and "A voice" in call["args"]["question"]
    assert call["text"] == job["raw_answer"]
