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

A job's pipeline is resolved once into a `Pipeline` value (its name and switches); the
steps ask it what to do rather than comparing names.
"""

import re
from dataclasses import dataclass

from core.settings import MAX_ALMS, get_settings
from models.status import StepKind
from workers.method.alm_prompts import direct_prompt
from workers.method.mechanisms import is_on

AGR, CASCADE, DIRECT, CROSSCHECK = "agr", "cascade", "direct", "crosscheck"
PIPELINES = (AGR, CASCADE, DIRECT, CROSSCHECK)
DEFAULT_PIPELINE = AGR
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


@dataclass(frozen=True)
class Pipeline:
    """How one job answers: its pipeline's name and its switches (crosscheck's mechanisms;
    None: all of its own). What each step does differently is asked of this value."""

    name: str = DEFAULT_PIPELINE
    mechanisms: dict[str, bool] | None = None

    def uses(self, mechanism: str) -> bool:
        """Whether this job runs one of crosscheck's mechanisms (workers/method/mechanisms.py)."""
        return self.name == CROSSCHECK and is_on(self.mechanisms, mechanism)

    def switched_off(self, mechanism: str) -> bool:
        return not is_on(self.mechanisms, mechanism)

    @property
    def answers_directly(self) -> bool:
        """One audio-language-model call answers; no reasoner LLM."""
        return self.name == DIRECT

    @property
    def after_first_document(self) -> StepKind:
        """What reads the coarse document: the planner (the refinement loop), or the answerer."""
        return StepKind.PLAN if self.name in (AGR, CROSSCHECK) else StepKind.ANSWER

    @property
    def goes_beyond_the_paper(self) -> bool:
        """crosscheck: every configured audio model offered, their answers shown beside the
        evidence, several answers sampled, and how the answer was decided recorded. `agr`
        stays the paper's single-model method whatever the deployment configured."""
        return self.name == CROSSCHECK

    @property
    def shows_sources(self) -> bool:
        """Whether the evidence document shows each item's source, trust and declared limits
        (workers/method/perception/trust.py); `agr` keeps the paper's document."""
        return self.uses("trust_labels")

    @property
    def gates_on_agreement(self) -> bool:
        return self.uses("agreement_gate")

    @property
    def hears_again_to_answer(self) -> bool:
        return self.uses("audio_decision")

    def why_unavailable(self) -> str | None:
        """Why this service cannot run this pipeline (None: it can)."""
        if self.answers_directly and not get_settings().alm_model:
            return "the direct pipeline needs an audio-language model (AGR_ALM_MODEL)"
        return None

    def default_answer_samples(self) -> int:
        return get_settings().crosscheck_answer_samples if self.goes_beyond_the_paper else 1

    def offered(self, tools) -> list:
        """The tools this pipeline's agents are offered: only crosscheck has the audio models'
        own answers and the models after the first."""
        # the tool registry: the roles that read pipeline names never load it
        from workers.method.perception.tools.alm_tools import ANSWER_KIND, prompt_kind_of

        if self.goes_beyond_the_paper:
            return list(tools)
        return [t for t in tools if prompt_kind_of(t.name)[0] != ANSWER_KIND and prompt_kind_of(t.name)[1] == 1]

    def first_round_calls(self, question: str, choices: list[str], catalogue) -> list:
        """The PlannedCalls of iteration 0, with the models of the job's tool catalogue: the
        configured coarse tools that are available."""
        # the tool registry: the roles that read pipeline names never load it
        from workers.method.perception.tools import coarse_tools

        if self.answers_directly:
            return [catalogue.call("audio_qa", {"question": direct_prompt(question, choices)})]
        if not self.goes_beyond_the_paper:
            return [catalogue.call(t.name, {}, needs_speech=t.speech_only) for t in coarse_tools()]
        tools = crosscheck_tools(question, choices) if self.uses("round0_evidence") else [
            t for t in coarse_tools() if t.name != "caption"]
        calls = [catalogue.call(t.name, {}, needs_speech=t.speech_only) for t in tools]
        return calls + alm_round_zero(question, choices, catalogue, self.uses("alm_ensemble"))

    def round_zero_kind(self, question: str, choices: list[str]) -> tuple | None:
        """What a job's round-0 calls depend on: jobs of one kind have the same calls (None:
        its own, `direct`'s prompt being the question)."""
        if self.answers_directly:
            return None
        if self.goes_beyond_the_paper:
            switches = tuple(sorted((self.mechanisms or {}).items()))
            # The audio models' own answers are to this question with these choices.
            asked = (question, tuple(choices)) if self.uses("alm_ensemble") else ()
            return self.name, needs_music(question, choices), switches, asked
        return (self.name,)


def alm_round_zero(question: str, choices: list[str], catalogue, ensemble: bool) -> list:
    """The audio models' part of crosscheck's round 0: each model in the catalogue captions
    the whole clip and its thirds, and answers the question itself (without the ensemble:
    the primary model's caption alone, as `agr` has it)."""
    # the tool registry: the roles that read pipeline names never load it
    from workers.method.perception.tools.alm_tools import ANSWER_KIND, alm_tool_name

    slots = [s for s in range(1, MAX_ALMS + 1) if catalogue.tool(alm_tool_name("caption", s))]
    if not ensemble:
        return [catalogue.call("caption", {})] if 1 in slots else []
    calls = []
    for slot in slots:
        caption = alm_tool_name("caption", slot)
        # Covered in windows: a clip longer than the model hears is not cut off.
        calls.append(catalogue.call(caption, {"cover": True}))
        calls += [catalogue.call(caption, {"part": k, "parts": CAPTION_PARTS, "cover": True})
                  for k in range(1, CAPTION_PARTS + 1)]
        if choices and catalogue.tool(alm_tool_name(ANSWER_KIND, slot)):  # an open question has no choice to name
            calls += [catalogue.call(alm_tool_name(ANSWER_KIND, slot), args) for args in answer_args(question, choices)]
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


def needs_music(question: str, choices: list[str]) -> bool:
    return MUSIC_CUES.search(" ".join([question, *choices])) is not None


def crosscheck_tools(question: str, choices: list[str]) -> list:
    """The tools of `crosscheck`'s round 0 that are available (caption: with an ALM)."""
    # the tool registry: the roles that read pipeline names never load it
    from workers.method.perception.tools import TOOLS

    names = list(CROSSCHECK_TOOLS)
    if needs_music(question, choices):
        names.insert(names.index("transcription"), "music")
    return [TOOLS[n] for n in names if n in TOOLS and TOOLS[n].available()]
