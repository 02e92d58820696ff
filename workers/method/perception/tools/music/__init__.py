"""Music and rhythm: tempo and beats, onsets and sound bursts, pitch contour, key, chord."""

from workers.method.perception.tools.base import Tool, ToolResult, package_version


def run(clip, _args: dict) -> ToolResult:
    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.music import backend as music

    facts = music.analyse(clip)
    return ToolResult(facts, music.render(facts))


TOOL = Tool(
    "music",
    "Tempo (BPM) and beat times, onset count and separate sound bursts (for counting beeps "
    "or clicks), pitch contour in Hz with note names (which tone is higher), chord quality "
    "(major/minor) and key.",
    "cpu",
    run,
    lambda: f"librosa-{package_version('librosa')}",
)
