"""Voice activity: the segments where someone speaks (Silero VAD).

The tool as the agents see it; spec.py holds what every role may read of its model (its name),
backend.py the model itself, loaded only by a worker that runs the tool.
"""

from workers.method.perception.tools.base import Tool, ToolResult
from workers.method.perception.tools.voice_activity.spec import MODEL_NAME


def run(clip, _args: dict) -> ToolResult:
    # loads the model: only where the tool runs
    from workers.method.perception.loaded_models import voice_activity_detector

    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.voice_activity import backend as voice_activity

    facts = voice_activity_detector().segments(clip)
    return ToolResult(facts, voice_activity.render(facts))


TOOL = Tool(
    "voice_activity",
    "Where speech is: start and end of every speech segment, and the share of the audio that is speech.",
    "cpu",
    run,
    lambda: MODEL_NAME,
)
