"""Steady sounds: sustained tones and the background floor beneath the foreground."""

from workers.method.perception.tools.base import Tool, ToolResult


def run(clip, _args: dict) -> ToolResult:
    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.steady_sounds import backend as steady_sounds

    facts = steady_sounds.analyse(clip)
    return ToolResult(facts, steady_sounds.render(facts))


TOOL = Tool(
    "steady_sounds",
    "Background analysis: sustained tones (hum, whistle, held notes) with their frequency, and "
    "whether the floor between sounds is silence or broadband noise (static, hiss).",
    "cpu",
    run,
    lambda: "steady-sounds-1 (librosa STFT)",
)
