"""Speech recognition where it belongs (issue 16): on a CPU-only machine transcription is a
CPU tool, run by the CPU step so the GPU queue never receives it; on CUDA a GPU tool whose
calls of several jobs are decoded together; and the language is the model's detection,
never a hard-coded "en". This machine has no GPU: the CUDA path's routing and naming are
checked through the setting, its batched decode on the CPU model."""

import hashlib
import json
import shutil
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from core.cuda import cuda_visible
from core.settings import get_settings
from models import AudioAsset, Batch, BatchStatus, Job, JobStatus, Step, StepKind
from models.db import session_scope
from workers.method.perception import catalogue
from workers.method.perception.audio_io import AudioClip, load_audio
from workers.method.perception.tools import TOOLS, PlannedCall
from workers.method.perception.tools.base import calls_as_json

SPEECH = ("dev-spoken_number-00", "dev-spoken_number-01", "dev-city-00")


@pytest.fixture
def asr_device(monkeypatch):
    """Set AGR_ASR_DEVICE for this test (the settings are read again)."""

    def set_to(value: str) -> None:
        monkeypatch.setenv("AGR_ASR_DEVICE", value)
        get_settings.cache_clear()

    yield set_to
    monkeypatch.delenv("AGR_ASR_DEVICE", raising=False)
    get_settings.cache_clear()


@pytest.fixture
def speech_paths(devset):
    meta = {m["id"]: m for m in map(json.loads, (devset / "meta.jsonl").read_text().splitlines())}
    return [devset / meta[name]["audio_path"] for name in SPEECH]


@pytest.fixture
def recognizer():
    from workers.method.perception.loaded_models import speech_recognizer

    return speech_recognizer()  # this process's: tiny.en on the CPU here


def test_on_a_cpu_only_machine_transcription_is_a_cpu_tool(asr_device):
    asr_device("auto")  # the default
    assert get_settings().asr_device == "auto"
    tool = TOOLS["transcription"]
    assert (tool.device, tool.model_name()) == ("cpu", "faster-whisper/tiny.en")
    entry = catalogue.current().tool("transcription")  # what the API stores with a job
    assert (entry.device, entry.model) == ("cpu", "faster-whisper/tiny.en")
    assert not cuda_visible()  # this machine has no NVIDIA GPU


def test_on_cuda_transcription_is_a_gpu_tool_with_its_own_model_name(asr_device):
    asr_device("cuda")
    tool = TOOLS["transcription"]
    assert (tool.device, tool.model_name()) == ("gpu", "faster-whisper/tiny.en@cuda-float16")
    assert catalogue.current().tool("transcription").device == "gpu"
    assert tool.run_batch is not None  # the GPU step batches its calls across jobs
    asr_device("cpu")
    assert (tool.device, tool.model_name()) == ("cpu", "faster-whisper/tiny.en")


def _transcription_job(speech_path, tmp_path) -> SimpleNamespace:
    """A job whose coarse round is one transcription call, planned with this process's
    catalogue as the API would, and its first step's claim."""
    from storage.factory import audio_store

    data = speech_path.read_bytes()
    sha = hashlib.sha256(data + uuid.uuid4().bytes).hexdigest()  # no earlier test's cache hit
    staged = tmp_path / "speech.wav"
    shutil.copyfile(speech_path, staged)
    audio_store().put(sha, staged)
    tools = catalogue.current()
    calls = [tools.call("transcription", {})]
    with session_scope() as session:
        catalogue.store(session, tools)
        audio = AudioAsset(sha256=sha, bytes=len(data), format="wav", duration_s=10.0, sample_rate=16000, channels=1)
        batch = Batch(name="asr-routing", status=BatchStatus.IN_PROGRESS)
        session.add_all([audio, batch])
        session.flush()
        job = Job(batch_id=batch.id, custom_id="speech", audio_id=audio.id, question="what code?",
                  status=JobStatus.IN_PROGRESS, catalogue_version=tools.version)
        session.add(job)
        session.flush()
        step = Step(job_id=job.id, iteration=0, kind=StepKind.PERCEIVE_CPU, calls=calls_as_json(calls))
        session.add(step)
        session.flush()
        return SimpleNamespace(step_id=step.id, job_id=job.id, iteration=0, kind=StepKind.PERCEIVE_CPU, attempt=1)


def test_the_cpu_step_runs_transcription_and_hands_nothing_to_the_gpu_queue(database_url, asr_device,
                                                                           speech_paths, tmp_path):
    """The round of a job whose coarse plan has transcription closes in its CPU step: no
    GPU step follows (on the old code, where transcription was a GPU tool, it did)."""
    from workers.method.steps import perceive_cpu
    from workers.method.steps.perception_round import Round

    asr_device("auto")
    claim = _transcription_job(speech_paths[1], tmp_path)
    assert not Round(claim).has_gpu_calls
    result = perceive_cpu.execute(claim)
    assert result.written is not None  # the round is closed here: no PERCEIVE_GPU step
    (row,) = result.tool_calls
    assert (row["tool"], row["device"], row["model"]) == ("transcription", "cpu", "faster-whisper/tiny.en")
    assert "repeat" in row["text"].lower()  # "... code is 792, I repeat 792": a clear sentence of the clip
    assert row["output"]["language"] == "en"  # detected: tiny.en is English-only


def test_a_cpu_worker_refuses_a_transcription_planned_for_cuda(database_url, asr_device, speech_paths, tmp_path):
    """An API that resolved cuda and a CPU worker that resolves cpu disagree: the worker
    refuses the call by its model name, loudly, instead of transcribing with another model."""
    from workers.method.steps import perceive_cpu
    from workers.method.steps.perception_round import ToolUnavailableError

    asr_device("cuda")
    claim = _transcription_job(speech_paths[0], tmp_path)
    asr_device("cpu")
    with pytest.raises(ToolUnavailableError, match="tiny.en@cuda-float16"):
        perceive_cpu.execute(claim)


class _FakeWhisper:
    """A multilingual WhisperModel's interface, answering in Chinese; it records the
    language it was asked for."""

    def __init__(self):
        self.model = SimpleNamespace(is_multilingual=True)
        self.asked_language = "unset"

    def transcribe(self, _waveform, language=None, **_options):
        self.asked_language = language
        word = SimpleNamespace(start=0.2, end=0.9, word="你好")
        segment = SimpleNamespace(start=0.2, end=0.9, text=" 你好", words=[word])
        return iter([segment]), SimpleNamespace(language="zh", language_probability=0.93)


def test_the_language_is_the_models_detection_not_a_hard_coded_english(monkeypatch):
    from workers.method.perception import loaded_models
    from workers.method.perception.tools.transcription import whisper as asr

    recognizer = asr.SpeechRecognizer.__new__(asr.SpeechRecognizer)
    recognizer._model = fake = _FakeWhisper()
    monkeypatch.setattr(loaded_models, "speech_recognizer", lambda: recognizer)
    result = TOOLS["transcription"].run(AudioClip(np.zeros(16000, np.float32), 16000, "zh.wav", 3.0), {})
    assert fake.asked_language is None  # detect it
    assert (result.output["language"], result.output["language_probability"]) == ("zh", 0.93)
    assert result.text.splitlines() == ["language: zh (p=0.93)", "[3.2-3.9s] 你好"]


def test_an_english_only_model_detects_english_and_says_nothing_of_it(recognizer, speech_paths):
    clip = load_audio(speech_paths[1])
    result = TOOLS["transcription"].run(clip, {})
    assert (result.output["language"], result.output["multilingual"]) == ("en", False)
    assert "repeat" in result.text.lower() and "language:" not in result.text


def test_clips_of_several_jobs_decoded_together_read_as_each_alone(recognizer, speech_paths):
    clips = [(load_audio(path).waveform, 2.0 * n) for n, path in enumerate(speech_paths)]
    together = recognizer.transcribe_many(clips)
    alone = [recognizer.transcribe_many([clip])[0] for clip in clips]
    assert [[s["text"] for s in r["segments"]] for r in together] == [[s["text"] for s in r["segments"]] for r in alone]
    assert [[w["word"] for s in r["segments"] for w in s["words"]] for r in together] == \
        [[w["word"] for s in r["segments"] for w in s["words"]] for r in alone]
    assert "repeat" in " ".join(s["text"] for s in together[1]["segments"]).lower()
    assert together[2]["segments"][0]["start"] >= 4.0  # absolute times: the third clip starts at 4 s
    assert {r["language"] for r in together} == {"en"}


def test_one_jobs_bad_audio_fails_only_its_own_call_in_a_gpu_batch(recognizer, speech_paths):
    """The GPU step's compute with transcription's batch runner: the clip that breaks the
    decode fails its own job's step; its batch-mates' results are kept."""
    from workers.method.steps.perceive_gpu import GpuBatch, PendingCall, compute

    good = load_audio(speech_paths[1])
    bad = AudioClip(np.full(16000, np.nan, np.float32), 16000, "broken.wav", 0.0)
    call = PlannedCall("transcription", {})
    pending = [PendingCall(step_id, None, 0, call) for step_id in (1, 2, 3)]
    batch = GpuBatch([], {}, {}, [], [[(pending[0], good), (pending[1], bad), (pending[2], good)]])
    (chunk,) = compute(batch)
    assert [p.step_id for p in chunk.calls] == [1, 3]
    assert all("repeat" in r.text.lower() for r in chunk.results)
    assert list(batch.outcomes) == [2] and "non-finite" in str(batch.outcomes[2])
