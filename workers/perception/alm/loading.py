"""Which family a checkpoint belongs to, and the one factory that loads any of them.

The family comes from config.json's model_type, which names the architecture. Audio-Reasoner
shares Qwen2-Audio's architecture and model_type, so it is recognised by its name or chosen
explicitly (AGR_ALM_FAMILY=audio_reasoner).
"""

import os
import re

from core.alm_endpoint import is_endpoint, parse_endpoint

from workers.perception.alm.audio_flamingo3 import AudioFlamingo3Model
from workers.perception.alm.audio_reasoner import AudioReasonerModel
from workers.perception.alm.base import AudioLanguageModel, GenerationSettings, read_model_config
from workers.perception.alm.midashenglm import MiDashengLMModel
from workers.perception.alm.qwen2_audio import Qwen2AudioModel
from workers.perception.alm.qwen_omni import QwenOmniModel

FAMILIES: dict[str, type[AudioLanguageModel]] = {
    cls.family: cls
    for cls in (Qwen2AudioModel, AudioReasonerModel, AudioFlamingo3Model, QwenOmniModel, MiDashengLMModel)
}

# config.json model_type -> family
MODEL_TYPES = {
    "qwen2_audio": "qwen2_audio",
    "audioflamingo3": "audio_flamingo3",
    "qwen2_5_omni": "qwen2_5_omni",  # the full model; only its thinker is loaded
    "qwen2_5_omni_thinker": "qwen2_5_omni",
    "midashenglm": "midashenglm",
}

# Checkpoints published as "Audio-Reasoner" (any case, -, _ or nothing between the words).
_AUDIO_REASONER_NAME = re.compile(r"audio[-_ ]?reasoner", re.IGNORECASE)


def choose_family(path: str, config: dict, family: str = "auto") -> str:
    """The family to load `path` as: `family` itself unless it is "auto"."""
    if family != "auto":
        if family not in FAMILIES:
            raise ValueError(f"unknown audio-language model family {family!r} (known: {', '.join(FAMILIES)})")
        return family
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise ValueError(
            f"model_type {model_type!r} is not a supported audio-language model "
            f"(supported: {', '.join(MODEL_TYPES)}); set AGR_ALM_FAMILY to force one of {', '.join(FAMILIES)}"
        )
    chosen = MODEL_TYPES[model_type]
    if chosen == "qwen2_audio" and _AUDIO_REASONER_NAME.search(os.path.basename(os.path.normpath(path))):
        return "audio_reasoner"
    return chosen


def load_audio_language_model(
    path: str, device: str = "auto", generation: GenerationSettings | None = None, family: str = "auto"
) -> AudioLanguageModel:
    """Load the checkpoint at `path` (a directory or hub id) as its family's model, on `device`
    ("auto": CUDA when available) in bf16 on CUDA and float32 on CPU.

    `path` may instead name a serving engine (core/alm_endpoint.py): the model is then asked
    over HTTP (workers/perception/alm/engine.py) and nothing is loaded here.

    Raises RuntimeError("could not load audio-language model '<path>': <reason>") for anything
    that does not load.
    """
    if is_endpoint(path):
        from workers.perception.alm.engine import EngineAudioLanguageModel

        return EngineAudioLanguageModel(parse_endpoint(path), family, generation or GenerationSettings())
    try:
        config = read_model_config(path)
        family = choose_family(path, config, family)
    except Exception as exc:  # OSError (no config), ValueError (unknown family): not a usable model
        raise RuntimeError(f"could not load audio-language model {path!r}: {exc}") from exc
    return FAMILIES[family].load(path, device=device, generation=generation, config=config)
