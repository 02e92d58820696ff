"""Speech recognition with timestamps (faster-whisper; bundled tiny.en by default)."""

from core.settings import get_settings
from workers.perception.tools.base import Tool, ToolResult


def run(clip, _args: dict) -> ToolResult:
    from workers.perception.loaded_models import speech_recognizer

    result = speech_recognizer().transcribe(clip.waveform, offset_s=clip.offset_s)
    lines = [f"[{s['start']:.1f}-{s['end']:.1f}s] {s['text']}" for s in result["segments"]]
    return ToolResult(result, "\n".join(lines) if lines else "no speech recognised")


TOOL = Tool(
    "transcription",
    "Speech recognition with timestamps: what is said, and when.",
    "gpu",
    run,
    lambda: f"faster-whisper/{get_settings().asr_model}",
    speech_only=True,
)
