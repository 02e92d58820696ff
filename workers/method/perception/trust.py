"""What each tool's evidence may be trusted for: its source kind, that kind's weight, and
the tool's declared limits (what it must not be used to claim).

The weights are the trust tiers TalTech's MMAR-challenge system gave its evidence:
analytic measurements 1.0, probabilistic models 0.75, heuristics 0.5, audio-language
models 0.4. The `crosscheck` pipeline shows them in its evidence document, so every agent
reads each item with its source and limits; every item stores them, for the audit.
"""

import re
from dataclasses import dataclass

TRUST_BY_SOURCE = {"analytic": 1.0, "probabilistic": 0.75, "heuristic": 0.5, "audio_model": 0.4}
_ALM_LIMITS = "an audio model's account: fluent, and may invent detail; weigh it against the measurements"


@dataclass(frozen=True)
class Declared:
    source: str  # a key of TRUST_BY_SOURCE
    limits: str

    @property
    def trust(self) -> float:
        return TRUST_BY_SOURCE[self.source]


DECLARED = {
    "signal_facts": Declared("analytic", "duration, level, clipping and silence only: not what the sound is"),
    "loudness": Declared("analytic", "loudness and how it changes only: not what makes the sound"),
    "voice_pitch": Declared("analytic", "the voice's fundamental frequency: a speaker's sex or age is suggested by "
                                        "it, never measured"),
    "music": Declared("analytic", "tempo, beats, key, chords and pitch of tonal or rhythmic audio: unreliable on "
                                  "speech and noise, and says nothing about instruments or genre"),
    "steady_sounds": Declared("heuristic", "sustained tones and the noise floor: not what produced them"),
    "voice_activity": Declared("probabilistic", "where speech is: not what is said, or by whom"),
    "sound_events": Declared("probabilistic", "AudioSet labels with scores: a guess at the source, weak on short "
                                              "or overlapping sounds"),
    "transcription": Declared("probabilistic", "the words as recognised: names and numbers may be misheard; says "
                                               "nothing about tone of voice or speakers"),
    "speakers": Declared("probabilistic", "anonymous speaker turns: says nothing about who the speakers are"),
    "caption": Declared("audio_model", _ALM_LIMITS),
    "audio_qa": Declared("audio_model", _ALM_LIMITS),
    "re_caption": Declared("audio_model", _ALM_LIMITS),
    "audio_answer": Declared("audio_model", "one model's pick from what it heard: a vote, not a proof; weigh it "
                                            "against the measurements and the other models"),
}
UNDECLARED = Declared("heuristic", "no declared limits")


def declared(tool: str) -> Declared:
    # `caption_2`: the second audio-language model's route is declared as the first's.
    return DECLARED.get(tool) or DECLARED.get(re.sub(r"_\d+$", "", tool), UNDECLARED)
