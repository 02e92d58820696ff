"""The MMAR challenge's trace score, and the trace it scores.

The challenge reads each item's ``thinking_prediction`` (under 10,000 characters) and, for
an item answered right, has an LLM judge score it 0.2-1.0 for the correctness and
coherence of its reasoning; five judge runs, the mean of the middle three. An item
answered wrong scores 0.

- ``thinking_prediction(chain)`` builds the trace from a job's stored evidence chain
  (GET /v1/jobs/{id}/evidence): what was heard and measured, what the planner judged,
  what was asked for, then the final reasoning and answer. A pure function; over the
  limit it trims the evidence, never the conclusion.
- ``judge_messages`` / ``parse_score`` / ``middle_mean`` are the rubric's pieces, and
  ``TraceJudge`` asks an OpenAI-compatible endpoint (the configured reasoner, by default).
- ``TraceReport`` aggregates the items' scores, overall and per group, both the mean over
  right answers and the challenge's mean over every item.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

TRACE_LIMIT = 10_000  # the challenge's bound: the trace must be shorter than this
JUDGE_RUNS = 5  # the challenge asks its judge five times ...
MIN_SCORE, MAX_SCORE = 0.2, 1.0  # ... each run a score in this range
ELLIPSIS = "…"


# --- the trace ---------------------------------------------------------------

# A piece of the trace and how readily it is shortened to fit the limit.
KEEP, EVIDENCE, NOTE, CONCLUSION = 0, 1, 2, 3  # never; first; second; last resort, keeping its end


@dataclass
class _Piece:
    text: str
    tier: int


def thinking_prediction(chain: dict, limit: int = TRACE_LIMIT - 1) -> str:
    """A readable, step-by-step trace of a job's evidence chain, at most `limit` characters.

    `chain` is GET /v1/jobs/{id}/evidence: {"job": {...}, "iterations": [...]}. Over the
    limit, tool outputs are shortened first (all to one length, the longest first), then
    the planner's reasons and the tools' purposes; the final reasoning only if it alone
    exceeds the limit (keeping its end), and the answer line never.
    """
    pieces = _trace_pieces(chain)
    for tier in (EVIDENCE, NOTE, CONCLUSION):
        if _length(pieces) <= limit:
            break
        _fit_tier(pieces, tier, limit)
    text = "".join(p.text for p in pieces)
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS  # only a degenerate limit


def _trace_pieces(chain: dict) -> list[_Piece]:
    job = chain.get("job") or {}
    pieces: list[_Piece] = []

    def line(*parts: tuple[str, int]) -> None:
        pieces.extend(_Piece(text, tier) for text, tier in parts)
        pieces.append(_Piece("\n", KEEP))

    line((f"Question: {_flat(job.get('question'))}", KEEP))
    if job.get("choices"):
        line(("Choices: " + " | ".join(_flat(c) for c in job["choices"]), KEEP))
    step = 0
    for it in chain.get("iterations") or []:
        heard = _heard(it)
        verdict, plan = it.get("verdict"), it.get("tool_plan") or []
        if not (heard or verdict or plan):
            continue
        step += 1
        pieces.append(_Piece("\n", KEEP))
        line((f"Step {step}: " + ("first listening" if it.get("index", 0) == 0
                                 else f"refinement round {it['index']}"), KEEP))
        for tool, text in heard:
            line((f"- heard/measured ({tool}): ", KEEP), (text, EVIDENCE))
        if verdict:
            line(*_verdict_parts(verdict))
        for call in plan:
            args = json.dumps(call.get("args") or {}, ensure_ascii=False, sort_keys=True)
            taken = "" if call.get("accepted", True) else f" [not run: {call.get('dropped_because')}]"
            line((f"- asked for: {call.get('tool')} {args}{taken}: ", KEEP), (_flat(call.get("purpose")), NOTE))
    pieces.append(_Piece("\n", KEEP))
    answer = job.get("answer") if job.get("answer") is not None else job.get("raw_answer")
    reasoning = _flat(job.get("reasoning") or _answerer_reasoning(chain))
    if reasoning:
        line(("Conclusion: ", KEEP), (reasoning, CONCLUSION))
    line((f"Answer: {_flat(answer) if answer is not None else '(none)'}", KEEP))
    return pieces


def _heard(it: dict) -> list[tuple[str, str]]:
    """(tool, output) of what this round's perception found: its own evidence items (an
    iteration's evidence holds the earlier rounds' too), else its tool calls, else its
    document."""
    index = it.get("index", 0)
    items = [e for e in it.get("evidence") or [] if e.get("iteration", index) == index]
    if items:
        return [(str(e.get("tool")), _flat(e.get("text"))) for e in items]
    calls = it.get("tool_calls") or []
    if calls:
        return [(str(c.get("tool")), _flat(f"error: {c['error']}" if c.get("error") else c.get("text")))
                for c in calls]
    return [("document", _flat(it["document"]))] if it.get("document") and not it.get("evidence") else []


def _verdict_parts(verdict: dict) -> list[tuple[str, int]]:
    judged = "sufficient" if verdict.get("sufficient") else "not yet sufficient"
    confidence = verdict.get("confidence")
    head = f"- planner: {judged}" + (f" (confidence {confidence:.2f})" if isinstance(confidence, (int, float)) else "")
    parts = [(head + ": ", KEEP), (_flat(verdict.get("reason")), NOTE)]
    missing = verdict.get("missing") or []
    if missing:
        parts += [("; missing: ", KEEP), ("; ".join(_flat(m) for m in missing), NOTE)]
    return parts


def _answerer_reasoning(chain: dict) -> str:
    """The answering agent's last stated reasoning, for a job stored without one."""
    for it in reversed(chain.get("iterations") or []):
        for call in reversed(it.get("llm_calls") or []):
            parsed = call.get("parsed")
            if str(call.get("agent", "")).startswith("answerer") and isinstance(parsed, dict) and parsed.get("reasoning"):
                return str(parsed["reasoning"])
    return ""


def _flat(value) -> str:
    return " ".join(str(value if value is not None else "").split())


def _length(pieces: list[_Piece]) -> int:
    return sum(len(p.text) for p in pieces)


def _fit_tier(pieces: list[_Piece], tier: int, limit: int) -> None:
    """Shorten this tier's pieces, all to one length (the longest first), so the trace fits."""
    chosen = [p for p in pieces if p.tier == tier]
    if not chosen:
        return
    budget = limit - (_length(pieces) - sum(len(p.text) for p in chosen))
    lengths = [len(p.text) for p in chosen]
    low, high = 0, max(lengths)  # the largest cap whose total fits the budget
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(n, cap) for n in lengths) <= budget:
            low = cap
        else:
            high = cap - 1
    for p in chosen:
        p.text = _shorten(p.text, low, keep_end=tier == CONCLUSION)


def _shorten(text: str, cap: int, keep_end: bool = False) -> str:
    if len(text) <= cap:
        return text
    if cap <= 0:
        return ""
    return ELLIPSIS + text[len(text) - cap + 1:] if keep_end else text[: cap - 1] + ELLIPSIS


# --- the judge's rubric ------------------------------------------------------

JUDGE_SYSTEM = (
    "You are an impartial grader for an audio reasoning challenge. A system that could not "
    "hear the audio directly used perception tools and wrote a reasoning trace for a "
    "multiple-choice question about an audio clip, and its final answer is correct. You "
    "grade the trace, not the answer: the correctness and coherence of its reasoning "
    "relative to the question and the correct answer. Reply with JSON only."
)

GENERIC_RUBRIC = (
    "Award 1 point for each of the following the trace does:\n"
    "1. Cue identification: it names the acoustic cues (sounds, speech content, speakers, "
    "music attributes, measurements) that the question turns on.\n"
    "2. Faithful evidence: what it reports hearing or measuring is specific and consistent, "
    "with nothing invented or contradicted.\n"
    "3. Sound reasoning: each step from the cues to the conclusion is logically valid and "
    "relevant to the question, and any knowledge it applies is correct.\n"
    "4. Coherence: it reads as one consistent line of reasoning, without contradictions or "
    "unsupported leaps.\n"
    "5. Justified answer: it reaches the correct answer for the reasons it gives, not by "
    "chance or by elimination alone."
)


def judge_messages(question: str, choices: list[str], answer: str, trace: str,
                   rubric: list[dict] | None = None, reference: str | None = None) -> list[dict]:
    """The judge's request for one trace. `rubric`: the item's own scoring points (MMAR's
    `rubric` field), else the generic five; `reference`: a reference explanation (MMAR's
    `thinking` field)."""
    if rubric:
        points = "\n".join(f"{n}. {_flat(p.get('name'))}: {_flat(p.get('scoring_point'))}"
                           for n, p in enumerate(rubric, start=1))
        scoring = f"Award 1 point for each scoring point the trace meets:\n{points}"
        count = len(rubric)
    else:
        scoring, count = GENERIC_RUBRIC, 5
    choice_lines = "\n".join(f"- {c}" for c in choices)
    reference_block = f"\n\nA reference explanation (for you only):\n{reference}" if reference else ""
    user = (
        f"Question: {question}\nChoices:\n{choice_lines}\nCorrect answer: {answer}{reference_block}\n\n"
        f"Reasoning trace to grade:\n<trace>\n{trace}\n</trace>\n\n{scoring}\n\n"
        f"The score is the points awarded divided by {count}, and at least {MIN_SCORE}: a number "
        f"from {MIN_SCORE} to {MAX_SCORE}. Reply with JSON only: "
        '{"score": <number>, "reason": "<one sentence>"}'
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"
_SCORE_PHRASE = re.compile(rf"(?i)\bscore\b[\"'*\s]*(?:is|of|=|:)?[\"'*\s]*({_NUMBER})(\s*%|\s*/\s*{_NUMBER})?")
_FRACTION = re.compile(rf"({_NUMBER})\s*(?:/|out of)\s*({_NUMBER})")
_ANY_NUMBER = re.compile(rf"({_NUMBER})(\s*%)?")
_JSON_OBJECT = re.compile(r"\{.*\}", re.S)


def parse_score(reply: str | None) -> float | None:
    """The judge's score in a reply, clamped to [0.2, 1.0]; None when there is none.

    Read, in order: a JSON object's "score"; the last "score: X" (X may be "80%" or
    "4/5"); a single fraction "4/5" or "4 out of 5"; a reply holding exactly one number.
    A JSON object without "score", or prose with several numbers and no "score", is None.
    """
    text = (reply or "").strip()
    if not text:
        return None
    found = _JSON_OBJECT.search(text)
    if found:
        try:
            parsed = json.loads(found.group(0))
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return _clamped(_number(parsed.get("score")))
    phrases = list(_SCORE_PHRASE.finditer(text))
    if phrases:
        last = phrases[-1]
        return _clamped(_scaled(last.group(1), last.group(2)))
    fractions = list(_FRACTION.finditer(text))
    if len(fractions) == 1:
        return _clamped(_ratio(*fractions[0].groups()))
    numbers = list(_ANY_NUMBER.finditer(text))
    if len(numbers) == 1:
        return _clamped(_scaled(numbers[0].group(1), numbers[0].group(2)))
    return None


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return parse_score(value) if value.strip() else None
    return None


def _scaled(number: str, suffix: str | None) -> float | None:
    suffix = (suffix or "").strip()
    if suffix == "%":
        return float(number) / 100
    if suffix.startswith("/"):
        return _ratio(number, suffix[1:])
    return float(number)


def _ratio(top: str, bottom: str) -> float | None:
    return float(top) / float(bottom) if float(bottom) else None


def _clamped(value: float | None) -> float | None:
    if value is None or value != value:  # NaN
        return None
    return min(MAX_SCORE, max(MIN_SCORE, value))


def middle_mean(scores: list[float]) -> float | None:
    """The mean of the runs without the lowest and the highest: the middle 3 of 5 (of 4
    runs, the middle 2). Fewer than 3 runs: their mean; none: None."""
    ordered = sorted(scores)
    if len(ordered) >= 3:
        ordered = ordered[1:-1]
    return sum(ordered) / len(ordered) if ordered else None


# --- asking the judge --------------------------------------------------------


class JudgeUnavailable(RuntimeError):
    """The judge's endpoint refused or could not be reached (after the client's retries)."""


@dataclass(frozen=True)
class ItemScore:
    """One right answer's judging: each run's score (None = no score after a retry)."""
    runs: tuple[float | None, ...]
    retries: int  # replies without a score that were asked again

    @property
    def score(self) -> float | None:
        return middle_mean([s for s in self.runs if s is not None])

    @property
    def missing(self) -> int:
        return sum(1 for s in self.runs if s is None)


class TraceJudge:
    """An OpenAI-compatible chat endpoint asked to grade traces by the rubric."""

    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float = 120.0,
                 max_retries: int = 3, max_tokens: int = 512):
        import openai  # here, so the rest of this module needs only the stdlib

        self._openai = openai
        self.model, self.max_tokens = model, max_tokens
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=max_retries)

    def reply(self, messages: list[dict]) -> str:
        openai = self._openai
        try:
            completion = self.client.chat.completions.create(
                model=self.model, max_tokens=self.max_tokens,
                messages=messages)  # type: ignore[arg-type]  # openai's message TypedDicts, not dicts
        except (openai.APIConnectionError, openai.APITimeoutError, openai.AuthenticationError,
                openai.PermissionDeniedError, openai.NotFoundError, openai.RateLimitError,
                openai.InternalServerError) as exc:
            raise JudgeUnavailable(f"the judge at {self.client.base_url} (model {self.model}) failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
        except openai.APIStatusError as exc:  # another 4xx: a request this endpoint will not take
            return f"(refused: HTTP {exc.status_code})"
        return completion.choices[0].message.content or "" if completion.choices else ""

    def score(self, messages: list[dict], runs: int = JUDGE_RUNS) -> ItemScore:
        """`runs` judgings of one trace; a reply without a score is asked once more."""
        scores, retries = [], 0
        for _ in range(runs):
            found = parse_score(self.reply(messages))
            if found is None:
                retries += 1
                found = parse_score(self.reply(messages))
            scores.append(found)
        return ItemScore(tuple(scores), retries)


# --- the report --------------------------------------------------------------


@dataclass(frozen=True)
class TraceItem:
    id: str
    correct: bool | None  # None: no prediction (scores 0, as a wrong answer does)
    score: ItemScore | None = None  # judged: right answers only
    groups: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TraceFigures:
    right: int  # items answered right
    judged: int  # of those, items with a score
    total: int  # every item
    mean_right: float | None  # the mean score over judged right answers
    challenge: float | None  # the challenge's mean: every item, wrong (or unanswered) ones 0
    missing_runs: int  # judge runs with no score after one retry
    unjudged: int  # right answers with no score at all (left out of both means)

    @classmethod
    def of(cls, items: list[TraceItem]) -> TraceFigures:
        right = [i for i in items if i.correct]
        scores = [i.score.score for i in right if i.score is not None and i.score.score is not None]
        counted = len(items) - (len(right) - len(scores))  # an unjudged right answer is not counted
        return cls(
            right=len(right), judged=len(scores), total=len(items),
            mean_right=sum(scores) / len(scores) if scores else None,
            challenge=sum(scores) / counted if counted else None,
            missing_runs=sum(i.score.missing for i in right if i.score is not None),
            unjudged=len(right) - len(scores),
        )

    def as_json(self) -> dict:
        return {"right": self.right, "judged": self.judged, "total": self.total, "mean_right": self.mean_right,
                "challenge": self.challenge, "missing_runs": self.missing_runs, "unjudged": self.unjudged}


@dataclass(frozen=True)
class TraceReport:
    overall: TraceFigures
    by_group: dict[str, dict[str, TraceFigures]]
    runs: int = JUDGE_RUNS
    retries: int = 0  # replies without a score asked again
    model: str | None = None

    @classmethod
    def of(cls, items: list[TraceItem], model: str | None = None) -> TraceReport:
        buckets: dict[str, dict[str, list[TraceItem]]] = defaultdict(lambda: defaultdict(list))
        for item in items:
            for name, value in item.groups.items():
                buckets[name][value].append(item)
        return cls(
            overall=TraceFigures.of(items),
            by_group={n: {v: TraceFigures.of(buckets[n][v]) for v in sorted(buckets[n])} for n in buckets},
            retries=sum(i.score.retries for i in items if i.score is not None),
            model=model,
        )

    def as_json(self) -> dict:
        return {"judge_model": self.model, "runs_per_item": self.runs, "retried_replies": self.retries,
                "overall": self.overall.as_json(),
                "by_group": {n: {v: f.as_json() for v, f in values.items()} for n, values in self.by_group.items()}}


def fit(text: str, limit: int = TRACE_LIMIT - 1) -> str:
    """Any trace within the limit: its middle cut out (a trace opens with the question and
    ends with its conclusion, both kept)."""
    if len(text) <= limit:
        return text
    head = (limit - len(ELLIPSIS)) // 3
    tail = limit - len(ELLIPSIS) - head
    return text[:head] + ELLIPSIS + (text[-tail:] if tail > 0 else "")
