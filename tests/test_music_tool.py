"""The music tool on signals whose answers are known by construction: a click track's
tempo, two tones' pitches and order, a count of beeps, a chord's quality."""

import numpy as np
import pytest

from workers.method.perception.audio_io import AudioClip
from workers.method.perception.tools import TOOLS
from workers.method.reasoning import interaction

RATE = 16000


def _tone(freq: float, seconds: float, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.01)  # no clicks at the edges
    return (level * fade * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def _run(waveform: np.ndarray, offset_s: float = 0.0) -> dict:
    return TOOLS["music"].run(AudioClip(waveform, RATE, "synthetic", offset_s), {}).output


@pytest.mark.parametrize("bpm", [60, 90, 150])
def test_click_track_tempo_within_4_percent(bpm):
    period = 60.0 / bpm
    clicks = np.concatenate([np.concatenate([_tone(1500, 0.05), _silence(period - 0.05)]) for _ in range(16)])
    tempo = _run(clicks)["tempo"]
    assert tempo["bpm"] == pytest.approx(bpm, rel=0.04)


def test_two_tones_pitch_within_2_percent_in_order():
    audio = np.concatenate([_tone(330, 0.8), _silence(0.4), _tone(880, 0.8)])
    notes = _run(audio)["pitch_contour"]
    assert [n["f0_hz"] for n in notes] == [pytest.approx(330, rel=0.02), pytest.approx(880, rel=0.02)]
    assert notes[0]["end"] < notes[1]["start"]


@pytest.mark.parametrize("beeps", [1, 5, 7])
def test_beep_count_is_exact(beeps):
    gaps = [0.3, 0.5, 0.35, 0.6, 0.4, 0.45, 0.3]  # irregular, as real beeps are
    audio = np.concatenate([_silence(0.3)] + [np.concatenate([_tone(880, 0.25), _silence(gaps[i])]) for i in range(beeps)])
    assert len(_run(audio)["bursts"]) == beeps


@pytest.mark.parametrize(("root_hz", "third", "quality"), [(220.0, 4, "major"), (220.0, 3, "minor"), (261.63, 3, "minor")])
def test_chord_quality(root_hz, third, quality):
    semitone = 2 ** (1 / 12)
    chord = sum(_tone(root_hz * semitone**i, 2.0, 0.15) for i in (0, third, 7))
    assert _run(chord)["chord"]["quality"] == quality


def test_times_are_absolute_in_a_window():
    # A clip that is the window [10, 12] s of a file reports times from the file's start.
    audio = np.concatenate([_silence(0.5), _tone(440, 1.0), _silence(0.5)])
    out = _run(audio, offset_s=10.0)
    assert (out["start"], out["end"]) == (10.0, 12.0)
    assert out["bursts"][0]["start"] == pytest.approx(10.5, abs=0.05)
    assert out["pitch_contour"][0]["start"] == pytest.approx(10.5, abs=0.1)


def test_silence_has_no_music_facts_and_renders():
    result = TOOLS["music"].run(AudioClip(_silence(1.0), RATE, "synthetic"), {})
    assert result.output["bursts"] == [] and result.output["pitch_contour"] == []
    assert "0 separate sound burst(s)" in result.text


def test_every_tool_module_reaches_the_interaction_agent():
    tools = list(TOOLS.values())
    offered = interaction.schema(tools)["properties"]["calls"]["items"]["properties"]["tool"]["enum"]
    assert {"music", "signal_facts", "transcription", "caption", "audio_qa", "re_caption"} <= set(offered)
    prompt = interaction.messages("q?", ["a", "b"], "doc", [], tools)[1]["content"]
    assert "- music: Tempo (BPM)" in prompt
