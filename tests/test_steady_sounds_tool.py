"""Steady sounds on speech with something beneath it: a tone is named with its frequency,
static is called broadband noise, and clean speech has neither."""

import json

import numpy as np
import pytest

from workers.method.perception.audio_io import AudioClip, load_audio
from workers.method.perception.tools import TOOLS

RATE = 16000


@pytest.fixture
def speech(devset) -> np.ndarray:
    meta = [json.loads(line) for line in (devset / "meta.jsonl").read_text().splitlines() if line.strip()]
    item = next(m for m in meta if m["id"] == "dev-city-00")
    return load_audio(devset / item["audio_path"]).waveform


def _run(waveform: np.ndarray, offset_s: float = 0.0):
    return TOOLS["steady_sounds"].run(AudioClip(waveform.astype(np.float32), RATE, "test", offset_s), {})


def test_a_tone_under_speech_is_named_with_its_frequency(speech):
    t = np.arange(len(speech)) / RATE
    result = _run(speech + 0.03 * np.sin(2 * np.pi * 1250 * t), offset_s=4.0)
    (tone, *_) = result.output["sustained_tones"]
    assert abs(tone["hz"] - 1250) <= 10 and tone["share"] >= 0.8
    assert "1250 Hz" in result.text
    assert result.output["start"] == 4.0  # absolute time of the window


def test_static_under_speech_is_broadband_noise(speech):
    noise = 0.02 * np.random.default_rng(0).standard_normal(len(speech))
    result = _run(speech + noise)
    assert result.output["background"]["kind"] == "broadband noise"
    assert result.output["sustained_tones"] == []


def test_clean_speech_has_no_tone_and_a_silent_floor(speech):
    result = _run(speech)
    assert result.output["sustained_tones"] == []
    assert result.output["background"]["kind"] == "near silence"
    assert "no sustained pitched sound" in result.text
