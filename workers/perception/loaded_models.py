"""Models held by a perception worker process: loaded once, on first use, after the fork."""

from functools import lru_cache

from core.settings import get_settings


@lru_cache(maxsize=1)
def speech_recognizer():
    from workers.perception.asr import SpeechRecognizer

    settings = get_settings()
    return SpeechRecognizer(settings.asr_model, device=settings.asr_device)


@lru_cache(maxsize=1)
def audio_language_model():
    """The configured ALM, or None when AGR_ALM_MODEL is unset."""
    settings = get_settings()
    if not settings.alm_model:
        return None
    from workers.perception.alm import AudioLanguageModel

    return AudioLanguageModel(
        settings.alm_model, device=settings.alm_device, max_new_tokens=settings.alm_max_new_tokens
    )
