"""Sound-event tagging over time: what kinds of sound occur, and when (YAMNet).

The tool as the agents see it; spec.py holds what every role may read of its model (its name),
backend.py the model itself, loaded only by a worker that runs the tool.
"""

from workers.method.perception.tools.base import Tool, ToolResult
from workers.method.perception.tools.sound_events.spec import MODEL_NAME, installed


def run(clip, _args: dict) -> ToolResult:
    from workers.method.perception.loaded_models import sound_tagger  # loads the model: only where the tool runs

    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.sound_events import backend as sound_events

    facts = sound_tagger().tag(clip)
    return ToolResult(facts, sound_events.render(facts))


TOOL = Tool(
    "sound_events",
    "Sound-event tags over time (speech, music, instruments, tones, noise, animals, vehicles, "
    "...): the top AudioSet labels every 0.48 s, merged into events with start and end.",
    "cpu",
    run,
    lambda: MODEL_NAME,
    installed,
)
