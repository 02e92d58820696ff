"""Voice pitch: F0 median and range of the voiced parts, as acoustic facts."""

import parselmouth

from workers.perception import voice
from workers.perception.audio_io import AudioClip
from workers.perception.tools.base import Tool, ToolResult


def run(clip: AudioClip, _args: dict) -> ToolResult:
    facts = voice.analyse(clip)
    return ToolResult(facts, voice.render(facts))


TOOL = Tool(
    "voice_pitch",
    "Fundamental frequency (F0) of the voice: median and 10th-90th percentile range in Hz, "
    "measured with Praat. Acoustic facts only.",
    "cpu",
    run,
    lambda: f"praat-parselmouth-{parselmouth.__version__}",
)
