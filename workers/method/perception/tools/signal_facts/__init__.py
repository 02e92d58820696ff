"""Duration, level, clipping and silence: cheap facts about any audio."""

from workers.method.perception.tools.base import Tool, ToolResult


def run(clip, _args: dict) -> ToolResult:
    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.signal_facts import backend as facts

    out = facts.signal_facts(clip)
    return ToolResult(out, facts.render(out))


TOOL = Tool(
    "signal_facts",
    "Duration, loudness, peak level, clipping and share of silence.",
    "cpu",
    run,
    lambda: "numpy",
)
