"""Speakers: how many different voices speak, and the turns of each (no identities).

The tool as the agents see it; spec.py holds what every role may read of its model (its name),
backend.py the model itself, loaded only by a worker that runs the tool.
"""

from workers.method.perception.tools.base import Tool, ToolResult
from workers.method.perception.tools.speakers.spec import MODEL_NAME, installed


def run(clip, _args: dict) -> ToolResult:
    # loads the model: only where the tool runs
    from workers.method.perception.loaded_models import speaker_encoder, voice_activity_detector

    # its model library: loaded only where the tool runs
    from workers.method.perception.tools.speakers import backend as speakers

    facts = speakers.analyse(clip, speaker_encoder(), voice_activity_detector())
    return ToolResult(facts, speakers.render(facts))


TOOL = Tool(
    "speakers",
    "Speaker count and speaker turns: voice embeddings of the speech clustered into "
    "anonymous speakers S1, S2, ... with the start and end of each turn and the number of "
    "changes of speaker. Says nothing about who the speakers are.",
    "cpu",
    run,
    lambda: MODEL_NAME,
    installed,
)
