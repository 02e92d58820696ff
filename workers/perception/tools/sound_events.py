"""Sound-event tagging over time: what kinds of sound occur, and when (YAMNet)."""

from workers.perception import sound_events
from workers.perception.audio_io import AudioClip
from workers.perception.loaded_models import sound_tagger
from workers.perception.tools.base import Tool, ToolResult


def run(clip: AudioClip, _args: dict) -> ToolResult:
    facts = sound_tagger().tag(clip)
    return ToolResult(facts, sound_events.render(facts))


TOOL = Tool(
    "sound_events",
    "Sound-event tags over time (speech, music, instruments, tones, noise, animals, vehicles, "
    "...): the top AudioSet labels every 0.48 s, merged into events with start and end.",
    "cpu",
    run,
    lambda: sound_events.SoundTagger.name,
    sound_events.installed,
)
