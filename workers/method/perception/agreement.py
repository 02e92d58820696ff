"""Whether the audio models agree: each configured model's own answer in round 0 (the
`audio_answer` tools), read from the evidence, and what that agreement means.

TalTech's MMAR system was right 94.5% of the time where its two audio models agreed and
58% where they conflicted: agreement is evidence worth gating on, and a conflict is the
thing the refinement rounds should resolve. Both are stated in the evidence document.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from workers.method.perception.tools.alm_tools import ANSWER_KIND, prompt_kind_of
from workers.method.perception.trust import TRUST_BY_SOURCE

AGREEMENT_BONUS = 0.2  # TalTech's bonus where two independent sources agree
_ANSWER_LINE = "Answer: "


@dataclass(frozen=True)
class Agreement:
    answers: dict[str, str | None]  # each model's answering route -> its choice (None: none)
    # With several samples per model (AGR_ALM_ANSWER_SAMPLES): each one's answers, voted
    # into `answers` (the plurality of the named choices; a tie names none).
    samples: dict[str, list[str | None]] = field(default_factory=dict)

    @property
    def named(self) -> list[str]:
        return [a for a in self.answers.values() if a is not None]

    @property
    def agreed(self) -> str | None:
        """The choice every model named, when two or more answered and all named it."""
        named = set(self.named)
        return named.pop() if len(self.answers) >= 2 and len(self.named) == len(self.answers) and len(named) == 1 \
            else None

    @property
    def conflict(self) -> bool:
        return len(set(self.named)) >= 2

    def support(self) -> dict[str, float]:
        """Each named choice's trust-weighted support, with the bonus where sources agree."""
        weight = TRUST_BY_SOURCE["audio_model"]
        counts = {c: self.named.count(c) for c in dict.fromkeys(self.named)}
        return {c: round(n * weight + (AGREEMENT_BONUS if n >= 2 else 0.0), 2) for c, n in counts.items()}

    def as_json(self) -> dict:
        record: dict[str, Any] = {"answers": self.answers, "agreed": self.agreed, "conflict": self.conflict,
                                  "support": self.support()}
        if any(len(v) > 1 for v in self.samples.values()):
            record["samples"] = self.samples
            record["margins"] = {tool: margin(votes) for tool, votes in self.samples.items()}
        return record


def is_preliminary(item: dict) -> bool:
    """A round-0 answer of a model: not one given later with the evidence (final listening)."""
    return (prompt_kind_of(item["tool"])[0] == ANSWER_KIND and not is_final_listening(item["tool"], item["args"])
            and item["iteration"] == 0)


def is_final_listening(tool: str, args: dict) -> bool:
    """A call (or its item) of crosscheck's final listening: an answer route given the
    evidence, which only the pipeline gives (an agent's calls keep their declared arguments)."""
    return prompt_kind_of(tool)[0] == ANSWER_KIND and "evidence" in args


def answer_in(item: dict, choices: list[str]) -> str | None:
    """The choice an answering route's item names (its first line), or None."""
    first = item["text"].split("\n", 1)[0]
    named = first[len(_ANSWER_LINE):].strip() if first.startswith(_ANSWER_LINE) else None
    return named if named in choices else None


def of_round_zero(evidence: list[dict], choices: list[str]) -> Agreement:
    samples: dict[str, list[str | None]] = {}
    for item in evidence:
        if is_preliminary(item):
            samples.setdefault(item["tool"], []).append(answer_in(item, choices))
    return Agreement({tool: plurality(votes) for tool, votes in samples.items()}, samples)


def plurality(votes: list[str | None]) -> str | None:
    ranked = Counter(v for v in votes if v is not None).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def margin(votes: list[str | None]) -> float:
    """The winner's lead over the runner-up, as a share of the samples (1.0: unanimous)."""
    ranked = Counter(votes).most_common(2) + [(None, 0)]
    return round((ranked[0][1] - ranked[1][1]) / len(votes), 4) if votes else 0.0


def describe(agreement: Agreement) -> str | None:
    """The document's section on the models' answers (None: fewer than two answered)."""
    if len(agreement.answers) < 2:
        return None
    lines = [(f"- {tool}: {answer!r}" if answer else f"- {tool}: named none of the choices")
             + _sampled(agreement.samples.get(tool, [])) for tool, answer in agreement.answers.items()]
    support = "; ".join(f"{c!r} {w:.2f}" for c, w in agreement.support().items())
    if agreement.agreed:
        verdict = (f"AGREEMENT: the {len(agreement.answers)} audio models, heard independently, all chose "
                   f"{agreement.agreed!r} (support {support}). Check it against the measurements.")
    elif agreement.conflict:
        verdict = (f"DISAGREEMENT: the audio models chose differently (support {support}). Resolve it before "
                   "answering: re-listen to the windows where the choices differ, and use the measurements and "
                   "the speech tools, which can tell the choices apart.")
    else:
        verdict = "No agreement: not every audio model named a choice."
    return "## Audio models' answers\n" + "\n".join(lines) + "\n" + verdict


def _sampled(votes: list[str | None]) -> str:
    if len(votes) < 2:
        return ""
    return f" ({len(votes)} samples: {', '.join(v or 'none' for v in votes)})"
