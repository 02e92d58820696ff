"""What a perception round is: its planned calls, and the evidence it adds.

A round's calls (tool, args, index, model) are stored on its steps when they are made:
the coarse round's by the submission, a refinement round's by the interaction step, and
the GPU step's copied from the round's CPU step. Both steps run exactly those calls, so
they agree on every call's index whatever each worker's own settings say; a worker
without a stored call's tool, or with another model for it, fails the attempt naming the
tool rather than run something else. Steps made before calls were stored are planned as
they were, from the job and this worker's settings.
"""

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert

from models import Iteration, StepKind
from workers.method.perception import catalogue
from workers.method.perception.evidence import evidence_item, render_document
from workers.method.perception.executor import RoundExecutor
from workers.method.perception.tools import TOOLS, PlannedCall
from workers.method.reasoning.interaction import accepted_calls
from workers.method.steps import NextStep, final_listening
from workers.method.steps.context import IterationView, load_round

ITERATIONS = cast(Table, Iteration.__table__)  # typed FromClause; a declarative model's is a Table


class ToolUnavailableError(RuntimeError):
    """A stored call this worker cannot run as planned: the step's attempt fails."""


class Round:
    def __init__(self, claim):
        self.iteration = claim.iteration
        job, stored, before = load_round(claim.job_id, claim.step_id, claim.iteration)
        self.job, self.pipeline = job, job.pipeline
        self.previous: list[dict] = [] if before is None else list(before.evidence)
        self.calls: list[PlannedCall] = stored if stored is not None else _planned_as_before(job, before)
        # crosscheck's final listening: the answer follows it (workers/method/steps/final_listening.py).
        self.answers_next = self.iteration > 0 and final_listening.is_final_round(self.calls)
        unknown = sorted({c.tool for c in self.calls if c.tool not in TOOLS})
        if unknown:
            raise ToolUnavailableError(f"round {self.iteration} asks for tool(s) {unknown}, unknown to this worker")
        self.executor = RoundExecutor(claim.job_id, claim.iteration, job.audio_name, job.audio_sha256,
                                      job.tenant_id)

    @property
    def has_gpu_calls(self) -> bool:
        return any(TOOLS[call.tool].device == "gpu" for call in self.calls)

    def pending(self, device: str) -> list[tuple[int, PlannedCall]]:
        """The calls of `device` whose tool must run here (no stored or cached result), once
        this worker is known to have each one's tool with the planned model."""
        todo = self.executor.pending(self.calls, device=device)
        for index, call in todo:
            tool = TOOLS[call.tool]
            if not tool.available():
                raise ToolUnavailableError(
                    f"call {index} of round {self.iteration} asks for tool {call.tool!r} (model {call.model!r}), "
                    "which this worker does not have: it is not configured or not installed here")
            if call.model is not None and tool.model_name() != call.model:
                raise ToolUnavailableError(
                    f"call {index} of round {self.iteration} asks for tool {call.tool!r} with model {call.model!r}; "
                    f"this worker's {call.tool!r} is {tool.model_name()!r}")
        return todo

    def evidence(self) -> list[dict]:
        """The whole document's items: earlier rounds' then this round's, in plan order."""
        outcomes = self.executor.outcomes(self.calls)
        new = [evidence_item(self.iteration, o.call_index, o.tool, o.args, o.text) for o in outcomes]
        return self.previous + new

    def written(self) -> "RoundWritten":
        """What the round's iteration stores, made outside the transaction that writes it."""
        evidence = self.evidence()
        document = document_of(evidence, self.job)
        if self.iteration == 0:
            kind = self.pipeline.after_first_document
        else:
            kind = StepKind.ANSWER if self.answers_next else StepKind.PLAN
        return RoundWritten(evidence, document, kind)


@dataclass(frozen=True)
class RoundWritten:
    evidence: list[dict]
    document: str
    next_kind: StepKind


def document_of(evidence: list[dict], job) -> str:
    """The job's document of these items: `crosscheck`'s with sources (unless switched off)
    and the audio models' agreement; `agr`'s as the paper has it."""
    choices = list(job.choices) if job.pipeline.goes_beyond_the_paper else None
    return render_document(evidence, with_sources=job.pipeline.shows_sources, choices=choices)


def _planned_as_before(job, before: IterationView | None) -> list[PlannedCall]:
    """A step made before calls were stored: its round planned from this worker's tools."""
    tools = catalogue.of_job(job.catalogue_version)
    if before is None:
        return job.pipeline.first_round_calls(job.question, job.choices, tools)
    return accepted_calls(before.tool_plan or [], tools)


def write_iteration(session, claim, written: RoundWritten) -> NextStep:
    session.execute(
        insert(ITERATIONS)
        .values(job_id=claim.job_id, index=claim.iteration, document=written.document, evidence=written.evidence)
        .on_conflict_do_nothing(index_elements=["job_id", "index"])
    )
    return NextStep(claim.iteration, written.next_kind)
