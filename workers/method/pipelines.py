"""The ways a batch can answer its questions, so the paper's ablations run on the same
audio and the same stored perception results:

- ``agr``: the full method: coarse document, then the planner / interaction loop, then the answerer;
- ``cascade``: coarse document, then the answerer at once (no refinement loop);
- ``direct``: one audio-language-model call answers (e.g. Audio-Reasoner); no reasoner LLM;
- ``crosscheck``: beyond AGR (issue 18): the loop of ``agr`` over a coarse document that
  already holds the evidence (every cheap offline tool in round 0, the music analysis when
  the question asks about music, rhythm, pitch or counts, and every configured audio model's
  captions of the clip and its thirds and its own answer), each item shown with its source,
  trust and limits; the audio models' agreement gates the loop (workers/method/perception/agreement.py),
  the answering agent is sampled and voted on, and the audio model hears the clip again to
  answer with the evidence before the reasoner arbitrates (workers/method/steps/answer.py). Each
  mechanism can be switched off per batch (workers/method/mechanisms.py).
"""

import re

from core.settings import MAX_ALMS, get_settings
from models.status import StepKind
from workers.method.mechanisms import is_on
from workers.method.perception.alm.prompts import direct_prompt

PIPELINES = ("agr", "cascade", "direct", "crosscheck")
DEFAULT_PIPELINE = "agr"
# Round 0 of `crosscheck`: each ≤ 0.2 s warm on a devset clip (bench/tool_latency.py), in
# the order their evidence is read; transcription only where voice activity found speech.
CROSSCHECK_TOOLS = ("signal_facts", "voice_activity", "steady_sounds", "sound_events", "loudness", "voice_pitch",
                    "speakers", "transcription")
# TalTech's dual-model fusion: each audio model describes the whole clip and three equal parts.
CAPTION_PARTS = 3
# The music analysis costs 1.4-3.1 s a clip (pitch tracking): run where the question needs
# what only it measures: tempo, beats and counts of events, chords and keys, pitch, melody.
MUSIC_CUES = re.compile(
    r"\b(music\w*|song|melod\w*|tempo|bpm|beats?|rhythm\w*|chords?|key|major|minor|harmon\w*|scale|notes?|"
    r"pitch\w*|tones?|tonal|instrument\w*|genre|beeps?|clicks?|pulses?|how many|count\w*|times)\b", re.IGNORECASE)


def first_round_calls(pipeline: str, question: str, choices: list[str], catalogue,
                      mechanisms: dict | None = None) -> list:
    """The PlannedCalls of iteration 0, with the models of the job's tool catalogue: the
    configured coarse tools that are available. (Imported here: the CLI reads PIPELINES
    without loading the tool registry.)"""
    from workers.method.perception.tools import coarse_tools

    if pipeline == "direct":
        return [catalogue.call("audio_qa", {"question": direct_prompt(question, choices)})]
    if pipeline != "crosscheck":
        return [catalogue.call(t.name, {}, needs_speech=t.speech_only) for t in coarse_tools()]
    tools = crosscheck_tools(question, choices) if is_on(mechanisms, "round0_evidence") else [
        t for t in coarse_tools() if t.name != "caption"]
    calls = [catalogue.call(t.name, {}, needs_speech=t.speech_only) for t in tools]
    return calls + alm_round_zero(question, choices, catalogue, is_on(mechanisms, "alm_ensemble"))


def alm_round_zero(question: str, choices: list[str], catalogue, ensemble: bool) -> list:
    """The audio models' part of crosscheck's round 0: each model in the catalogue captions
    the whole clip and its thirds, and answers the question itself (without the ensemble:
    the primary model's caption alone, as `agr` has it)."""
    from workers.method.perception.tools.alm_routes import ANSWER_ROUTE, route_name

    slots = [s for s in range(1, MAX_ALMS + 1) if catalogue.tool(route_name("caption", s))]
    if not ensemble:
        return [catalogue.call("caption", {})] if 1 in slots else []
    calls = []
    for slot in slots:
        caption = route_name("caption", slot)
        # Covered in windows: a clip longer than the model hears is not cut off.
        calls.append(catalogue.call(caption, {"cover": True}))
        calls += [catalogue.call(caption, {"part": k, "parts": CAPTION_PARTS, "cover": True})
                  for k in range(1, CAPTION_PARTS + 1)]
        if choices and catalogue.tool(route_name(ANSWER_ROUTE, slot)):  # an open question has no choice to name
            calls += [catalogue.call(route_name(ANSWER_ROUTE, slot), args) for args in answer_args(question, choices)]
    return calls


def answer_args(question: str, choices: list[str]) -> list[dict]:
    """Each model's own answers: one greedy, or AGR_ALM_ANSWER_SAMPLES samples to vote on."""
    asked = {"question": question, "choices": choices}
    settings = get_settings()
    if settings.alm_answer_samples == 1:
        return [asked]
    # The temperature is an argument, so it is in the result cache's key.
    return [{**asked, "sample": k, "temperature": settings.answer_sample_temperature}
            for k in range(1, settings.alm_answer_samples + 1)]


def round_zero_kind(pipeline: str, question: str, choices: list[str], mechanisms: dict | None = None) -> tuple | None:
    """What a job's round-0 calls depend on: jobs of one kind have the same calls (None:
    its own, `direct`'s prompt being the question)."""
    if pipeline == "direct":
        return None
    if pipeline == "crosscheck":
        switches = tuple(sorted((mechanisms or {}).items()))
        # The audio models' own answers are to this question with these choices.
        asked = (question, tuple(choices)) if is_on(mechanisms, "alm_ensemble") else ()
        return pipeline, needs_music(question, choices), switches, asked
    return (pipeline,)


def needs_music(question: str, choices: list[str]) -> bool:
    return MUSIC_CUES.search(" ".join([question, *choices])) is not None


def crosscheck_tools(question: str, choices: list[str]) -> list:
    """The tools of `crosscheck`'s round 0 that are available (caption: with an ALM)."""
    from workers.method.perception.tools import TOOLS

    names = list(CROSSCHECK_TOOLS)
    if needs_music(question, choices):
        names.insert(names.index("transcription"), "music")
    return [TOOLS[n] for n in names if n in TOOLS and TOOLS[n].available()]


def shows_sources(pipeline: str, mechanisms: dict | None = None) -> bool:
    """Whether the evidence document shows each item's source, trust and declared limits
    (workers/method/perception/trust.py); `agr` keeps the paper's document."""
    return pipeline == "crosscheck" and is_on(mechanisms, "trust_labels")


def tools_for(pipeline: str, tools) -> list:
    """The tools a pipeline's agents are offered. Only `crosscheck` has the audio models'
    own answers and the models after the first: `agr` stays the paper's single-ALM method
    whatever the deployment has configured."""
    from workers.method.perception.tools.alm_routes import ANSWER_ROUTE, route_of

    if pipeline == "crosscheck":
        return list(tools)
    return [t for t in tools if route_of(t.name)[0] != ANSWER_ROUTE and route_of(t.name)[1] == 1]


def gates_on_agreement(pipeline: str, mechanisms: dict | None = None) -> bool:
    return pipeline == "crosscheck" and is_on(mechanisms, "agreement_gate")


def hears_again_to_answer(pipeline: str, mechanisms: dict | None = None) -> bool:
    return pipeline == "crosscheck" and is_on(mechanisms, "audio_decision")


def after_first_document(pipeline: str) -> StepKind:
    """What reads the coarse document: the planner, or (no loop) the answerer."""
    return StepKind.PLAN if pipeline in ("agr", "crosscheck") else StepKind.ANSWER
