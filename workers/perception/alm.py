"""Audio-language model (Qwen2-Audio class) behind the caption / question / re-caption tools.

Loaded with transformers from a local directory or a hub id. Qwen2-Audio hears at most one
Whisper window (30 s): the processor cuts longer audio, so callers should pass windows.
"""

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

CAPTION_PROMPT = (
    "Describe this audio in detail: the sound events, any speech and who is speaking, music, "
    "the acoustic scene, and how these change over time."
)
RE_CAPTION_PROMPT = "Describe this audio again in detail, paying particular attention to: {focus}"
TRANSCRIBE_PROMPT = "Transcribe the speech in this audio verbatim. If there is no speech, say so."


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class AudioLanguageModel:
    def __init__(self, model_id_or_path: str, device: str = "auto", max_new_tokens: int = 256):
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        self.name = model_id_or_path
        self.max_new_tokens = max_new_tokens
        self.device = _pick_device(device)
        # bf16 halves GPU memory at no quality cost; CPU bf16 kernels are slow or missing.
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        try:
            self.processor = AutoProcessor.from_pretrained(model_id_or_path)
            model = Qwen2AudioForConditionalGeneration.from_pretrained(model_id_or_path, dtype=dtype)
        except Exception as exc:  # OSError, ValueError, KeyError...: all mean "this is not a usable model"
            raise RuntimeError(f"could not load audio-language model {model_id_or_path!r}: {exc}") from exc
        self.model = model.to(self.device).eval()
        # A decoder-only model continues from the last position, so batches must be left-padded.
        self.processor.tokenizer.padding_side = "left"
        self.sampling_rate: int = self.processor.feature_extractor.sampling_rate
        self._max_samples = self.processor.feature_extractor.n_samples

    def caption(self, waveform: np.ndarray) -> str:
        return self.generate_batch([waveform], [CAPTION_PROMPT])[0]

    def answer(self, waveform: np.ndarray, question: str) -> str:
        return self.generate_batch([waveform], [question])[0]

    def re_caption(self, waveform: np.ndarray, focus: str) -> str:
        return self.generate_batch([waveform], [RE_CAPTION_PROMPT.format(focus=focus)])[0]

    def transcribe(self, waveform: np.ndarray) -> str:
        return self.generate_batch([waveform], [TRANSCRIBE_PROMPT])[0]

    def _prompt(self, text: str) -> str:
        conversation = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": text}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def generate_batch(self, waveforms: list, prompts: list[str]) -> list[str]:
        """Greedy answers to prompts[i] about waveforms[i], in one padded generate call."""
        if len(waveforms) != len(prompts):
            raise ValueError(f"{len(waveforms)} waveforms but {len(prompts)} prompts")
        audio = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waveforms]
        if any(len(a) > self._max_samples for a in audio):
            log.warning("%s hears only the first %d s of each clip", self.name, self._max_samples // self.sampling_rate)
        inputs = self.processor(
            text=[self._prompt(p) for p in prompts],
            audio=audio,
            sampling_rate=self.sampling_rate,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, do_sample=False, max_new_tokens=self.max_new_tokens)
        # Audio placeholders are expanded by the processor, so prompt length = input_ids width.
        new_tokens = out[:, inputs["input_ids"].shape[1] :]
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [t.strip() for t in texts]
