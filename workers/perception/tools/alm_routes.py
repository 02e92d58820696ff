"""The audio-language model's routes: caption, a question about the audio, and a
focused re-caption. Available only when AGR_ALM_MODEL names a model.

All three are prompts to one model, so they share `run_prompts`: a GPU worker gathers the
pending route calls of many jobs and answers them in one padded generate call.
"""

from core.settings import get_settings
from workers.perception.tools.base import Tool, ToolResult


def run_prompts(calls: list[tuple[str, object, dict]]) -> list[ToolResult]:
    from workers.perception.loaded_models import audio_language_model

    model = audio_language_model()
    waveforms = [_at_rate(clip, model.sampling_rate) for _, clip, _ in calls]
    texts = model.generate_batch(waveforms, [_prompt(name, args) for name, _, args in calls])
    return [_result(clip, text) for (_, clip, _), text in zip(calls, texts, strict=True)]


def _prompt(route: str, args: dict) -> str:
    from workers.perception.alm import CAPTION_PROMPT, RE_CAPTION_PROMPT

    if route == "caption":
        return CAPTION_PROMPT
    if route == "re_caption":
        return RE_CAPTION_PROMPT.format(focus=args["focus"])
    return args["question"]  # audio_qa


def _at_rate(clip, rate: int):
    if clip.sample_rate == rate:
        return clip.waveform
    import librosa

    return librosa.resample(clip.waveform, orig_sr=clip.sample_rate, target_sr=rate)


def _result(clip, text: str) -> ToolResult:
    window = {"start": round(clip.offset_s, 2), "end": round(clip.offset_s + clip.duration_s, 2)}
    return ToolResult({**window, "text": text}, text.strip())


def _model_name() -> str:
    """The model and everything that changes its replies: part of the result-cache key, so a
    new family or decoding setting for the same checkpoint is computed afresh, not reused."""
    s = get_settings()
    if not s.alm_model:
        return "none"
    return (f"{s.alm_model} [{s.alm_family}; max_new_tokens={s.alm_max_new_tokens} sample={s.alm_do_sample} "
            f"T={s.alm_temperature} top_p={s.alm_top_p} beams={s.alm_num_beams} rep={s.alm_repetition_penalty}]")


def _route(name: str, description: str, args: dict | None = None, required: tuple[str, ...] = ()) -> Tool:
    return Tool(
        name, description, "gpu",
        run=lambda clip, call_args: run_prompts([(name, clip, call_args)])[0],
        model_name=_model_name,
        available=lambda: bool(get_settings().alm_model),
        args=args or {}, required=required, run_batch=run_prompts,
    )


TOOLS = [
    _route("caption", "A detailed description of the whole audio from an audio-language model."),
    _route("audio_qa", "Ask an audio-language model a specific question about the audio.",
           {"question": {"type": "string", "description": "the question to ask"}}, ("question",)),
    _route("re_caption", "Describe the audio again, paying attention to one aspect (e.g. the background sounds).",
           {"focus": {"type": "string", "description": "what to attend to"}}, ("focus",)),
]
