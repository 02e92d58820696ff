"""The benches measure what they say they measure: bench/evidence_recall.py's "every
offline tool" is every tool but the audio-language models' tools, and a missing one
stops it rather than shrink the figure."""

import dataclasses

import pytest

from bench.evidence_recall import offline_tools
from workers.method.perception.tools import TOOLS


def test_every_offline_tool_is_measured_batched_ones_included():
    names = offline_tools()
    assert "transcription" in names and TOOLS["transcription"].run_batch is not None  # batched, still offline
    assert {"music", "sound_events", "speakers", "voice_activity"} <= set(names)
    assert not [n for n in names if n.startswith(("caption", "audio_qa", "re_caption", "audio_answer"))]


def test_an_offline_tool_missing_here_stops_the_bench(monkeypatch):
    monkeypatch.setitem(TOOLS, "music", dataclasses.replace(TOOLS["music"], available=lambda: False))
    with pytest.raises(SystemExit, match="music"):
        offline_tools()
