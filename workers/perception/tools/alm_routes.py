"""The audio-language model's routes: caption, a question about the audio, and a
focused re-caption. Available only when AGR_ALM_MODEL names a model."""

from collections.abc import Callable

from core.settings import get_settings
from workers.perception.audio_io import AudioClip
from workers.perception.loaded_models import audio_language_model
from workers.perception.tools.base import Tool, ToolResult


def _route(method: str, arg: str | None = None) -> Callable[[AudioClip, dict], ToolResult]:
    def run(clip: AudioClip, args: dict) -> ToolResult:
        text = getattr(audio_language_model(), method)(clip.waveform, *([args[arg]] if arg else []))
        window = {"start": round(clip.offset_s, 2), "end": round(clip.offset_s + clip.duration_s, 2)}
        return ToolResult({**window, "text": text}, text.strip())

    return run


def _model_name() -> str:
    return get_settings().alm_model or "none"


def _configured() -> bool:
    return bool(get_settings().alm_model)


TOOLS = [
    Tool("caption", "A detailed description of the whole audio from an audio-language model.",
         "gpu", _route("caption"), _model_name, _configured),
    Tool("audio_qa", "Ask an audio-language model a specific question about the audio.",
         "gpu", _route("answer", "question"), _model_name, _configured,
         {"question": {"type": "string", "description": "the question to ask"}}, ("question",)),
    Tool("re_caption", "Describe the audio again, paying attention to one aspect (e.g. the background sounds).",
         "gpu", _route("re_caption", "focus"), _model_name, _configured,
         {"focus": {"type": "string", "description": "what to attend to"}}, ("focus",)),
]
