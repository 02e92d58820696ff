"""Running a round of tool calls for a job, with the two layers of reuse.

1. A row already stored for (job, iteration, call index) is this round's own earlier
   work (an earlier attempt, or the round's CPU step when this is its GPU step): reuse it,
   so a crash mid-round does not redo finished calls.
2. A row with the same cache key, from any job or batch of the same tenant, is the same
   tool on the same stored bytes with the same model and args: copy it instead of
   computing again. The key names the tenant, so a hit (shown in the audit) never tells
   one tenant that another has analysed the same audio.
Each call's row is committed as soon as it exists, before the next call starts.
"""

import hashlib
import json
import time
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from core.audio_store import ObjectMissing, audio_store
from core.database_outage import through_outage
from models import ToolCall
from models.db import session_scope
from workers.lease import confirm_lease
from workers.perception.audio_io import AudioClip, BadAudioError, load_audio
from workers.perception.tools import TOOLS, PlannedCall, ToolResult

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


class RoundExecutor:
    """One perception round for one job; decodes the audio at most once, and only if needed."""

    def __init__(self, job_id: UUID, iteration: int, audio_name: str, audio_sha256: str,
                 tenant_id: UUID | None = None):
        self.job_id, self.iteration, self.tenant_id = job_id, iteration, tenant_id
        self.audio_name, self.audio_sha256 = audio_name, audio_sha256
        self._clip: AudioClip | None = None

    def run(self, calls: list[PlannedCall], device: str | None = None) -> list[CallOutcome]:
        """Every call of `device` ("cpu"/"gpu"; None: all) computed or reused, in plan order."""
        for index, call in self.pending(calls, device):
            self.compute(index, call)
        return self.outcomes(calls, device)

    def pending(self, calls: list[PlannedCall], device: str | None = None) -> list[tuple[int, PlannedCall]]:
        """The calls that still need their tool run: no stored row, no cache hit, not skipped."""
        todo = []
        for index, call in enumerate(calls):
            if device is not None and TOOLS[call.tool].device != device:
                continue
            if self._stored(index) or self._from_cache(index, call) or self._skipped(index, call):
                continue
            todo.append((index, call))
        return todo

    def outcomes(self, calls: list[PlannedCall], device: str | None = None) -> list[CallOutcome]:
        rows = [
            (index, self._stored(index))
            for index, call in enumerate(calls)
            if device is None or TOOLS[call.tool].device == device
        ]
        missing = [index for index, row in rows if row is None]
        if missing:
            raise RuntimeError(f"tool calls {missing} of round {self.iteration} have no stored result")
        return [CallOutcome(index, row.tool, row.args, row.text) for index, row in rows]

    def clip_for(self, call: PlannedCall) -> AudioClip:
        """The call's window of the audio (the whole file without one)."""
        return self.audio().window(call.args.get("start"), call.args.get("end"))

    def audio(self) -> AudioClip:
        if self._clip is None:
            try:
                path = audio_store().local_file(self.audio_sha256)
            except ObjectMissing:
                raise BadAudioError(f"{self.audio_name}: its stored copy is gone (its batch was deleted?)") from None
            self._clip = load_audio(path, name=self.audio_name)
        return self._clip

    def save(self, index: int, call: PlannedCall, result: ToolResult, error: str | None,
             latency_ms: float, batch_size: int = 1, cache_hit: bool = False) -> ToolCall:
        tool = TOOLS[call.tool]
        values = dict(
            job_id=self.job_id, iteration=self.iteration, call_index=index, tool=call.tool,
            model=model_of(call)[:300], args=call.args, output=result.output, text=result.text,
            error=error, latency_ms=latency_ms, device=tool.device, batch_size=batch_size,
            cache_key=self._key(call),
            cache_hit=cache_hit,
        )

        def store() -> None:
            with session_scope() as session:
                session.execute(
                    insert(ToolCall).values(**values).on_conflict_do_nothing(
                        index_elements=["job_id", "iteration", "call_index"]
                    )
                )

        # A result paid for is kept through a database outage, not computed again after it.
        through_outage(store, f"storing a {call.tool} result")
        return self._stored(index)

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

    def _from_cache(self, index: int, call: PlannedCall) -> ToolCall | None:
        key = self._key(call)
        with session_scope() as session:
            hit = session.scalar(
                select(ToolCall).where(
                    ToolCall.cache_key == key,
                    ToolCall.error.is_(None),
                    ToolCall.output["skipped"].as_string().is_(None),
                ).limit(1)
            )
        if hit is None:
            return None
        return self.save(index, call, ToolResult(hit.output, hit.text), None, 0.0, cache_hit=True)

    def _skipped(self, index: int, call: PlannedCall) -> ToolCall | None:
        if not call.needs_speech or self._speech_found() is not False:
            return None
        return self.save(index, call, NO_SPEECH, None, 0.0)

    def _speech_found(self) -> bool | None:
        """Whether this round's voice-activity call found speech; None when it has none."""
        with session_scope() as session:
            output = session.scalar(
                select(ToolCall.output).where(
                    ToolCall.job_id == self.job_id,
                    ToolCall.iteration == self.iteration,
                    ToolCall.tool == "voice_activity",
                    ToolCall.error.is_(None),
                )
            )
        return None if output is None else bool(output.get("segments"))

    def compute(self, index: int, call: PlannedCall) -> ToolCall:
        self.audio()  # outside the try: undecodable audio fails the whole step
        confirm_lease()  # no model run for a step another worker owns now
        started = time.perf_counter()
        try:
            result, error = TOOLS[call.tool].run(self.clip_for(call), call.args), None
        except BadAudioError as exc:  # e.g. a window outside the clip: the agent's mistake
            result, error = ToolResult({}, f"tool error: {exc}"), str(exc)
        return self.save(index, call, result, error, (time.perf_counter() - started) * 1000)
