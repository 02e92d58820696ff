"""Running a round of tool calls for a job, with the two layers of reuse.

1. A row already stored for (job, iteration, call index) is this round's own earlier
   work (an earlier attempt, or the round's CPU step when this is its GPU step): reuse it,
   so a crash mid-round does not redo finished calls.
2. A row with the same cache key, from any job or batch of the same tenant, is the same
   tool on the same stored bytes with the same model and args: copy it instead of
   computing again. The key names the tenant, so a hit (shown in the audit) never tells
   one tenant that another has analysed the same audio.
Reading what a round has (its stored rows, the cache hits, which are copied, and the
no-speech skips) is one transaction for all its calls. A GPU call's row is committed as
soon as its batch's results exist (workers/method/steps/perceive_gpu.py); a CPU round's rows
are committed together in its step's own fenced commit (workers/method/steps/perceive_cpu.py):
one transaction instead of one per call, written only by the execution that owns the
step. A crash mid-round then re-runs that round's CPU calls (milliseconds to seconds of
CPU), never a model's forward pass.
"""

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.database_outage import through_outage
from models import ToolCall
from models.db import session_scope
from storage.audio_store import ObjectMissing
from storage.factory import audio_store
from workers.method.paid_work import confirm_still_owned
from workers.method.perception.audio_io import AudioClip, BadAudioError, load_audio
from workers.method.perception.tools import TOOLS, PlannedCall, ToolResult

# A skip is recorded (the audit shows it) but is no result: a row whose output has
# "skipped" is never a cache source, so a later call of the tool on that audio runs it.
NO_SPEECH = ToolResult({"skipped": "no speech detected by voice activity"}, "skipped: no speech detected")


@dataclass(frozen=True)
class CallOutcome:
    call_index: int
    tool: str
    args: dict
    text: str


def model_of(call: PlannedCall) -> str:
    """The model a call was planned with (this worker's for a call planned before models were stored)."""
    return call.model or TOOLS[call.tool].model_name()


def cache_key(audio_sha256: str, tool: str, model: str, args: dict, tenant: UUID | None = None) -> str:
    scope = [] if tenant is None else [str(tenant)]  # None: the local CLI's batches
    blob = json.dumps([audio_sha256, tool, model, args, *scope], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# One row per key, each found by the cache_key index and the first match (a key shared by
# thousands of jobs' rows costs what a key of one does).
CACHE_HITS = text("""
SELECT k.key, hit.output, hit.text FROM unnest(CAST(:keys AS text[])) AS k(key)
CROSS JOIN LATERAL (
    SELECT t.output, t.text FROM tool_calls t
    WHERE t.cache_key = k.key AND t.error IS NULL AND (t.output ->> 'skipped') IS NULL
    LIMIT 1
) hit
""")


def store_rows(session: Session, rows: list[dict]) -> None:
    """Store rows computed by `RoundExecutor.keep_unsaved`, in the caller's transaction (a
    row stored already is kept)."""
    if rows:
        session.execute(insert(ToolCall).values(rows).on_conflict_do_nothing(
            index_elements=["job_id", "iteration", "call_index"]))


class RoundExecutor:
    """One perception round for one job; decodes the audio at most once, and only if needed."""

    def __init__(self, job_id: UUID, iteration: int, audio_name: str, audio_sha256: str,
                 tenant_id: UUID | None = None):
        self.job_id, self.iteration, self.tenant_id = job_id, iteration, tenant_id
        self.audio_name, self.audio_sha256 = audio_name, audio_sha256
        self._clip: AudioClip | None = None
        self._rows: dict[int, ToolCall] = {}  # this round's rows, by call index, as read or written here
        self.unsaved: list[dict] = []  # computed rows still to be stored (`store_rows`)

    def run(self, calls: list[PlannedCall], device: str | None = None) -> list[CallOutcome]:
        """Every call of `device` ("cpu"/"gpu"; None: all) computed or reused, in plan order."""
        for index, call in self.pending(calls, device):
            self.compute(index, call)
        return self.outcomes(calls, device)

    def pending(self, calls: list[PlannedCall], device: str | None = None) -> list[tuple[int, PlannedCall]]:
        """The calls that still need their tool run: no stored row, no cache hit, not
        skipped. One transaction: the round's rows, the cache hits (copied) and the skips."""
        with session_scope() as session:
            self._load_rows(session)
            wanted = [(index, call) for index, call in enumerate(calls)
                      if (device is None or TOOLS[call.tool].device == device) and index not in self._rows]
            hits = self._cache_hits(session, [call for _, call in wanted])
            todo, copies = [], []
            for index, call in wanted:
                hit = hits.get(self._key(call))
                if hit is not None:
                    copies.append(self._values(index, call, hit, None, 0.0, cache_hit=True))
                elif call.needs_speech and self._speech_found(copies) is False:
                    copies.append(self._values(index, call, NO_SPEECH, None, 0.0))
                else:
                    todo.append((index, call))
            self._insert_many(session, copies)
        return todo

    def outcomes(self, calls: list[PlannedCall], device: str | None = None) -> list[CallOutcome]:
        indices = [index for index, call in enumerate(calls) if device is None or TOOLS[call.tool].device == device]
        if any(index not in self._rows for index in indices):
            with session_scope() as session:
                self._load_rows(session)
        missing = [index for index in indices if index not in self._rows]
        if missing:
            raise RuntimeError(f"tool calls {missing} of round {self.iteration} have no stored result")
        return [CallOutcome(index, self._rows[index].tool, self._rows[index].args, self._rows[index].text)
                for index in indices]

    def clip_for(self, call: PlannedCall) -> AudioClip:
        """The call's window of the audio (the whole file without one): start and end
        seconds, or `part` of `parts` equal segments (the ALM routes)."""
        clip, args = self.audio(), call.args
        if "parts" in args:
            parts, part = int(args["parts"]), int(args.get("part", 1))
            if not 1 <= part <= parts:
                raise BadAudioError(f"part {part} of {parts} does not exist")
            length = clip.duration_s / parts
            return clip.window(length * (part - 1), clip.duration_s if part == parts else length * part)
        return clip.window(args.get("start"), args.get("end"))

    def audio(self) -> AudioClip:
        if self._clip is None:
            try:
                path = audio_store().local_file(self.audio_sha256)
            except ObjectMissing:
                raise BadAudioError(f"{self.audio_name}: its stored copy is gone (its batch was deleted?)") from None
            self._clip = load_audio(path, name=self.audio_name)
        return self._clip

    def _values(self, index: int, call: PlannedCall, result: ToolResult, error: str | None,
                latency_ms: float, batch_size: int = 1, cache_hit: bool = False) -> dict:
        return dict(
            job_id=self.job_id, iteration=self.iteration, call_index=index, tool=call.tool,
            model=model_of(call)[:300], args=call.args, output=result.output, text=result.text,
            error=error, latency_ms=latency_ms, device=TOOLS[call.tool].device, batch_size=batch_size,
            cache_key=self._key(call),
            cache_hit=cache_hit,
        )

    def _insert(self, session: Session, values: dict) -> None:
        """Insert the row once; the round's row is what is stored (an earlier one wins)."""
        row = session.scalar(insert(ToolCall).values(**values).on_conflict_do_nothing(
            index_elements=["job_id", "iteration", "call_index"]).returning(ToolCall))
        if row is None:
            row = session.scalar(select(ToolCall).filter_by(
                job_id=self.job_id, iteration=self.iteration, call_index=values["call_index"]))
            assert row is not None  # the insert conflicted on this key: a row with it is stored
        self._rows[values["call_index"]] = row

    def _insert_many(self, session: Session, rows: list[dict]) -> None:
        """Insert these rows in one statement; a row stored already (a concurrent
        execution's) is kept, and read back."""
        if not rows:
            return
        inserted = set(session.scalars(insert(ToolCall).values(rows).on_conflict_do_nothing(
            index_elements=["job_id", "iteration", "call_index"]).returning(ToolCall.call_index)))
        for values in rows:
            if values["call_index"] in inserted:
                self._rows[values["call_index"]] = ToolCall(**values)
        if len(inserted) < len(rows):
            self._load_rows(session)

    def save(self, index: int, call: PlannedCall, result: ToolResult, error: str | None,
             latency_ms: float, batch_size: int = 1, cache_hit: bool = False) -> ToolCall:
        """Store one call's row now, in its own transaction."""
        values = self._values(index, call, result, error, latency_ms, batch_size, cache_hit)

        def store() -> None:
            with session_scope() as session:
                self._insert(session, values)

        # A result paid for is kept through a database outage, not computed again after it.
        through_outage(store, f"storing a {call.tool} result")
        return self._rows[index]

    def keep_unsaved(self, index: int, call: PlannedCall, result: ToolResult, error: str | None,
                     latency_ms: float) -> None:
        """A computed result kept in memory, to be stored by `store_rows` in the step's
        own commit; the round's evidence reads it meanwhile."""
        values = self._values(index, call, result, error, latency_ms)
        self.unsaved.append(values)
        self._rows[index] = ToolCall(**values)

    def _load_rows(self, session: Session) -> None:
        for row in session.scalars(select(ToolCall).where(ToolCall.job_id == self.job_id,
                                                          ToolCall.iteration == self.iteration)):
            self._rows.setdefault(row.call_index, row)

    def _stored(self, index: int) -> ToolCall | None:
        with session_scope() as session:
            return session.scalar(
                select(ToolCall).where(
                    ToolCall.job_id == self.job_id,
                    ToolCall.iteration == self.iteration,
                    ToolCall.call_index == index,
                )
            )

    def _key(self, call: PlannedCall) -> str:
        return cache_key(self.audio_sha256, call.tool, model_of(call), call.args, self.tenant_id)

    def _cache_hits(self, session: Session, calls: list[PlannedCall]) -> dict[str, ToolResult]:
        """A stored real result (no error, no skip) for each of these calls' keys that has
        one: the first row found of each key, however many jobs share it."""
        keys = sorted({self._key(call) for call in calls})
        if not keys:
            return {}
        rows = session.execute(CACHE_HITS, {"keys": keys})
        return {key: ToolResult(output, rendered) for key, output, rendered in rows}

    def _speech_found(self, pending_rows: Sequence[dict] = ()) -> bool | None:
        """Whether this round's voice-activity call found speech; None when it has none.
        `pending_rows`: rows about to be stored (a cache hit of voice activity counts)."""
        outputs = [row.output for row in self._rows.values() if row.tool == "voice_activity" and row.error is None]
        outputs += [row["output"] for row in pending_rows if row["tool"] == "voice_activity" and row["error"] is None]
        found = [output for output in outputs if output is not None]
        return None if not found else bool(found[0].get("segments"))

    def compute(self, index: int, call: PlannedCall) -> ToolCall:
        """Run the call's tool and store its row now."""
        return self.save(index, call, *self._run(call))

    def skipped_without_speech(self, index: int, call: PlannedCall) -> bool:
        """Skip a speech-only call (kept unsaved, as a skip) when this round's voice
        activity, run earlier in this same step, found no speech."""
        if not call.needs_speech or self._speech_found() is not False:
            return False
        self.keep_unsaved(index, call, NO_SPEECH, None, 0.0)
        return True

    def compute_unsaved(self, index: int, call: PlannedCall) -> None:
        """Run the call's tool; its row is stored with the step's commit (`store_rows`)."""
        self.keep_unsaved(index, call, *self._run(call))

    def _run(self, call: PlannedCall) -> tuple[ToolResult, str | None, float]:
        self.audio()  # outside the try: undecodable audio fails the whole step
        confirm_still_owned()  # no model run for a step another worker owns now
        started = time.perf_counter()
        try:
            result, error = TOOLS[call.tool].run(self.clip_for(call), call.args), None
        except BadAudioError as exc:  # e.g. a window outside the clip: the agent's mistake
            result, error = ToolResult({}, f"tool error: {exc}"), str(exc)
        return result, error, (time.perf_counter() - started) * 1000
