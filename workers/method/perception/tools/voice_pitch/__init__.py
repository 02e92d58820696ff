"""Voice pitch: F0 median and range of the voiced parts, as acoustic facts."""

from workers.method.perception.tools.base import Tool, ToolResult, package_version


def run(clip, _args: dict) -> ToolResult:
    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.voice_pitch import backend as voice

    facts = voice.analyse(clip)
    return ToolResult(facts, voice.render(facts))


TOOL = Tool(
    "voice_pitch",
    "Fundamental frequency (F0) of the voice: median and 10th-90th percentile range in Hz, "
    "measured with Praat. Acoustic facts only.",
    "cpu",
    run,
    lambda: f"praat-parselmouth-{package_version('praat-parselmouth')}",
)
