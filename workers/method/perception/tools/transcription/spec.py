"""Where transcription runs and its model's name, readable without loading any model:
the tool (this package's __init__), the loaded recogniser (perception/loaded_models.py) and
the planners all resolve AGR_ASR_DEVICE through here, alike in every process."""

from core.cuda import cuda_visible
from core.settings import get_settings


def asr_device(setting: str | None = None) -> str:
    """"cpu" or "cuda": AGR_ASR_DEVICE, with auto resolved for this process."""
    setting = setting or get_settings().asr_device
    if setting != "auto":
        return setting
    return "cuda" if cuda_visible() else "cpu"


def device_class() -> str:
    # A transcription service is asked over HTTP by the CPU worker: no GPU worker needed.
    if get_settings().asr_base_url:
        return "cpu"
    return "gpu" if asr_device() == "cuda" else "cpu"


def model_name() -> str:
    settings = get_settings()
    if settings.asr_base_url:  # the deployment's identity: another service is cached apart
        return f"{settings.asr_base_url.rstrip('/')}#{settings.asr_model}"
    base = f"faster-whisper/{settings.asr_model}"
    return base if asr_device() == "cpu" else f"{base}@cuda-float16"
