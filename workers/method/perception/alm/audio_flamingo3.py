"""Audio Flamingo 3 (NVIDIA): a Whisper-style encoder with pooling and a projector feeding Qwen2.

Its processor cuts audio into 30 s windows and hears up to `max_audio_len` (10 min) per clip.
"""

from workers.method.perception.alm.base import AudioLanguageModel


class AudioFlamingo3Model(AudioLanguageModel):
    family = "audio_flamingo3"
    audio_before_text = False  # the processor's own prompts put the instruction first
    # No `padding`: the processor pads the text itself, and a top-level padding=True would also
    # reach the feature extractor and cut the audio features short of the 30 s window the
    # encoder's position table expects.
    processor_kwargs = {}

    @classmethod
    def _load_processor(cls, path, config):
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)

    @classmethod
    def _load_model(cls, path, config, dtype):
        from transformers import AudioFlamingo3ForConditionalGeneration

        return AudioFlamingo3ForConditionalGeneration.from_pretrained(path, dtype=dtype)

    def _max_audio_seconds(self) -> float | None:
        return float(self.processor.max_audio_len)
