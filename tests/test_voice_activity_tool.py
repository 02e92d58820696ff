"""Voice activity with the real Silero model: speech found where it is, not in tones."""

import json

import numpy as np

from workers.method.perception.audio_io import AudioClip, load_audio
from workers.method.perception.tools import TOOLS

RATE = 16000


def _speech_clip(devset):
    item = next(json.loads(line) for line in (devset / "meta.jsonl").read_text().splitlines()
                if line.strip() and json.loads(line)["id"].startswith("dev-city"))
    return load_audio(devset / item["audio_path"])


def test_speech_is_found_with_absolute_times(devset):
    clip = _speech_clip(devset)
    padded = np.concatenate([np.zeros(2 * RATE, dtype=np.float32), clip.waveform])  # 2 s of silence first
    out = TOOLS["voice_activity"].run(AudioClip(padded, RATE, "padded", offset_s=10.0), {}).output
    assert out["segments"], "no speech found in a spoken sentence"
    assert out["segments"][0]["start"] >= 11.8  # not before the silence ends (12 s absolute)
    assert out["speech_seconds"] >= 0.7 * clip.duration_s


def test_a_steady_tone_is_not_speech():
    t = np.arange(3 * RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    result = TOOLS["voice_activity"].run(AudioClip(tone, RATE, "tone"), {})
    assert result.output["segments"] == [] and result.output["speech_ratio"] == 0.0
    assert result.text == "no speech detected"
