"""The planner's verdict on one round's document: is the evidence enough to answer, and if
not, what is missing. Stored on its iteration (iterations.verdict, as `as_json()`), read by
the interaction step (what is missing), the answer step (an agreement gate's answer), the
front door's progress lines and the audit.
"""

from dataclasses import asdict, dataclass, field

GATE_AGREEMENT = "agreement"  # crosscheck's round 0: the audio models agreed and the planner found it consistent
GATE_DISAGREEMENT = "disagreement"  # they chose differently: a round is planned to resolve it


@dataclass(frozen=True)
class Verdict:
    sufficient: bool
    reason: str
    confidence: float = 0.0
    missing: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)  # the tools the planner thinks could help
    readable: bool = True  # False: the agent's reply could not be read even after repair
    final: bool = False  # the loop ends after this round (sufficient, or the budget spent)
    # crosscheck's round 0 only (absent from the stored JSON otherwise), in the order the
    # stored JSON has always had them (a JSON column keeps its text):
    agreement: dict | None = None  # the audio models' answers (perception/agreement.py)
    gate: str | None = None  # GATE_AGREEMENT or GATE_DISAGREEMENT
    gated_answer: str | None = None  # the agreed choice, which the answer step takes

    def as_json(self) -> dict:
        stored = asdict(self)
        for optional in ("agreement", "gate", "gated_answer"):
            if stored[optional] is None:
                del stored[optional]
        return stored

    @classmethod
    def from_json(cls, stored: dict | None) -> "Verdict | None":
        """The stored verdict (None: the round was not judged yet)."""
        if stored is None:
            return None
        known = {name: stored[name] for name in cls.__dataclass_fields__ if name in stored}
        return cls(**{"sufficient": False, "reason": "", **known})

    @property
    def agreed(self) -> bool:
        return self.gate == GATE_AGREEMENT
