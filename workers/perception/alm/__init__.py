"""Audio-language models (ALMs) behind the caption / question / re-caption tools.

Several families, one interface: `load_audio_language_model(path, device, generation)` picks
the family from the checkpoint and returns an `AudioLanguageModel` with `name`,
`sampling_rate`, `device`, `generate_batch(waveforms, prompts)` and the single-clip helpers
`caption`, `answer`, `re_caption`, `transcribe`. One module per family.
"""

from workers.perception.alm.audio_reasoner import ReasonerOutput, parse_audio_reasoner_output
from workers.perception.alm.base import (
    CAPTION_PROMPT,
    RE_CAPTION_PROMPT,
    TRANSCRIBE_PROMPT,
    AudioLanguageModel,
    GenerationSettings,
    _pick_device,
)
from workers.perception.alm.loading import FAMILIES, MODEL_TYPES, choose_family, load_audio_language_model

__all__ = [
    "CAPTION_PROMPT",
    "FAMILIES",
    "MODEL_TYPES",
    "RE_CAPTION_PROMPT",
    "TRANSCRIBE_PROMPT",
    "AudioLanguageModel",
    "GenerationSettings",
    "ReasonerOutput",
    "_pick_device",
    "choose_family",
    "load_audio_language_model",
    "parse_audio_reasoner_output",
]
