"""The three ways a batch can answer its questions, so the paper's ablations run on the
same audio and the same stored perception results:

- ``agr``: the full method: coarse document, then the planner / interaction loop, then the answerer;
- ``cascade``: coarse document, then the answerer at once (no refinement loop);
- ``direct``: one audio-language-model call answers (e.g. Audio-Reasoner); no reasoner LLM.
"""

from models.status import StepKind

PIPELINES = ("agr", "cascade", "direct")
DEFAULT_PIPELINE = "agr"


def first_round_calls(pipeline: str, question: str, choices: list[str], catalogue) -> list:
    """The PlannedCalls of iteration 0, with the models of the job's tool catalogue: the
    configured coarse tools that are available. (Imported here: the CLI reads PIPELINES
    without loading the tool registry.)"""
    from workers.perception.tools import coarse_tools

    if pipeline == "direct":
        return [catalogue.call("audio_qa", {"question": direct_prompt(question, choices)})]
    return [catalogue.call(t.name, {}, needs_speech=t.speech_only) for t in coarse_tools()]


def after_first_document(pipeline: str) -> StepKind:
    """What reads the coarse document: the planner, or (no loop) the answerer."""
    return StepKind.PLAN if pipeline == "agr" else StepKind.ANSWER


def direct_prompt(question: str, choices: list[str]) -> str:
    # Verbatim choice text is what the benchmarks' token rule scores, so ask for it.
    if not choices:
        return question
    listed = "\n".join(f"- {c}" for c in choices)
    return f"{question}\nChoose one of these options and reply with its exact text:\n{listed}"
