"""Loudness: integrated LUFS, RMS over time, loudest and quietest moments."""

from workers.method.perception.tools.base import Tool, ToolResult


def run(clip, _args: dict) -> ToolResult:
    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.loudness import backend as loudness

    facts = loudness.analyse(clip)
    return ToolResult(facts, loudness.render(facts))


TOOL = Tool(
    "loudness",
    "Integrated loudness (LUFS), RMS level every 0.5 s, and the loudest and quietest moments.",
    "cpu",
    run,
    lambda: "pyloudnorm-0.2",
)
