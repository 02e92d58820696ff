"""Speakers: how many different voices speak, and the turns of each (no identities)."""

import importlib.util

from workers.perception.tools.base import Tool, ToolResult

# Kept equal to workers.perception.speakers' window and threshold (a test checks): part of
# the result-cache key, readable without loading the encoder's libraries.
MODEL_NAME = "resemblyzer-0.1.4 (1.5 s windows, cosine threshold 0.35)"


def installed() -> bool:
    return importlib.util.find_spec("resemblyzer") is not None


def run(clip, _args: dict) -> ToolResult:
    from workers.perception import speakers
    from workers.perception.loaded_models import speaker_encoder, voice_activity_detector

    facts = speakers.analyse(clip, speaker_encoder(), voice_activity_detector())
    return ToolResult(facts, speakers.render(facts))


TOOL = Tool(
    "speakers",
    "Speaker count and speaker turns: voice embeddings of the speech clustered into "
    "anonymous speakers S1, S2, ... with the start and end of each turn and the number of "
    "changes of speaker. Says nothing about who the speakers are.",
    "cpu",
    run,
    lambda: MODEL_NAME,
    installed,
)
