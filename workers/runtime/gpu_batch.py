"""A GPU worker's unit of work: its own step plus other queued GPU steps, run together.

The message that woke the worker names one step; Postgres knows the others waiting. The
worker claims up to `gpu_batch_size` of them (each claim is the usual fenced lease, so a
step's own message, arriving later, finds it running or done and does nothing), taken
from the queue's dispatch window in the messages' order: the steps the fair order chose
to run next (workers/runtime/fair_dispatch.py), not the backlog waiting in Postgres, runs
their model calls as padded batches, then settles each step on its own: one job's bad
audio fails that job's step only.

A step that was tried before (its worker died under it, or it failed) is not batched: it
runs alone when its own message comes, so a poison input cannot use up its batch-mates'
attempts.

While steps are waiting it keeps going, as a pipeline: as one batch computes, a helper
thread claims and prepares the next (Postgres, decoding) and another finishes and settles
the last (its results, commits, successors' messages), so the model does not sit idle
through Postgres round trips. It returns to Celery once the queue is empty or after
`DRAIN_FOR_S`.
"""

import logging
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from core.database_outage import database_unreachable, through_outage
from core.settings import get_settings
from models import StepKind
from workers.method.steps import perceive_gpu
from workers.runtime import outbox
from workers.runtime.lease import LeaseLost, LeaseRenewal
from workers.runtime.routing import PERCEPTION_QUEUE
from workers.runtime.step_claim import StepClaim, claim_batch_mates
from workers.runtime.step_runner import claim_with_patience, fail_attempt, settle

log = logging.getLogger(__name__)

DRAIN_FOR_S = 30.0


@dataclass
class TakenBatch:
    """Claimed steps, their leases renewed until they are settled, ready for the model."""

    claims: list[StepClaim]
    renewal: LeaseRenewal
    batch: perceive_gpu.GpuBatch | None = None  # None until prepared
    settled: set[int] = field(default_factory=set)  # step ids committed or failed already


def run_gpu_steps(step_id: int, message_seq: int | None = None) -> None:
    first = claim_with_patience(step_id, message_seq)
    if first is None:
        return
    settings = get_settings()
    if first.attempt > 1:
        # Tried before, and it died or failed: alone, so if its input is what crashes the
        # worker, it is the only step charged with the crash, and innocent batch-mates do not
        # run out of attempts beside it.
        claims, draining_until = [first], 0.0
    else:
        claims = [first] + claim_waiting(settings.gpu_batch_size - 1, settings.gpu_batch_wait_s, exclude={step_id})
        draining_until = time.monotonic() + DRAIN_FOR_S
    # Every batch taken and not yet settled: whatever raises, each of their claims ends
    # (settled, or its attempt failed) and no lease is renewed past this call.
    unsettled: list[TakenBatch] = []
    try:
        _pipeline(claims, settings.gpu_batch_size, draining_until, unsettled)
    except BaseException as exc:
        for taken in unsettled:
            end_unsettled(taken, exc)
        raise


def _pipeline(claims: list[StepClaim], batch_size: int, draining_until: float, unsettled: list[TakenBatch]) -> None:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="gpu-io") as helpers:
        current: TakenBatch | None = take(claims, batch_size, unsettled)
        settling: Future | None = None
        while current is not None:
            upcoming = (helpers.submit(take_waiting, batch_size, unsettled)
                        if time.monotonic() < draining_until else None)
            drop_lost_leases(current)
            assert current.batch is not None  # take() returns a batch prepared
            computed = perceive_gpu.compute(current.batch)
            if settling is not None:
                settling.result()  # a failure to settle (the database gone for good) is this task's
            settling = helpers.submit(finish_and_settle, current, computed, unsettled)
            current = upcoming.result() if upcoming is not None else None
        if settling is not None:
            settling.result()


def take_waiting(batch_size: int, unsettled: list[TakenBatch]) -> TakenBatch | None:
    claims = claim_waiting(batch_size, 0.0)
    return take(claims, batch_size, unsettled) if claims else None


def take(claims: list[StepClaim], batch_size: int, unsettled: list[TakenBatch]) -> TakenBatch:
    taken = TakenBatch(claims, LeaseRenewal(claims).start())
    unsettled.append(taken)  # before preparing: if that raises, these claims still end
    taken.batch = through_outage(lambda: perceive_gpu.prepare(claims, batch_size), "preparing a GPU batch")
    return taken


def drop_lost_leases(taken: TakenBatch) -> None:
    """No forward pass for a step another execution owns now (waiting while the database
    is unreachable, as the leases cannot be confirmed then)."""
    assert taken.batch is not None  # take() returns a batch prepared
    for claim in taken.claims:
        try:
            taken.renewal.confirm(claim)
        except LeaseLost as exc:
            taken.batch.outcomes.setdefault(claim.step_id, exc)


def finish_and_settle(taken: TakenBatch, computed: list, unsettled: list[TakenBatch]) -> None:
    """Store the batch's results, then commit each step with its successor (or record its
    failure); the leases stay renewed until the last step is settled."""
    # Storing is safe to repeat (a stored result is kept), so an outage is waited out.
    batch = taken.batch
    assert batch is not None  # take() returns a batch prepared
    outcomes = through_outage(lambda: perceive_gpu.finish(batch, computed), "storing a GPU batch")
    for claim in taken.claims:
        outcome = outcomes[claim.step_id]
        if isinstance(outcome, LeaseLost):
            log.warning("%s; its result is dropped", outcome)
        elif isinstance(outcome, Exception):
            fail_attempt(claim, outcome)
        else:
            settle(claim, outcome, taken.renewal)
        taken.settled.add(claim.step_id)
    taken.renewal.stop()
    unsettled.remove(taken)


def end_unsettled(taken: TakenBatch, exc: BaseException) -> None:
    """The pipeline raised with these claims unsettled: fail their attempts (the attempt
    counter bounds the retries), then stop renewing their leases."""
    for claim in taken.claims:
        if claim.step_id in taken.settled or taken.renewal.lost(claim):
            continue
        try:
            fail_attempt(claim, exc)
        except Exception:  # the database is gone: the lapsing lease hands it to the sweeper
            log.exception("could not record step %s's failed attempt", claim.step_id)
    taken.renewal.stop()


def claim_waiting(limit: int, wait_s: float, exclude: Iterable[int] = ()) -> list[StepClaim]:
    """Claim up to `limit` queued GPU steps, waiting up to `wait_s` for them to appear. Each
    try is one statement that picks and claims (workers/runtime/step_claim.py), skipping the rows
    another GPU worker is claiming: two workers on one queue never wait on each other."""
    claims: list[StepClaim] = []
    exclude = set(exclude)
    deadline = time.monotonic() + wait_s
    try:
        while len(claims) < limit:
            taken = claim_batch_mates(StepKind.PERCEIVE_GPU, limit - len(claims), exclude)
            claims += taken
            if taken:
                outbox.top_up([PERCEPTION_QUEUE])  # the window's room, refilled fairly
            if len(claims) >= limit or time.monotonic() >= deadline:
                break
            time.sleep(min(0.01, wait_s))
    except Exception as exc:
        # Taking batch-mates is an optimisation: whatever went wrong (the database went
        # away, most likely), go on with the claims made. They are ours: raising would
        # leave them running, unrenewed, until their leases lapsed.
        log.warning("taking GPU batch-mates failed%s; going on with %d: %s",
                    " (database unreachable)" if database_unreachable(exc) else "", len(claims), exc)
    return claims
