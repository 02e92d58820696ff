"""What every perception tool is: a name, a purpose, an argument schema, a device class,
and a function from an audio clip (possibly a window of the file) to a result.

The registry is read by roles that never run a tool (the reasoning agents need the names,
schemas and descriptions; the API and CLI the names), so a tool module imports its
libraries (librosa, torch, onnxruntime, faster-whisper, ...) inside its `run`, never at
its top: importing the registry loads none of them (tests/test_roles.py checks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.perception.audio_io import AudioClip

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
    """One call a round will make: a tool and its arguments."""

    tool: str
    args: dict
    # The coarse round runs speech tools only where voice activity found speech.
    needs_speech: bool = False


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    device: str  # "cpu" or "gpu": where it belongs in production
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
    # [(tool name, clip, args)] and returns one result per call, in order.
    run_batch: Callable[[list[tuple[str, AudioClip, dict]]], list[ToolResult]] | None = None

    def args_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {**self.args, **WINDOW_ARGS},
            "required": list(self.required),
        }


def package_version(distribution: str) -> str:
    """A library's version from its installed metadata, without importing the library."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not-installed"
