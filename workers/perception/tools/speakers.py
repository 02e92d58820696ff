"""Speakers: how many different voices speak, and the turns of each (no identities)."""

from workers.perception import speakers
from workers.perception.audio_io import AudioClip
from workers.perception.loaded_models import speaker_encoder, voice_activity_detector
from workers.perception.tools.base import Tool, ToolResult


def run(clip: AudioClip, _args: dict) -> ToolResult:
    facts = speakers.analyse(clip, speaker_encoder(), voice_activity_detector())
    return ToolResult(facts, speakers.render(facts))


TOOL = Tool(
    "speakers",
    "Speaker count and speaker turns: voice embeddings of the speech clustered into "
    "anonymous speakers S1, S2, ... with the start and end of each turn and the number of "
    "changes of speaker. Says nothing about who the speakers are.",
    "cpu",
    run,
    lambda: speakers.SpeakerEncoder.name,
    speakers.installed,
)
