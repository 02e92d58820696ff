"""The audio-language model families, and which family a checkpoint belongs to.

The family comes from config.json's model_type, which names the architecture. Audio-Reasoner
shares Qwen2-Audio's architecture and model_type, so it is recognised by its name or chosen
explicitly (AGR_ALM_FAMILY=audio_reasoner). Apart from loading.py so that an engine-served
model (engine.py), which loading.py makes, can name its family's behaviour without a circle.
"""

import os
import re

from workers.method.perception.alm.audio_flamingo3 import AudioFlamingo3Model
from workers.method.perception.alm.audio_reasoner import AudioReasonerModel
from workers.method.perception.alm.base import AudioLanguageModel
from workers.method.perception.alm.midashenglm import MiDashengLMModel
from workers.method.perception.alm.qwen2_audio import Qwen2AudioModel
from workers.method.perception.alm.qwen_omni import QwenOmniModel

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
