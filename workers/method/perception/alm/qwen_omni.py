"""Qwen2.5-Omni, text out only: its "thinker" (audio and vision encoders feeding the language
model), without the "talker" that would turn the answer into speech.

Either checkpoint layout works: the full model (model_type qwen2_5_omni), whose talker is then
never built, or a thinker alone (qwen2_5_omni_thinker).
"""

from workers.method.perception.alm.base import AudioLanguageModel


def _require_torchvision() -> None:
    # The Omni processor bundles image and video processors that are built on torchvision, and
    # transformers will not make one without them even for audio-only use.
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # missing, or a wheel built for another torch
        raise ImportError(
            "Qwen2.5-Omni's processor requires torchvision, which is not importable here "
            f"({type(exc).__name__}: {exc}); run this model on a CUDA machine with the torchvision "
            "build that matches its torch (e.g. the GPU worker image)"
        ) from exc


class QwenOmniModel(AudioLanguageModel):
    family = "qwen2_5_omni"

    @classmethod
    def _load_processor(cls, path, config):
        _require_torchvision()
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(path)

    @classmethod
    def _load_model(cls, path, config, dtype):
        if config.get("model_type") == "qwen2_5_omni":
            from transformers import Qwen2_5OmniForConditionalGeneration

            # enable_audio_output=False skips building the talker and its vocoder (about a
            # quarter of the weights); the full model's generate() would need them, so the
            # thinker is what answers.
            full = Qwen2_5OmniForConditionalGeneration.from_pretrained(path, dtype=dtype, enable_audio_output=False)
            return full.thinker
        from transformers import Qwen2_5OmniThinkerForConditionalGeneration

        return Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path, dtype=dtype)
