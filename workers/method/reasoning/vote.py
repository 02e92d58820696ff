"""Self-consistency: several answers to one question, and the one they vote for.

Each sample's answer is normalised to a choice first, so "B", "b) Violin" and "Violin"
count as one vote. The most votes win; a tie goes to the answer whose samples were the
more confident together, then to the earlier sample. An unmapped answer is counted (and
shown in the dissent) but wins only when every sample was unmapped.
"""

from collections import Counter
from dataclasses import dataclass

UNMAPPED = None


@dataclass(frozen=True)
class Sample:
    answer: str | None  # the choice it maps to (None: unmapped)
    raw_answer: str
    confidence: float | None


@dataclass(frozen=True)
class Vote:
    winner: int  # the index of the sample whose answer (and reasoning) is the job's
    record: dict  # what is stored with the job: votes per answer, margin, dissent


def vote(samples: list[Sample]) -> Vote:
    counts = Counter(s.answer for s in samples)
    mapped: list[str | None] = [a for a in counts if a is not UNMAPPED] or [UNMAPPED]
    confidence = {a: sum(s.confidence or 0.0 for s in samples if s.answer == a) for a in counts}
    first = {a: next(i for i, s in enumerate(samples) if s.answer == a) for a in counts}
    winner = max(mapped, key=lambda a: (counts[a], confidence[a], -first[a]))
    runner_up = max((counts[a] for a in counts if a != winner), default=0)
    record = {
        "samples": len(samples),
        "votes": [{"answer": a, "votes": n} for a, n in counts.most_common()],
        "winner": winner,
        "margin": round((counts[winner] - runner_up) / len(samples), 4),  # 1.0: unanimous
        "dissent": [{"sample": i, "answer": s.answer, "raw_answer": s.raw_answer[:500]}
                    for i, s in enumerate(samples) if s.answer != winner],
    }
    return Vote(first[winner], record)
