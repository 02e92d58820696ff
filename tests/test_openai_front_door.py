"""The OpenAI-compatible front door, driven by the official `openai` package against the
service as `agr up` runs it (the API, a Celery worker per queue and the sweeper, on the
test's Postgres and Redis, with a scripted OpenAI-compatible reasoner): models, chat
completions with audio in each shape harnesses send it, a retry attaching to its job,
streaming, the Files and Batch APIs, refusals, and lmms-eval's exact MMAR request.

One `agr up` serves the whole module (started once: the suite's time is a budget), and
the module ends by stopping it with Ctrl-C, as a user would."""

import base64
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import psutil
import pytest
import redis
from sqlalchemy import func, select

from models import Batch, Job, LLMCall
from models.batch import BatchInterface
from models.db import session_scope
from tests.conftest import BROKER_URL, SHARED, _cancel_earlier_tests_unfinished_jobs
from tests.scripted_llm import ScriptedLLM
from tests.stack import FAST_DURABILITY, _free_port, tone_wav

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
def served(database_url, tmp_path_factory):
    """`agr up` on the test's services."""
    tmp = tmp_path_factory.mktemp("front-door")
    _cancel_earlier_tests_unfinished_jobs()
    broker = redis.Redis.from_url(BROKER_URL)
    broker.flushdb()
    from workers.sweeper import BROKER_MARKER_KEY

    broker.set(BROKER_MARKER_KEY, "1")
    llm, gate = ScriptedLLM(), _Gate()
    llm.default_replies["answerer"] = gate.reply
    remote = _AudioServer(tmp / "remote")
    port = _free_port()
    env = {**os.environ, **FAST_DURABILITY, "AGR_DATABASE_URL": database_url, "AGR_BROKER_URL": BROKER_URL,
           "AGR_LLM_BASE_URL": llm.base_url, "AGR_COARSE_TOOLS": '["signal_facts", "voice_activity"]',
           "AGR_DATA_DIR": str(tmp / "data"), "AGR_MAX_AUDIO_BYTES": str(AUDIO_LIMIT),
           "AGR_MODEL_ALIASES": json.dumps({MODEL_ALIAS: "cascade"}),
           "AGR_AUDIO_URL_ALLOWLIST": json.dumps([f"{remote.url}/allowed/"]), "COLUMNS": "300"}
    up = subprocess.Popen([sys.executable, "-m", "api.cli", "up", "--port", str(port)], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    printed = _lines_until(up, "OPENAI_API_KEY=", timeout=300)
    base_url, key = re.search(r"OPENAI_BASE_URL=(\S+) OPENAI_API_KEY=(\S+)", printed).groups()
    assert base_url == f"http://127.0.0.1:{port}/v1"
    yield Served(base_url, key, llm, gate, tmp, remote.url)
    gate.open.set()
    children = psutil.Process(up.pid).children(recursive=True)
    up.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = up.communicate(timeout=120)
    assert up.returncode == 0, out
    assert "stopped" in out
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], \
        "Ctrl-C left processes of agr up running"
    remote.close()
    llm.close()


def _lines_until(process: subprocess.Popen, marker: str, timeout: float) -> str:
    seen, found = [], threading.Event()

    def read():
        for line in process.stdout:
            seen.append(line)
            if marker in line:
                break
        found.set()  # the marker, or the end of its output (it exited)

    threading.Thread(target=read, daemon=True).start()
    if not found.wait(timeout) or marker not in "".join(seen):
        process.kill()
        raise AssertionError("agr up printed no key:\n" + "".join(seen))
    return "".join(seen)


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
    assert "2.5 s" in reply.choices[0].message.reasoning_content
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
