"""What every perception tool is: a name, a purpose, an argument schema, a device class,
and a function from an audio clip (possibly a window of the file) to a result.

The registry is read by roles that never run a tool (the reasoning agents need the names,
schemas and descriptions; the API and CLI the names), so a tool module imports its
libraries (librosa, torch, onnxruntime, faster-whisper, ...) inside its `run`, never at
its top: importing the registry loads none of them (tests/test_roles.py checks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.method.perception.audio_io import AudioClip

# Every tool accepts a window: "re-listening" to a segment is any tool on [start, end].
WINDOW_ARGS = {
    "start": {"type": "number", "minimum": 0, "description": "window start, seconds"},
    "end": {"type": "number", "minimum": 0, "description": "window end, seconds"},
}


@dataclass(frozen=True)
class ToolResult:
    output: dict  # structured, with absolute timestamps
    text: str  # short rendering merged into the evidence document


@dataclass(frozen=True)
class PlannedCall:
    """One call a round will make: a tool and its arguments, and the model it was planned
    with (stored on the round's steps, so every worker runs this model or refuses)."""

    tool: str
    args: dict
    # The coarse round runs speech tools only where voice activity found speech.
    needs_speech: bool = False
    model: str | None = None  # None: planned before models were stored (the worker's own)

    def as_json(self, index: int) -> dict:
        return {"index": index, "tool": self.tool, "args": self.args, "model": self.model,
                "needs_speech": self.needs_speech}


def calls_as_json(calls) -> list[dict]:
    """A round's calls as stored on its steps, each with its index in the round."""
    return [call.as_json(index) for index, call in enumerate(calls)]


def calls_from_json(rows: list[dict]) -> list[PlannedCall]:
    ordered = sorted(rows, key=lambda row: row["index"])
    if [row["index"] for row in ordered] != list(range(len(ordered))):
        raise ValueError(f"stored calls are not indexed 0..{len(ordered) - 1}: {[r['index'] for r in ordered]}")
    return [PlannedCall(r["tool"], r["args"], r.get("needs_speech", False), r.get("model")) for r in ordered]


def args_schema(args: dict, required) -> dict:
    """A tool's argument schema: its own arguments, and the window every tool takes."""
    return {"type": "object", "properties": {**args, **WINDOW_ARGS}, "required": list(required)}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    # "cpu" or "gpu": where it belongs in production (the queue its calls run on), or a
    # function of this process's settings giving one (transcription: its AGR_ASR_DEVICE).
    device_class: str | Callable[[], str]
    run: Callable[[AudioClip, dict], ToolResult]
    model_name: Callable[[], str]
    available: Callable[[], bool] = lambda: True
    args: dict = field(default_factory=dict)  # JSON schema properties beyond the window
    required: tuple[str, ...] = ()
    # Worth running only where someone speaks: the coarse round skips it when voice
    # activity found no speech (a call the agents ask for always runs).
    speech_only: bool = False
    # Tools sharing one `run_batch` (the routes of one audio-language model) have pending
    # calls of many jobs run together, as one padded forward pass; it takes
    # [(tool name, clip, args)] and returns one result per call, in order (an exception in
    # place of a result fails only that call's job: workers/method/steps/perceive_gpu.py).
    run_batch: Callable[[list[tuple[str, AudioClip, dict]]], Sequence[ToolResult | Exception]] | None = None

    @property
    def device(self) -> str:
        return self.device_class() if callable(self.device_class) else self.device_class

    def args_schema(self) -> dict:
        return args_schema(self.args, self.required)


def package_version(distribution: str) -> str:
    """A library's version from its installed metadata, without importing the library."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not-installed"
