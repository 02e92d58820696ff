"""Qwen2-Audio (e.g. Qwen2-Audio-7B-Instruct): a Whisper-style encoder feeding Qwen2.

It hears at most one Whisper window (30 s): the processor cuts longer audio, so callers
should pass windows.
"""

from workers.method.perception.alm.base import AudioLanguageModel


class Qwen2AudioModel(AudioLanguageModel):
    family = "qwen2_audio"

    @classmethod
    def _load_processor(cls, path, config):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)

    @classmethod
    def _load_model(cls, path, config, dtype):
        from transformers import Qwen2AudioForConditionalGeneration

        return Qwen2AudioForConditionalGeneration.from_pretrained(path, dtype=dtype)
