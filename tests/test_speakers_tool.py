"""The speakers tool with the real resemblyzer encoder and Silero VAD, on devset voices:
dev-gender-00/01 are a woman's voice, dev-gender-02 a man's (espeak-ng)."""

import json

import numpy as np
import pytest

from workers.method.perception.audio_io import AudioClip, load_audio
from workers.method.perception.tools import TOOLS
from workers.method.perception.tools.speakers.backend import speech_windows

RATE = 16000
BOUNDARY_TOLERANCE_S = 0.75  # one hop of the sliding windows
pytestmark = pytest.mark.skipif(not TOOLS["speakers"].available(), reason="resemblyzer is not installed")


def _voice(devset, item_id: str) -> np.ndarray:
    items = [json.loads(line) for line in (devset / "meta.jsonl").read_text().splitlines() if line.strip()]
    return load_audio(devset / next(i for i in items if i["id"] == item_id)["audio_path"]).waveform


def _speech_only(waveform: np.ndarray) -> np.ndarray:
    """The clip without its leading and trailing silence, cut where the VAD tool says."""
    spans = TOOLS["voice_activity"].run(AudioClip(waveform, RATE, "trim"), {}).output["segments"]
    return waveform[int(spans[0]["start"] * RATE):int(spans[-1]["end"] * RATE)]


def _speakers(waveform: np.ndarray, offset_s: float = 0.0):
    return TOOLS["speakers"].run(AudioClip(waveform.astype(np.float32), RATE, "test", offset_s), {})


def test_windows_cover_a_segment_and_end_on_its_end():
    windows = speech_windows(2.0, 5.0)
    assert [(w.start, w.end) for w in windows] == [(2.0, 3.5), (2.75, 4.25), (3.5, 5.0)]
    assert windows[0].span_start == 2.0 and windows[-1].span_end == 5.0
    assert all(a.span_end == b.span_start for a, b in zip(windows, windows[1:]))  # no gaps
    assert [(w.start, w.end) for w in speech_windows(1.0, 1.6)] == [(1.0, 1.6)]  # short: one window


@pytest.mark.parametrize("item_id", ["dev-gender-00", "dev-gender-02", "dev-city-00", "dev-spoken_number-01"])
def test_one_voice_is_one_speaker(devset, item_id):
    result = _speakers(_voice(devset, item_id))
    assert result.output["speaker_count"] == 1, result.text
    assert {t["speaker"] for t in result.output["turns"]} == {"S1"}
    assert result.text.startswith("1 speaker ")


def test_two_voices_with_a_pause_are_two_speakers_at_absolute_times(devset):
    woman, man = _voice(devset, "dev-gender-00"), _voice(devset, "dev-gender-02")
    pause = np.zeros(RATE // 2, dtype=np.float32)
    result = _speakers(np.concatenate([woman, pause, man]), offset_s=30.0)
    out = result.output
    assert out["speaker_count"] == 2 and out["speaker_changes"] == 1, result.text
    first, second = out["turns"]
    assert (first["speaker"], second["speaker"]) == ("S1", "S2")
    man_starts = 30.0 + (len(woman) + len(pause)) / RATE  # absolute: the offset is added
    assert abs(second["start"] - man_starts) <= BOUNDARY_TOLERANCE_S
    assert first["start"] >= 30.0 and second["end"] <= 30.0 + (len(woman) + len(pause) + len(man)) / RATE
    assert out["start"] == 30.0


@pytest.mark.parametrize(("first_id", "second_id"),
                         [("dev-gender-00", "dev-gender-02"), ("dev-gender-02", "dev-gender-01")])
def test_a_change_of_voice_without_a_pause_is_found(devset, first_id, second_id):
    first, second = _speech_only(_voice(devset, first_id)), _speech_only(_voice(devset, second_id))
    result = _speakers(np.concatenate([first, second]))
    assert result.output["speaker_count"] == 2, result.text
    assert [t["speaker"] for t in result.output["turns"]] == ["S1", "S2"]
    assert abs(result.output["turns"][1]["start"] - len(first) / RATE) <= BOUNDARY_TOLERANCE_S


def test_a_voice_that_comes_back_is_the_same_speaker(devset):
    woman, man = _voice(devset, "dev-gender-01"), _voice(devset, "dev-gender-02")
    pause = np.zeros(RATE, dtype=np.float32)
    result = _speakers(np.concatenate([woman, pause, man, pause, woman]))
    assert result.output["speaker_count"] == 2, result.text
    assert [t["speaker"] for t in result.output["turns"]] == ["S1", "S2", "S1"]
    assert not any(word in result.text.lower() for word in ("woman", "female", "male", " man"))


@pytest.mark.parametrize("kind", ["silence", "tones"])
def test_no_speech_is_no_speakers(kind):
    t = np.arange(3 * RATE) / RATE
    audio = np.zeros_like(t) if kind == "silence" else 0.3 * np.sin(2 * np.pi * np.where(t < 1.5, 440, 880) * t)
    result = _speakers(audio)
    assert result.output["speaker_count"] == 0 and result.output["turns"] == []
    assert result.text == "no speech detected"


def test_the_registry_names_the_encoder_as_its_settings_say():
    """The registry's model name is part of every stored result's cache key and is read
    without loading the encoder: it must change when the windows or the threshold do."""
    from workers.method.perception.tools.speakers import MODEL_NAME
    from workers.method.perception.tools.speakers import backend as speakers

    assert speakers.SpeakerEncoder.name == MODEL_NAME
