"""The ways a batch can answer its questions, so the paper's ablations run on the same
audio and the same stored perception results:

- ``agr``: the full method: coarse document, then the planner / interaction loop, then the answerer;
- ``cascade``: coarse document, then the answerer at once (no refinement loop);
- ``direct``: one audio-language-model call answers (e.g. Audio-Reasoner); no reasoner LLM;
- ``crosscheck``: beyond AGR (issue 18, being built): so far the loop of ``agr`` over a
  coarse document that already holds the evidence (every cheap offline tool in round 0,
  and the music analysis when the question asks about music, rhythm, pitch or counts),
  each item shown with its source, trust and its tool's declared limits, and the answer
  voted on by several samples of the answering agent.
"""

import re

from models.status import StepKind

PIPELINES = ("agr", "cascade", "direct", "crosscheck")
DEFAULT_PIPELINE = "agr"
# Round 0 of `crosscheck`: each ≤ 0.2 s warm on a devset clip (bench/tool_latency.py), in
# the order their evidence is read; the speech tools only where voice activity found speech.
CROSSCHECK_TOOLS = ("signal_facts", "voice_activity", "steady_sounds", "sound_events", "loudness", "voice_pitch",
                    "speakers", "transcription", "caption")
# The music analysis costs 1.4-3.1 s a clip (pitch tracking): run where the question needs
# what only it measures: tempo, beats and counts of events, chords and keys, pitch, melody.
MUSIC_CUES = re.compile(
    r"\b(music\w*|song|melod\w*|tempo|bpm|beats?|rhythm\w*|chords?|key|major|minor|harmon\w*|scale|notes?|"
    r"pitch\w*|tones?|tonal|instrument\w*|genre|beeps?|clicks?|pulses?|how many|count\w*|times)\b", re.IGNORECASE)


def first_round_calls(pipeline: str, question: str, choices: list[str], catalogue) -> list:
    """The PlannedCalls of iteration 0, with the models of the job's tool catalogue: the
    configured coarse tools that are available. (Imported here: the CLI reads PIPELINES
    without loading the tool registry.)"""
    from workers.perception.tools import coarse_tools

    if pipeline == "direct":
        return [catalogue.call("audio_qa", {"question": direct_prompt(question, choices)})]
    tools = crosscheck_tools(question, choices) if pipeline == "crosscheck" else coarse_tools()
    return [catalogue.call(t.name, {}, needs_speech=t.speech_only) for t in tools]


def round_zero_kind(pipeline: str, question: str, choices: list[str]) -> tuple | None:
    """What a job's round-0 calls depend on: jobs of one kind have the same calls (None:
    its own, `direct`'s prompt being the question)."""
    if pipeline == "direct":
        return None
    if pipeline == "crosscheck":
        return pipeline, needs_music(question, choices)
    return (pipeline,)


def needs_music(question: str, choices: list[str]) -> bool:
    return MUSIC_CUES.search(" ".join([question, *choices])) is not None


def crosscheck_tools(question: str, choices: list[str]) -> list:
    """The tools of `crosscheck`'s round 0 that are available (caption: with an ALM)."""
    from workers.perception.tools import TOOLS

    names = list(CROSSCHECK_TOOLS)
    if needs_music(question, choices):
        names.insert(names.index("transcription"), "music")
    return [TOOLS[n] for n in names if n in TOOLS and TOOLS[n].available()]


def shows_sources(pipeline: str) -> bool:
    """Whether the evidence document shows each item's source, trust and declared limits
    (workers/perception/trust.py); `agr` keeps the paper's document."""
    return pipeline == "crosscheck"


def after_first_document(pipeline: str) -> StepKind:
    """What reads the coarse document: the planner, or (no loop) the answerer."""
    return StepKind.PLAN if pipeline in ("agr", "crosscheck") else StepKind.ANSWER


def direct_prompt(question: str, choices: list[str]) -> str:
    # Verbatim choice text is what the benchmarks' token rule scores, so ask for it.
    if not choices:
        return question
    listed = "\n".join(f"- {c}" for c in choices)
    return f"{question}\nChoose one of these options and reply with its exact text:\n{listed}"
