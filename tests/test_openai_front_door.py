"""The OpenAI-compatible front door, driven by the official `openai` package against the
service as `agr up` runs it (the API, a Celery worker per queue and the sweeper, on the
test's Postgres and Redis, with a scripted OpenAI-compatible reasoner): models, chat
completions with audio in each shape harnesses send it, a retry attaching to its job,
streaming, the Files and Batch APIs, refusals, and lmms-eval's exact MMAR request.

One `agr up` serves the whole module (started once: the suite's time is a budget), and
the module ends by stopping it with Ctrl-C, as a user would (started with SIGINT at its
default, as from a terminal, whatever the suite inherited)."""

import base64
import io
import json
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from sqlalchemy import func, select

from local_stack import processes
from models import Batch, Job, LLMCall
from models.batch import BatchInterface
from models.db import session_scope
from tests import children
from tests.conftest import SHARED, fresh_broker
from tests.scripted_llm import ScriptedLLM
from tests.stack import FAST_DURABILITY, _free_port, agr_command, tone_wav

AUDIO_LIMIT = 2_000_000  # AGR_MAX_AUDIO_BYTES for this service: a 3 MB part is "huge"
LENGTHS = {"about one second": 1.0, "about two and a half seconds": 2.5, "about four seconds": 4.0}
MODEL_ALIAS = "gpt-4o-audio-preview"  # lmms-eval's and VoiceBench's fixed model name


def answer_from_evidence(body: dict):
    """The scripted answerer reads the clip's duration out of the evidence document in its
    prompt and answers with the choice nearest it (or, for an open question, says it):
    a right answer shows the evidence reached the agent."""
    prompt = body["messages"][-1]["content"]
    document = prompt.split("Evidence document", 1)[1]
    seconds = float(re.search(r"duration ([\d.]+) s", document).group(1))
    choices = re.findall(r"^- (.+)$", prompt.split("Evidence document", 1)[0], re.MULTILINE)
    answer = min(choices, key=lambda c: abs(LENGTHS.get(c, 99) - seconds)) if choices else f"{seconds:g} seconds"
    return {"reasoning": f"the evidence says the clip lasts {seconds:g} s", "answer": answer, "confidence": 0.9}


class _Gate:
    """Holds the answerer's replies to questions naming `word` until released."""

    def __init__(self):
        self.word, self.open = None, threading.Event()

    def reply(self, body: dict):
        if self.word and self.word in body["messages"][-1]["content"]:
            self.open.wait(timeout=300)
        return answer_from_evidence(body)


@dataclass
class Served:
    base_url: str  # what OPENAI_BASE_URL is set to
    key: str
    llm: ScriptedLLM
    gate: _Gate
    tmp: Path
    remote_url: str  # the allow-listed server of clips

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=None)


@pytest.fixture(scope="module")
def served(module_services, tmp_path_factory):
    """`agr up` on the module's services."""
    tmp = tmp_path_factory.mktemp("front-door")
    database_url, broker_url = module_services.database_url, fresh_broker(module_services.broker_url)
    llm, gate = ScriptedLLM(), _Gate()
    llm.default_replies["answerer"] = gate.reply
    remote = _AudioServer(tmp / "remote")
    port = _free_port()
    env = {**os.environ, **FAST_DURABILITY, "AGR_DATABASE_URL": database_url, "AGR_BROKER_URL": broker_url,
           "AGR_LLM_BASE_URL": llm.base_url, "AGR_COARSE_TOOLS": '["signal_facts", "voice_activity"]',
           "AGR_DATA_DIR": str(tmp / "data"), "AGR_MAX_AUDIO_BYTES": str(AUDIO_LIMIT),
           "AGR_MODEL_ALIASES": json.dumps({MODEL_ALIAS: "cascade"}),
           "AGR_AUDIO_URL_ALLOWLIST": json.dumps([f"{remote.url}/allowed/"]), "COLUMNS": "300"}
    up = children.start(agr_command("up", "--port", str(port)), env, sigint="default",  # a terminal's Ctrl-C reaches it
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        printed = children.read_until(up, "OPENAI_API_KEY=", timeout=300)
        base_url, key = re.search(r"OPENAI_BASE_URL=(\S+) OPENAI_API_KEY=(\S+)", printed).groups()
        assert base_url == f"http://127.0.0.1:{port}/v1"
        yield Served(base_url, key, llm, gate, tmp, remote.url)
    finally:
        gate.open.set()
        started = psutil.Process(up.pid).children(recursive=True)
        how = children.stop(up, first=signal.SIGINT)  # Ctrl-C, then escalation if it is not obeyed
        remote.close()
        llm.close()
    out = up.stdout.read()
    assert how == "SIGINT", f"Ctrl-C did not stop agr up: it took {how}\n{out}"
    assert up.returncode == 0, out
    assert "stopped" in out
    assert not [p for p in started if processes.is_alive(p)], \
        "Ctrl-C left processes of agr up running"


class _AudioServer:
    """A plain HTTP server of clips, for the operator's allow-listed URL prefix."""

    def __init__(self, root: Path):
        (root / "allowed").mkdir(parents=True)
        self.root = root
        handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base_url, api_key=served.key, max_retries=0, timeout=300)


def _clip(tmp: Path, seconds: float, name: str) -> bytes:
    return tone_wav(tmp / f"{name}.wav", seconds=seconds).read_bytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _mc(question: str = "How long is the clip?") -> str:
    return f"{question}\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(LENGTHS)) + \
        "\nAnswer with the option's letter."


def _chat_batches() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Batch).where(Batch.interface == BatchInterface.CHAT))


def _evidence(served: Served, job_id: str) -> dict:
    with served.http() as http:
        reply = http.get(f"/jobs/{job_id}/evidence")
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_models_and_a_chat_completion_with_input_audio_answer_from_the_evidence(served, client):
    assert {"agr", "cascade", "direct", MODEL_ALIAS} <= {m.id for m in client.models.list()}
    assert client.models.retrieve("agr").id == "agr"
    with pytest.raises(openai.NotFoundError) as unknown:
        client.models.retrieve("gpt-5-audio")
    assert unknown.value.body["code"] == "model_not_found"

    audio = _clip(served.tmp, 2.5, "input-audio")
    raw = client.chat.completions.with_raw_response.create(
        model="agr", extra_body={"modalities": ["text"]}, temperature=0, max_tokens=128,
        messages=[{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": _b64(audio), "format": "wav"}},  # audio first
            {"type": "text", "text": _mc()}]}])
    reply = raw.parse()
    job_id = raw.headers["x-agr-job-id"]
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == "about two and a half seconds"  # the verbatim choice, not "B"
    reasoning = reply.choices[0].message.reasoning_content  # the job's trace, then the answerer's reasoning
    assert reasoning.startswith("coarse document: perception ran signal_facts, voice_activity\n")
    assert reasoning.endswith("\nthe evidence says the clip lasts 2.5 s")
    assert reply.usage.total_tokens > 0 and reply.usage.prompt_tokens > 0
    assert reply.agr["job_id"] == job_id
    chain = _evidence(served, job_id)
    assert chain["job"]["question"] == "How long is the clip?"
    assert chain["job"]["choices"] == list(LENGTHS)
    assert "duration 2.5 s" in chain["iterations"][0]["document"]
    assert [c["agent"] for i in chain["iterations"] for c in i["llm_calls"]] == ["planner", "answerer"]
    with session_scope() as session:  # usage is the sum over the job's LLM calls
        tokens = session.scalar(select(func.sum(LLMCall.prompt_tokens + LLMCall.completion_tokens))
                                .where(LLMCall.job_id == job_id))
    assert reply.usage.total_tokens == tokens


def test_audio_url_a_system_message_an_upload_and_an_allowed_url(served, client):
    data_url = "data:audio/wav;base64," + _b64(_clip(served.tmp, 1.0, "audio-url"))
    open_reply = client.chat.completions.create(model="cascade", messages=[
        {"role": "system", "content": "You are a helpful assistant who answers questions about audio."},
        {"role": "user", "content": [{"type": "text", "text": "How long does the sound last?"},
                                     {"type": "audio_url", "audio_url": {"url": data_url}}]}])
    assert open_reply.choices[0].message.content == "1 seconds"  # no choices: the free answer
    chain = _evidence(served, open_reply.agr["job_id"])
    assert chain["job"]["choices"] == [] and chain["job"]["question"] == "How long does the sound last?"

    with served.http() as http:
        uploaded = http.post("/audio", files={"file": ("four.wav", _clip(served.tmp, 4.0, "upload"))}).json()
    by_upload = client.chat.completions.create(model="cascade", messages=[{"role": "user", "content": [
        {"type": "file", "file": {"file_id": uploaded["id"]}}, {"type": "text", "text": _mc("How long?")}]}])
    assert by_upload.choices[0].message.content == "about four seconds"

    tone_wav(served.tmp / "remote" / "allowed" / "clip.wav", seconds=1.0)
    by_url = client.chat.completions.create(model="cascade", messages=[{"role": "user", "content": [
        {"type": "audio_url", "audio_url": {"url": f"{served.remote_url}/allowed/clip.wav"}},
        {"type": "text", "text": _mc()}]}])
    assert by_url.choices[0].message.content == "about one second"


def test_the_same_request_sent_again_while_it_runs_attaches_to_its_job(served, client):
    served.gate.word, served.gate.open = "retried", threading.Event()
    messages = [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": _b64(_clip(served.tmp, 4.0, "retried")), "format": "wav"}},
        {"type": "text", "text": _mc("How long is the retried clip?")}]}]
    first: dict = {}
    sent = threading.Thread(target=lambda: first.update(
        reply=client.chat.completions.create(model="agr", messages=messages)))
    sent.start()
    _until(lambda: any("retried" in r["body"]["messages"][-1]["content"] for r in served.llm.requests_of("answerer")))
    with session_scope() as session:  # the first is running: its answer is being written
        job = session.scalars(select(Job).where(Job.question == "How long is the retried clip?")).one()
        assert not job.status.is_terminal
    # A harness that timed out sends the same request again: the gate opens meanwhile.
    threading.Timer(1.0, served.gate.open.set).start()
    again = client.chat.completions.create(model="agr", messages=messages)
    sent.join(timeout=300)
    assert again.agr["job_id"] == first["reply"].agr["job_id"] == str(job.id)
    assert again.choices[0].message.content == first["reply"].choices[0].message.content == "about four seconds"
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.question == "How long is the retried clip?")) == 1
    answered = [r for r in served.llm.requests_of("answerer") if "retried" in r["body"]["messages"][-1]["content"]]
    assert len(answered) == 1  # one job, one answer paid for


def test_identical_requests_sent_at_once_make_one_job(served, client):
    messages = [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": _b64(_clip(served.tmp, 1.0, "at-once")), "format": "wav"}},
        {"type": "text", "text": _mc("How long is the clip sent at once?")}]}]
    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: client.chat.completions.create(model="cascade", messages=messages), range(6)))
    assert len({r.agr["job_id"] for r in replies}) == 1
    assert {r.choices[0].message.content for r in replies} == {"about one second"}
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.question == "How long is the clip sent at once?")) == 1


def test_a_key_a_batch_holds_is_refused_for_a_chat_call(served, client):
    with served.http() as http:
        upload = http.post("/audio", files={"file": ("k.wav", _clip(served.tmp, 1.0, "shared-key"))}).json()
        line = json.dumps({"custom_id": "k", "audio": {"upload_id": upload["id"]}, "question": "What is heard?"})
        made = http.post("/batches", json={"input": line, "pipeline": "cascade"}, headers={"Idempotency-Key": "shared"})
        assert made.status_code == 201, made.text
    with pytest.raises(openai.ConflictError) as refused:
        client.chat.completions.create(model="cascade", extra_headers={"Idempotency-Key": "shared"}, messages=[
            {"role": "user", "content": [{"type": "file", "file": {"file_id": upload["id"]}}]}])
    assert refused.value.body["code"] == "idempotency_conflict"


def test_stream_sends_progress_then_the_answer(served, client):
    stream = client.chat.completions.create(model="agr", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": _b64(_clip(served.tmp, 1.0, "streamed")), "format": "wav"}},
        {"type": "text", "text": _mc("How long is the streamed clip?")}]}])
    chunks = list(stream)
    progress = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks
                       if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert progress.splitlines() == ["coarse document: perception ran signal_facts, voice_activity",
                                     "coarse document: the planning agent judged the evidence sufficient: "
                                     "the evidence answers it",
                                     "the answering agent answered from the evidence",
                                     "the evidence says the clip lasts 1 s"]  # as a reply's reasoning_content
    assert content == "about one second"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens > 0


def _batch_line(custom_id: str, audio: bytes, text: str | None, model: str = "cascade", **extra) -> dict:
    content = [{"type": "input_audio", "input_audio": {"data": _b64(audio), "format": "wav"}}]
    if text is not None:
        content.append({"type": "text", "text": text})
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": content}], **extra}}


def _file(client: openai.OpenAI, lines: list[dict]):
    text = "".join(json.dumps(line) + "\n" for line in lines)
    return client.files.create(file=("requests.jsonl", text.encode()), purpose="batch")


def _until(condition, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "never reached"
        time.sleep(0.2)


def _ended(client: openai.OpenAI, batch_id: str):
    _until(lambda: client.batches.retrieve(batch_id).status in ("completed", "failed", "cancelled", "expired"))
    return client.batches.retrieve(batch_id)


def test_a_batch_round_trip_through_the_files_and_batch_apis(served, client):
    tmp = served.tmp
    lines = [_batch_line("q-short", _clip(tmp, 1.0, "b1"), _mc(), temperature=0, max_tokens=128),
             _batch_line("q-long", _clip(tmp, 4.0, "b2"), _mc(), model="agr"),
             _batch_line("q-open", _clip(tmp, 2.5, "b3"), None)]  # audio only: an open question
    uploaded = _file(client, lines)
    assert client.files.retrieve(uploaded.id).bytes == uploaded.bytes > 0
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"run": "round-trip"})
    assert batch.status in ("validating", "in_progress") and batch.endpoint == "/v1/chat/completions"
    done = _ended(client, batch.id)
    assert done.status == "completed", done
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (3, 3, 0)
    assert done.created_at <= done.in_progress_at <= done.completed_at and done.completion_window == "24h"
    assert done.metadata == {"run": "round-trip"} and done.error_file_id is None
    assert batch.id in [b.id for b in client.batches.list()]
    output = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    by_id = {line["custom_id"]: line for line in output}
    assert set(by_id) == {"q-short", "q-long", "q-open"}
    for line in output:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        assert line["response"]["body"]["object"] == "chat.completion"
    answer = lambda cid: by_id[cid]["response"]["body"]["choices"][0]["message"]["content"]  # noqa: E731
    assert (answer("q-short"), answer("q-long"), answer("q-open")) == \
        ("about one second", "about four seconds", "2.5 seconds")
    assert by_id["q-long"]["response"]["body"]["model"] == "agr"
    # The same rows back our own views of it: its jobs, and the evidence of each.
    with served.http() as http:
        jobs = http.get(f"/batches/{batch.id}/jobs").json()["data"]
        native = http.get(f"/batches/{batch.id}", params={"view": "native"}).json()
    assert {j["custom_id"]: j["answer"] for j in jobs} == {cid: answer(cid) for cid in by_id}
    assert native["request_counts"]["completed"] == 3 and native["pipeline"] == "agr"
    assert _evidence(served, by_id["q-long"]["response"]["request_id"])["job"]["custom_id"] == "q-long"
    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted and client.batches.retrieve(batch.id).input_file_id is None


def test_a_bad_line_fails_the_batch_with_its_line_number(served, client):
    audio = _clip(served.tmp, 1.0, "bad-lines")
    lines = [_batch_line("fine", audio, _mc()), _batch_line("wrong-url", audio, _mc()),
             _batch_line("not-base64", audio, _mc()), _batch_line("unknown-model", audio, _mc(), model="gpt-9")]
    lines[1]["url"] = "/v1/embeddings"
    lines[2]["body"]["messages"][0]["content"][0]["input_audio"]["data"] = "this is not base64!"
    batch = client.batches.create(input_file_id=_file(client, lines).id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    failed = _ended(client, batch.id)
    assert failed.status == "failed" and failed.failed_at is not None
    errors = {e.line: e.message for e in failed.errors.data}
    assert set(errors) == {2, 3, 4}, errors
    assert "/v1/embeddings" in errors[2] and "base64" in errors[3] and "gpt-9" in errors[4]
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job).where(Job.batch_id == failed.id)) == 0


def test_cancel_keeps_the_lines_that_finished(served, client):
    served.gate.word, served.gate.open = "held", threading.Event()
    tmp = served.tmp
    lines = [_batch_line("done", _clip(tmp, 1.0, "c1"), _mc()),
             _batch_line("held", _clip(tmp, 4.0, "c2"), _mc("How long is the held clip?"))]
    batch = client.batches.create(input_file_id=_file(client, lines).id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
    _until(lambda: client.batches.retrieve(batch.id).request_counts.completed == 1)
    cancelled = client.batches.cancel(batch.id)
    assert cancelled.status in ("cancelling", "cancelled") and cancelled.cancelling_at is not None
    served.gate.open.set()
    ended = _ended(client, batch.id)
    assert ended.status == "cancelled" and ended.cancelled_at is not None
    output = [json.loads(x) for x in client.files.content(ended.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(ended.error_file_id).text.splitlines()]
    assert [(o["custom_id"], o["response"]["body"]["choices"][0]["message"]["content"]) for o in output] == \
        [("done", "about one second")]
    assert [(e["custom_id"], e["response"], e["error"]["code"]) for e in errors] == \
        [("held", None, "batch_cancelled")]


@pytest.mark.parametrize("change, status, code", [
    (lambda b: b["messages"][0]["content"][0]["input_audio"].update(data="%%% not base64 %%%"), 400,
     "invalid_audio_data"),
    (lambda b: b["messages"][0]["content"][0]["input_audio"].update(format="midi"), 400, "unsupported_audio_format"),
    (lambda b: b["messages"][0]["content"][0]["input_audio"].update(data=_b64(bytes(3_000_000))), 413,
     "audio_too_large"),
    (lambda b: b["messages"][0]["content"].__setitem__(0, {"type": "audio_url",
                                                           "audio_url": {"url": "https://example.com/a.wav"}}),
     400, "remote_url_not_allowed"),
    (lambda b: b.update(model="gpt-4o-mini"), 404, "model_not_found"),
    (lambda b: b["messages"][0]["content"].pop(0), 400, "missing_audio"),
    (lambda b: b["messages"][0]["content"][0]["input_audio"].update(data=_b64(b"RIFF....WAVEjunk")), 400,
     "invalid_audio_data"),
], ids=["not-base64", "unsupported-format", "huge-part", "remote-url", "unknown-model", "no-audio", "not-a-wav"])
def test_bad_requests_get_openai_errors_and_queue_nothing(served, client, change, status, code):
    body = {"model": "agr", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": _b64(_clip(served.tmp, 0.5, "refused")), "format": "wav"}},
        {"type": "text", "text": _mc()}]}]}
    change(body)
    before = _chat_batches()
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(**body)
    assert refused.value.status_code == status
    error = refused.value.body  # the SDK hands on the `error` object
    assert error["code"] == code and error["message"] and error["type"] in ("invalid_request_error",
                                                                            "not_found_error")
    assert _chat_batches() == before  # nothing queued


def test_lmms_eval_gpt4o_audio_request_for_an_mmar_item_byte_for_byte(served):
    """The body lmms-eval 0.7.3's `gpt4o_audio` model sends for its `mmar` task, rebuilt as
    its code builds it (lmms-eval itself does not install here): the audio part (a PCM-16
    WAV at the clip's rate, base64) then the text part, `modalities`, max_tokens 128 from
    the task, temperature 0.0 and top_p 1.0 from the task's generation_kwargs, the model
    name fixed to gpt-4o-audio-preview; keys in the order openai 3.x writes them, compact
    separators. Its MMAR prompt: an instruction, the question, the dataset's lettered
    choices ("A. ...") one per line, and "The best answer is:"."""
    meta = SHARED / "benchmarks" / "MMAR-meta.jsonl"
    if not meta.is_file():
        pytest.skip("../shared/benchmarks is not present")
    item = json.loads(meta.read_text().splitlines()[0])
    lettered = [f"{chr(65 + i)}. {c}" for i, c in enumerate(item["choices"])]
    prompt = ("Listen to the audio and answer the following multiple-choice question. Respond with only the "
              "letter (A, B, C, or D) of the correct option.\n" + item["question"] + "\n" + "\n".join(lettered)
              + "\n" + "The best answer is:").strip()
    wav = io.BytesIO()
    import soundfile as sf

    samples, rate = sf.read(str(tone_wav(served.tmp / "mmar.wav", seconds=1.0)), dtype="float32")
    sf.write(wav, samples, rate, format="WAV")
    body = {"model": MODEL_ALIAS, "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": _b64(wav.getvalue()), "format": "wav"}},
        {"type": "text", "text": prompt}]}], "max_tokens": 128, "modalities": ["text"], "temperature": 0.0,
        "top_p": 1.0}
    raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    with served.http() as http:
        reply = http.post("/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text
    completion = reply.json()
    assert completion["model"] == MODEL_ALIAS
    assert completion["choices"][0]["message"]["content"] in item["choices"]  # verbatim text, not a letter
    job = _evidence(served, reply.headers["x-agr-job-id"])["job"]
    assert job["choices"] == item["choices"]
    assert job["question"].endswith(item["question"])
    assert job["options"]["pipeline"] == "cascade"  # the operator's alias for that model name
    with served.http() as http:  # the same bytes again attach to the same job
        assert http.post("/chat/completions", content=raw,
                         headers={"Content-Type": "application/json"}).headers["x-agr-job-id"] == job["id"]


def test_past_the_ceiling_a_504_names_the_job_and_the_retry_attaches_to_it(served, client, module_services):
    """A second API process on the same services whose ceiling is 1 s: the held call ends
    with 504 and the job id; the job goes on, and the same request sent again (to the
    first API) waits for that job instead of making another."""
    from local_stack import processes

    served.gate.word, served.gate.open = "ceiling", threading.Event()
    port = _free_port()
    env = {"AGR_DATABASE_URL": module_services.database_url, "AGR_BROKER_URL": module_services.broker_url,
           "AGR_CHAT_TIMEOUT_S": "1",
           "AGR_COARSE_TOOLS": '["signal_facts", "voice_activity"]', "AGR_MAX_AUDIO_BYTES": str(AUDIO_LIMIT)}
    api = processes.start_api(env, served.tmp / "short-api.log", port)
    try:
        short = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=served.key, max_retries=0)
        assert processes.wait_until_serving(f"http://127.0.0.1:{port}/healthz", api, within_s=120)
        messages = [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": _b64(_clip(served.tmp, 1.0, "ceiling")), "format": "wav"}},
            {"type": "text", "text": _mc("How long is the ceiling clip?")}]}]
        with pytest.raises(openai.APIStatusError) as timed_out:
            short.chat.completions.create(model="cascade", messages=messages)
        job_id = timed_out.value.response.headers["x-agr-job-id"]
        assert timed_out.value.status_code == 504 and job_id in timed_out.value.body["message"]
    finally:
        processes.stop(api)
    served.gate.open.set()
    again = client.chat.completions.create(model="cascade", messages=messages)
    assert again.agr["job_id"] == job_id and again.choices[0].message.content == "about one second"
    # With an Idempotency-Key the key decides, not the body: the same body under a new key
    # is a new job, the key again is that job, and the key with another body a 409.
    keyed = client.chat.completions.create(model="cascade", messages=messages, extra_headers={"Idempotency-Key": "k-1"})
    assert keyed.agr["job_id"] != job_id
    assert client.chat.completions.create(model="cascade", messages=messages, extra_headers={
        "Idempotency-Key": "k-1"}).agr["job_id"] == keyed.agr["job_id"]
    with pytest.raises(openai.ConflictError):
        client.chat.completions.create(model="agr", messages=messages, extra_headers={"Idempotency-Key": "k-1"})

