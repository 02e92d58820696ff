"""The voice-pitch and loudness tools on signals whose answers are known by construction."""

import numpy as np
import pytest

from workers.method.perception.audio_io import AudioClip
from workers.method.perception.tools import TOOLS

RATE = 16000


def _voice_like(f0: float, seconds: float, level: float = 0.2) -> np.ndarray:
    # A harmonic series with falling amplitudes: Praat's autocorrelation tracks its F0
    # as it does a voice's.
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    return (level * wave / np.max(np.abs(wave))).astype(np.float32)


def _run(tool: str, waveform: np.ndarray, offset_s: float = 0.0):
    return TOOLS[tool].run(AudioClip(waveform, RATE, "synthetic", offset_s), {})


@pytest.mark.parametrize("f0", [110.0, 210.0])
def test_voice_pitch_median_within_2_percent(f0):
    result = _run("voice_pitch", _voice_like(f0, 1.5))
    assert result.output["f0_median_hz"] == pytest.approx(f0, rel=0.02)
    assert f"median {result.output['f0_median_hz']} Hz" in result.text
    assert "woman" not in result.text and "man " not in result.text  # facts, never a gender


def test_voice_pitch_of_silence_says_so():
    result = _run("voice_pitch", np.zeros(RATE, dtype=np.float32))
    assert result.output["f0_median_hz"] is None
    assert "no voiced speech" in result.text


def test_loudness_tracks_level_and_finds_the_loud_part():
    t = np.arange(2 * RATE) / RATE
    quiet = (0.01 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    loud = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    quiet_lufs = _run("loudness", quiet).output["integrated_lufs"]
    loud_lufs = _run("loudness", loud).output["integrated_lufs"]
    assert loud_lufs - quiet_lufs == pytest.approx(20.0, abs=0.5)  # 10x amplitude = +20 dB

    out = _run("loudness", np.concatenate([quiet, loud, quiet]), offset_s=5.0).output
    assert 7.0 <= out["loudest"]["start"] < 9.0  # absolute time: the window began at 5 s
    assert out["loudest"]["rms_dbfs"] - out["quietest"]["rms_dbfs"] == pytest.approx(20.0, abs=1.0)


def test_loudness_of_a_very_short_clip_has_no_lufs_but_renders():
    result = _run("loudness", (0.1 * np.ones(RATE // 10)).astype(np.float32))
    assert result.output["integrated_lufs"] is None
    assert "too short or silent for LUFS" in result.text
