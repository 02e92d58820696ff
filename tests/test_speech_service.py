"""Speech recognition as a service (AGR_ASR_BASE_URL): a real `transformers serve` with a
tiny random Whisper answers /v1/audio/transcriptions through the stack; it refuses the
timestamp request, so the evidence says the text is not placed in time.

Word timestamps need a server that gives them (vLLM's verbose_json does; transformers serve
returns text only), and none that does installs here: that part is checked against a
stand-in answering the documented verbose_json shape (segments with start, end and text;
words with word, start and end), which also records what it was asked."""

import json
import threading
from collections import defaultdict
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from models import ToolCall
from models.db import session_scope
from tests import children
from tests.engines import start_transformers_serve
from tests.stack import question_item
from tests.tiny_models import build_tiny_whisper

SPOKEN = ("dev-spoken_number-00", "dev-spoken_number-01")


@pytest.fixture(scope="module")
def whisper_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper")
    served = start_transformers_serve(build_tiny_whisper(folder / "tiny-whisper"), folder)
    yield served
    children.stop(served.process)


def test_transcription_goes_to_the_service_and_says_when_it_gives_no_timestamps(
        whisper_server, stack, scripted_llm, devset):
    stack.configure(llm_base_url=scripted_llm.base_url, coarse_tools='["voice_activity", "transcription"]',
                    asr_base_url=whisper_server.url, asr_model=whisper_server.model)
    stack.start()
    items = [question_item(name, devset / "audio" / f"{name}.wav") for name in SPOKEN]
    batch_id = stack.submit(items, max_iters=1)
    stack.wait_for_batch(batch_id, timeout=300)

    for job in stack.jobs(batch_id):
        assert job.status == "succeeded", stack.job_summary(batch_id)
        with session_scope() as session:
            call = session.scalar(select(ToolCall).where(ToolCall.job_id == job.id, ToolCall.tool == "transcription"))
        assert call.error is None and call.model == f"{whisper_server.url}#{whisper_server.model}"
        duration = sf.info(str(devset / "audio" / f"{job.custom_id}.wav")).duration
        (segment,) = call.output["segments"]
        assert call.output["timestamps"] == "none" and segment["text"]
        assert (segment["start"], segment["end"]) == (0.0, round(duration, 2))
        assert "gave no timestamps" in call.text
    # The refusal of timestamp_granularities is learned once by the worker: one 422, then text only.
    assert whisper_server.requests("audio/transcriptions") == [422, 200, 200]


class _VerboseTranscriptions(BaseHTTPRequestHandler):
    """POST /v1/audio/transcriptions answered as OpenAI documents verbose_json."""

    asked: list[dict] = []

    def do_POST(self):
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        form = BytesParser(policy=default).parsebytes(head + self.rfile.read(int(self.headers["Content-Length"])))
        fields = defaultdict(list)
        for part in form.iter_parts():
            value = part.get_payload(decode=True)
            fields[part.get_param("name", header="content-disposition")].append(
                len(value) if part.get_filename() else value.decode())
        self.asked.append(dict(fields))
        body = json.dumps({"task": "transcribe", "language": "english", "duration": 2.0, "text": "hello there world",
                           "segments": [{"id": 0, "start": 0.0, "end": 1.0, "text": " hello there"},
                                        {"id": 1, "start": 1.0, "end": 2.0, "text": " world"}],
                           "words": [{"word": "hello", "start": 0.1, "end": 0.4}, {"word": "there", "start": 0.5,
                                                                                    "end": 0.9},
                                     {"word": "world", "start": 1.2, "end": 1.7}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_word_timestamps_are_asked_for_and_placed_in_absolute_time():
    from workers.method.perception.tools.transcription.service import SpeechService

    server = ThreadingHTTPServer(("127.0.0.1", 0), _VerboseTranscriptions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        service = SpeechService(f"http://127.0.0.1:{server.server_port}/v1", "whisper-large-v3")
        result = service.transcribe(np.zeros(32000, np.float32), offset_s=10.0)
    finally:
        server.shutdown()
    (asked,) = _VerboseTranscriptions.asked
    assert asked["model"] == ["whisper-large-v3"] and asked["response_format"] == ["verbose_json"]
    assert sorted(asked["timestamp_granularities[]"]) == ["segment", "word"] and asked["file"][0] > 44
    assert result["timestamps"] == "words"
    assert [(s["start"], s["end"], s["text"]) for s in result["segments"]] == [(10.0, 11.0, "hello there"),
                                                                               (11.0, 12.0, "world")]
    assert [[w["word"] for w in s["words"]] for s in result["segments"]] == [["hello", "there"], ["world"]]
    assert result["segments"][1]["words"][0] == {"start": 11.2, "end": 11.7, "word": "world"}
