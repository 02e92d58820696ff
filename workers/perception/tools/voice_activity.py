"""Voice activity: the segments where someone speaks (Silero VAD)."""

from workers.perception.tools.base import Tool, ToolResult

MODEL_NAME = "silero-vad-6.2.3 (onnx)"


def run(clip, _args: dict) -> ToolResult:
    from workers.perception import voice_activity
    from workers.perception.loaded_models import voice_activity_detector

    facts = voice_activity_detector().segments(clip)
    return ToolResult(facts, voice_activity.render(facts))


TOOL = Tool(
    "voice_activity",
    "Where speech is: start and end of every speech segment, and the share of the audio that is speech.",
    "cpu",
    run,
    lambda: MODEL_NAME,
)
