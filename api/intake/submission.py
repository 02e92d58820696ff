"""Turning validated items into a batch of queued jobs.

The batch, its audio assets, jobs and first steps are committed in one transaction, and
only after that commit are the first messages sent: a crash in between leaves persisted
steps, due, that a later top-up sends, never a message without its state.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from uuid import UUID

from api.intake.audio_ingest import StagedAudio, put_items, stage_path, store_staged
from api.intake.batch_input import Item
from models import Batch, BatchStatus, Job, Step, StepKind
from models.db import session_scope
from workers.method.mechanisms import PIPELINES_WITH_MECHANISMS
from workers.method.perception import catalogue
from workers.method.perception.tools.base import calls_as_json
from workers.method.pipelines import DEFAULT_PIPELINE, Pipeline
from workers.runtime import outbox


@dataclass(frozen=True)
class BatchRequest:
    name: str
    items: list[Item]
    options: dict  # pipeline, max_iters
    source: str | None = None
    tenant_id: UUID | None = None
    metadata: dict = field(default_factory=dict)
    completion_window: timedelta | None = None  # None: never expires
    idempotency_key: str | None = None
    request_sha256: str | None = None
    interface: str = "native"  # models.batch.BatchInterface: which API made it, and shows it


def create_batch(request: BatchRequest, session=None, batch: Batch | None = None) -> tuple[UUID, list[int]]:
    """Persist the batch with every job and its first step; returns (batch id, step ids).
    Items' audio goes into the store now: a path is read here, once, and never again.
    `batch`: a `validating` batch to fill (api/intake/batch_intake.py), instead of a new one."""
    if session is None:
        # Read and put into the store before the transaction opens: no lock waits on it.
        request = replace(request, items=put_items(_staged_items(request.items)))
        with session_scope() as session:
            return create_batch(request, session, batch)
    staged = stage_items(request.items)
    try:
        return _create(session, request, staged, batch)
    finally:
        for audio in staged.values():
            audio.discard()  # put into the store, or left behind by a failure


def _staged_items(items: list[Item]) -> list[Item]:
    staged = stage_items(items)
    return [replace(item, audio=staged[item.audio]) for item in items]


def discard_staged(items: list[Item]) -> None:
    """Drop the staged copies of a request refused before its batch was made."""
    for item in items:
        if isinstance(item.audio, StagedAudio):
            item.audio.discard()


def stage_items(items: list[Item]) -> dict:
    """Each item's audio as staged: files named by path are read here (once per path)."""
    staged = {}
    try:
        for item in items:
            if item.audio not in staged:
                staged[item.audio] = item.audio if isinstance(item.audio, StagedAudio) else stage_path(item.audio)
    except BaseException:
        for audio in staged.values():
            audio.discard()
        raise
    return staged


def _create(session, request: BatchRequest, staged: dict, batch: Batch | None) -> tuple[UUID, list[int]]:
    started, expires_at = datetime.now(timezone.utc), None
    if request.completion_window is not None:
        # From when it is queued: time spent validating does not count against the window.
        expires_at = started + request.completion_window
    if batch is None:
        batch = Batch(name=request.name, options=request.options, source=request.source,
                      tenant_id=request.tenant_id, batch_metadata=request.metadata,
                      idempotency_key=request.idempotency_key, request_sha256=request.request_sha256,
                      interface=request.interface)
        session.add(batch)
    batch.status, batch.expires_at, batch.in_progress_at = BatchStatus.IN_PROGRESS, expires_at, started
    session.flush()
    audio_ids = store_staged(session, request.tenant_id, list(staged.values()))
    # What every job will do is fixed now, from this process's tools and settings: the
    # tools its agents are shown and its coarse round's calls with their models.
    tools = catalogue.current()
    catalogue.store(session, tools)
    jobs = []
    for i in request.items:
        audio = staged[i.audio]
        jobs.append(Job(batch_id=batch.id, custom_id=i.custom_id, audio_id=audio_ids[audio.sha256],
                        audio_name=audio.name[:1000], question=i.question, choices=i.choices,
                        options=item_options(request.options, i.options), item_metadata=i.metadata,
                        reference_answer=i.answer, catalogue_version=tools.version))
    session.add_all(jobs)
    session.flush()
    first_calls = _FirstCalls(tools)
    steps = [Step(job_id=j.id, iteration=0, kind=StepKind.PERCEIVE_CPU, calls=first_calls.of(j)) for j in jobs]
    session.add_all(steps)
    session.flush()
    return batch.id, [s.id for s in steps]


def item_options(batch: dict, item: dict) -> dict:
    """A job's options: the batch's, then its line's own. A line running another pipeline
    than the batch's (a Batch API line's model) drops the batch's crosscheck switches."""
    options = batch | item
    if "mechanisms" in options and options.get("pipeline") not in PIPELINES_WITH_MECHANISMS:
        options.pop("mechanisms")
    return options


class _FirstCalls:
    """Each job's coarse-round calls, as stored on its first step, worked out once for each
    kind of round 0 the batch has (Pipeline.round_zero_kind, workers/method/pipelines.py)."""

    def __init__(self, tools):
        self.tools, self._by_kind = tools, {}

    def of(self, job: Job) -> list[dict]:
        pipeline = Pipeline(job.options.get("pipeline", DEFAULT_PIPELINE), job.options.get("mechanisms"))
        kind = pipeline.round_zero_kind(job.question, job.choices)
        if kind is None or kind not in self._by_kind:
            calls = calls_as_json(pipeline.first_round_calls(job.question, job.choices, self.tools))
            if kind is None:
                return calls
            self._by_kind[kind] = calls
        return self._by_kind[kind]


def enqueue_first_steps(step_ids: list[int]) -> None:
    # The rows were made with their messages due (the outbox): they go out as their
    # queue's window has room, in the fair order across tenants and batches
    # (workers/runtime/fair_dispatch.py): this process's top-up first, or any later one if it dies.
    if step_ids:
        outbox.top_up(wait=True)


def submit(name: str, items: list[Item], options: dict, source: str | None = None) -> UUID:
    """Create the batch, then send each job's first message (after the commit)."""
    batch_id, step_ids = create_batch(BatchRequest(name, items, options, source))
    enqueue_first_steps(step_ids)
    return batch_id
