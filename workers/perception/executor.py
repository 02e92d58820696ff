"""Running a round of tool calls for a job, with the two layers of reuse.

1. A row already stored for (job, iteration, call index) is this step's own earlier
   attempt: reuse it, so a crash mid-round does not redo finished calls.
2. A row with the same cache key, from any job or batch, is the same tool on the same
   audio content with the same model and args: copy it instead of computing again.
Each call's row is committed as soon as it exists, before the next call starts.
"""

import hashlib
import json
import time
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from models import ToolCall
from models.db import session_scope
from workers.perception.audio_io import AudioClip, BadAudioError, load_audio
from workers.perception.tools import TOOLS, ToolResult


@dataclass(frozen=True)
class PlannedCall:
    tool: str
    args: dict


@dataclass(frozen=True)
class CallOutcome:
    call_index: int
    tool: str
    args: dict
    text: str


def cache_key(audio_sha256: str, tool: str, model: str, args: dict) -> str:
    blob = json.dumps([audio_sha256, tool, model, args], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class RoundExecutor:
    """One perception round for one job; decodes the audio at most once, and only if needed."""

    def __init__(self, job_id: UUID, iteration: int, audio_path: str, audio_sha256: str):
        self.job_id, self.iteration = job_id, iteration
        self.audio_path, self.audio_sha256 = audio_path, audio_sha256
        self._clip: AudioClip | None = None

    def run(self, calls: list[PlannedCall]) -> list[CallOutcome]:
        return [self._run_one(i, call) for i, call in enumerate(calls)]

    def _run_one(self, index: int, call: PlannedCall) -> CallOutcome:
        row = self._stored(index) or self._from_cache(index, call) or self._compute(index, call)
        return CallOutcome(index, row.tool, row.args, row.text)

    def _stored(self, index: int) -> ToolCall | None:
        with session_scope() as session:
            return session.scalar(
                select(ToolCall).where(
                    ToolCall.job_id == self.job_id,
                    ToolCall.iteration == self.iteration,
                    ToolCall.call_index == index,
                )
            )

    def _from_cache(self, index: int, call: PlannedCall) -> ToolCall | None:
        key = cache_key(self.audio_sha256, call.tool, TOOLS[call.tool].model_name(), call.args)
        with session_scope() as session:
            hit = session.scalar(
                select(ToolCall).where(ToolCall.cache_key == key, ToolCall.error.is_(None)).limit(1)
            )
        if hit is None:
            return None
        return self._save(
            index, call, key, ToolResult(hit.output, hit.text), None, 0.0, hit.device, cache_hit=True
        )

    def _compute(self, index: int, call: PlannedCall) -> ToolCall:
        tool = TOOLS[call.tool]
        key = cache_key(self.audio_sha256, call.tool, tool.model_name(), call.args)
        clip = self._audio()  # outside the try: undecodable audio fails the whole step
        started = time.perf_counter()
        try:
            result, error = tool.run(clip.window(call.args.get("start"), call.args.get("end")), call.args), None
        except BadAudioError as exc:  # e.g. a window outside the clip: the agent's mistake
            result, error = ToolResult({}, f"tool error: {exc}"), str(exc)
        latency_ms = (time.perf_counter() - started) * 1000
        return self._save(index, call, key, result, error, latency_ms, tool.device, cache_hit=False)

    def _audio(self) -> AudioClip:
        if self._clip is None:
            self._clip = load_audio(self.audio_path)
        return self._clip

    def _save(self, index, call, key, result, error, latency_ms, device, cache_hit) -> ToolCall:
        values = dict(
            job_id=self.job_id, iteration=self.iteration, call_index=index, tool=call.tool,
            model=TOOLS[call.tool].model_name(), args=call.args, output=result.output,
            text=result.text, error=error, latency_ms=latency_ms, device=device,
            cache_key=key, cache_hit=cache_hit,
        )
        with session_scope() as session:
            session.execute(
                insert(ToolCall).values(**values).on_conflict_do_nothing(
                    index_elements=["job_id", "iteration", "call_index"]
                )
            )
        return self._stored(index)
