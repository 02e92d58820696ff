"""Duration, level, clipping and silence: cheap facts about any audio."""

from workers.perception import signal_facts as facts
from workers.perception.audio_io import AudioClip
from workers.perception.tools.base import Tool, ToolResult


def run(clip: AudioClip, _args: dict) -> ToolResult:
    out = facts.signal_facts(clip)
    return ToolResult(out, facts.render(out))


TOOL = Tool(
    "signal_facts",
    "Duration, loudness, peak level, clipping and share of silence.",
    "cpu",
    run,
    lambda: "numpy",
)
