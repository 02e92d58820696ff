"""Voice activity: the segments where someone speaks (Silero VAD)."""

from workers.perception import voice_activity
from workers.perception.audio_io import AudioClip
from workers.perception.loaded_models import voice_activity_detector
from workers.perception.tools.base import Tool, ToolResult


def run(clip: AudioClip, _args: dict) -> ToolResult:
    facts = voice_activity_detector().segments(clip)
    return ToolResult(facts, voice_activity.render(facts))


TOOL = Tool(
    "voice_activity",
    "Where speech is: start and end of every speech segment, and the share of the audio that is speech.",
    "cpu",
    run,
    lambda: voice_activity.VoiceActivityDetector.name,
)
