"""Models held by a perception worker process: loaded once, on first use, after the fork."""

from functools import lru_cache

from core.settings import get_settings


@lru_cache(maxsize=1)
def speech_recognizer():
    """faster-whisper in this process, or the transcription service AGR_ASR_BASE_URL names."""
    settings = get_settings()
    if settings.asr_base_url:
        # a model library: its worker only, on first use
        from workers.method.perception.tools.transcription.service import SpeechService

        return SpeechService(settings.asr_base_url, settings.asr_model)
    # a model library: its worker only, on first use
    from workers.method.perception.tools.transcription.spec import asr_device

    # a model library: its worker only, on first use
    from workers.method.perception.tools.transcription.whisper import SpeechRecognizer

    return SpeechRecognizer(settings.asr_model, device=asr_device())


@lru_cache(maxsize=None)
def audio_language_model(slot: int = 1):
    """The configured ALM of `slot` (1: the primary; AGR_ALMS lists the others), or None."""
    settings = get_settings()
    specs = settings.alm_specs
    if len(specs) < slot:
        return None
    from workers.method.perception.alm.base import GenerationSettings  # a model library: its worker only, on first use

    # a model library: its worker only, on first use
    from workers.method.perception.alm.loading import load_audio_language_model

    generation = GenerationSettings(
        max_new_tokens=settings.alm_max_new_tokens,
        do_sample=settings.alm_do_sample,
        temperature=settings.alm_temperature,
        top_p=settings.alm_top_p,
        num_beams=settings.alm_num_beams,
        repetition_penalty=settings.alm_repetition_penalty,
    )
    family, path = specs[slot - 1]
    return load_audio_language_model(path, device=settings.alm_device, generation=generation, family=family)


@lru_cache(maxsize=1)
def sound_tagger():
    # a model library: its worker only, on first use
    from workers.method.perception.tools.sound_events.backend import SoundTagger

    return SoundTagger()


@lru_cache(maxsize=1)
def voice_activity_detector():
    # a model library: its worker only, on first use
    from workers.method.perception.tools.voice_activity.backend import VoiceActivityDetector

    return VoiceActivityDetector()


@lru_cache(maxsize=1)
def speaker_encoder():
    # a model library: its worker only, on first use
    from workers.method.perception.tools.speakers.backend import SpeakerEncoder

    return SpeakerEncoder()
