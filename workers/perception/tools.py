"""The perception routes the agents may call, in one registry.

Each tool declares its name, what it is for, a JSON schema of its arguments and the
device class it needs; the interaction agent's prompt and output schema are built from
this table, so a new tool is one entry here. Every tool accepts an optional time window
[start, end] in seconds: "re-listening" to a segment is any tool on a window.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from core.settings import get_settings
from workers.perception import signal_facts as facts
from workers.perception.audio_io import AudioClip
from workers.perception.loaded_models import audio_language_model, speech_recognizer

WINDOW_ARGS = {
    "start": {"type": "number", "minimum": 0, "description": "window start, seconds"},
    "end": {"type": "number", "minimum": 0, "description": "window end, seconds"},
}


@dataclass(frozen=True)
class ToolResult:
    output: dict  # structured, with absolute timestamps
    text: str  # short rendering merged into the evidence document


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

    def args_schema(self) -> dict:
        return {
            "type": "object",
            "properties": {**self.args, **WINDOW_ARGS},
            "required": list(self.required),
        }


def _transcribe(clip: AudioClip, _args: dict) -> ToolResult:
    result = speech_recognizer().transcribe(clip.waveform, offset_s=clip.offset_s)
    lines = [f"[{s['start']:.1f}-{s['end']:.1f}s] {s['text']}" for s in result["segments"]]
    return ToolResult(result, "\n".join(lines) if lines else "no speech recognised")


def _signal_facts(clip: AudioClip, _args: dict) -> ToolResult:
    out = facts.signal_facts(clip)
    return ToolResult(out, facts.render(out))


def _alm(method: str, arg: str | None = None) -> Callable[[AudioClip, dict], ToolResult]:
    def run(clip: AudioClip, args: dict) -> ToolResult:
        model = audio_language_model()
        text = getattr(model, method)(clip.waveform, *([args[arg]] if arg else []))
        window = {"start": round(clip.offset_s, 2), "end": round(clip.offset_s + clip.duration_s, 2)}
        return ToolResult({**window, "text": text}, text.strip())

    return run


def _alm_name() -> str:
    return get_settings().alm_model or "none"


def _alm_configured() -> bool:
    return bool(get_settings().alm_model)


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in [
        Tool(
            "transcription",
            "Speech recognition with timestamps: what is said, and when.",
            "gpu",
            _transcribe,
            lambda: f"faster-whisper/{get_settings().asr_model}",
        ),
        Tool(
            "signal_facts",
            "Duration, loudness, peak level, clipping and share of silence.",
            "cpu",
            _signal_facts,
            lambda: "numpy",
        ),
        Tool(
            "caption",
            "A detailed description of the whole audio from an audio-language model.",
            "gpu",
            _alm("caption"),
            _alm_name,
            _alm_configured,
        ),
        Tool(
            "audio_qa",
            "Ask an audio-language model a specific question about the audio.",
            "gpu",
            _alm("answer", "question"),
            _alm_name,
            _alm_configured,
            {"question": {"type": "string", "description": "the question to ask"}},
            ("question",),
        ),
        Tool(
            "re_caption",
            "Describe the audio again, paying attention to one aspect (e.g. the background sounds).",
            "gpu",
            _alm("re_caption", "focus"),
            _alm_name,
            _alm_configured,
            {"focus": {"type": "string", "description": "what to attend to"}},
            ("focus",),
        ),
    ]
}



def coarse_tools() -> list[Tool]:
    """The tools of the coarse document (iteration 0): those configured that are available."""
    names = get_settings().coarse_tools
    unknown = [n for n in names if n not in TOOLS]
    if unknown:
        raise ValueError(f"AGR_COARSE_TOOLS names unknown tool(s) {unknown}; known: {sorted(TOOLS)}")
    return [TOOLS[n] for n in names if TOOLS[n].available()]


def available_tools() -> list[Tool]:
    return [t for t in TOOLS.values() if t.available()]
