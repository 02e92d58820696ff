"""Sound-event tagging with the real quantized YAMNet: shapes of its input, and tags on
real recordings of the devset (speech, a piano chord, beeps)."""

import json

import numpy as np
import pytest

from workers.method.perception.audio_io import AudioClip, load_audio
from workers.method.perception.tools import TOOLS
from workers.method.perception.tools.sound_events.backend import log_mel_patches, merge_events

RATE = 16000


def test_patches_cover_the_clip_every_0_48_s():
    # 3 s: 297 frames of 10 ms (25 ms windows, not centred) -> patches at frames 0, 48, ... 192.
    assert log_mel_patches(np.zeros(3 * RATE, dtype=np.float32) + 0.01).shape == (5, 1, 96, 64)
    assert log_mel_patches(np.zeros(RATE // 10, dtype=np.float32)).shape == (1, 1, 96, 64)  # padded


def test_consecutive_windows_merge_into_one_event():
    windows = [
        {"start": 0.0, "end": 0.96, "labels": [{"label": "Speech", "score": 0.9}]},
        {"start": 0.48, "end": 1.44, "labels": [{"label": "Speech", "score": 0.95}, {"label": "Dog", "score": 0.4}]},
        {"start": 0.96, "end": 1.92, "labels": [{"label": "Dog", "score": 0.5}]},
    ]
    events = {e["label"]: e for e in merge_events(windows)}
    assert (events["Speech"]["start"], events["Speech"]["end"], events["Speech"]["max_score"]) == (0.0, 1.44, 0.95)
    assert (events["Dog"]["start"], events["Dog"]["end"], events["Dog"]["windows"]) == (0.48, 1.92, 2)


def _devset_item(devset, prefix):
    lines = [json.loads(line) for line in (devset / "meta.jsonl").read_text().splitlines() if line.strip()]
    return next(item for item in lines if item["id"].startswith(prefix))


@pytest.mark.parametrize(("prefix", "expected"), [
    ("dev-spoken_number", "Speech"),
    ("dev-chord_quality", "Music"),
    ("dev-beep_count", "Beep, bleep"),
])
def test_real_recordings_get_their_obvious_tag(devset, prefix, expected):
    clip = load_audio(devset / _devset_item(devset, prefix)["audio_path"])
    result = TOOLS["sound_events"].run(clip, {})
    assert expected in {e["label"] for e in result.output["events"]}, result.text
    assert result.text.startswith("sound events (YAMNet): ")


def test_speech_is_tagged_over_the_whole_utterance_with_absolute_times(devset):
    clip = load_audio(devset / _devset_item(devset, "dev-city")["audio_path"])
    windowed = AudioClip(clip.waveform, clip.sample_rate, clip.source, offset_s=20.0)
    speech = next(e for e in TOOLS["sound_events"].run(windowed, {}).output["events"] if e["label"] == "Speech")
    assert speech["max_score"] > 0.9
    assert speech["start"] == 20.0 and speech["end"] >= 20.0 + 0.8 * clip.duration_s
