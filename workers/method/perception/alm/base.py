"""What every audio-language model family shares: the prompts, the generation settings, and
one batched generate call behind the interface the perception tools use.

A family subclass says only how its checkpoint is loaded and what differs in its chat prompt,
processor call or output format; the batching, padding, decoding and device rules live here
so that every family batches (and is tested) the same way.
"""

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import torch

from core.settings import get_settings
from workers.method.alm_prompts import CAPTION_PROMPT, RE_CAPTION_PROMPT, TRANSCRIBE_PROMPT

log = logging.getLogger(__name__)



def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _dtype_for(device: torch.device) -> torch.dtype:
    # bf16 halves GPU memory at no quality cost; CPU bf16 kernels are slow or missing.
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@dataclass(frozen=True)
class GenerationSettings:
    """How the model decodes. The defaults are greedy: reproducible answers, and a batch gives
    the same text as one-at-a-time calls."""

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0  # used only when sampling
    top_p: float = 1.0  # used only when sampling
    num_beams: int = 1
    repetition_penalty: float = 1.0

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "num_beams": self.num_beams,
            "repetition_penalty": self.repetition_penalty,
        }
        if self.do_sample:  # passed without sampling they only earn a warning from generate()
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


def read_model_config(path: str) -> dict:
    """The checkpoint's config.json, from a local directory or (when reachable) the hub cache."""
    local = os.path.join(path, "config.json")
    if path.startswith(("/", ".", "~")) and not os.path.isdir(path):
        raise OSError(f"{path} is not a directory")  # a path, not a hub id: say so plainly
    if os.path.isdir(path):
        if not os.path.isfile(local):
            raise OSError(f"{path} has no config.json")
    else:
        from transformers.utils import cached_file

        cached = cached_file(path, "config.json")
        if cached is None:  # a hub repo without config.json: transformers returns None for that file
            raise OSError(f"{path} has no config.json")
        local = cached
    with open(local, encoding="utf-8") as f:
        return json.load(f)


def _new_tokens(output: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """The generated continuation. Most models return prompt + continuation; remote-code models
    that generate from input embeddings (MiDashengLM) return the continuation alone."""
    width = input_ids.shape[1]
    if output.shape[1] >= width and torch.equal(output[:, :width], input_ids.to(output.device)):
        return output[:, width:]
    return output


class AudioPrompts:
    """The single-clip questions every audio-language model answers, in process or behind an
    engine (workers/method/perception/alm/engine.py), through its generate_batch. An engine
    puts an exception in place of a reply it failed (in process: a failure raises)."""

    def caption(self, waveform: np.ndarray) -> str | Exception:
        return self.generate_batch([waveform], [CAPTION_PROMPT])[0]

    def answer(self, waveform: np.ndarray, question: str) -> str | Exception:
        return self.generate_batch([waveform], [question])[0]

    def re_caption(self, waveform: np.ndarray, focus: str) -> str | Exception:
        return self.generate_batch([waveform], [RE_CAPTION_PROMPT.format(focus=focus)])[0]

    def transcribe(self, waveform: np.ndarray) -> str | Exception:
        return self.generate_batch([waveform], [TRANSCRIBE_PROMPT])[0]

    def generate_batch(self, waveforms: list, prompts: list[str],
                       temperature: float | None = None) -> Sequence[str | Exception]:
        raise NotImplementedError

    def prompts_at_once(self) -> int:
        """How many prompts one generate_batch call should carry: a GPU batch in process."""

        return get_settings().gpu_batch_size


class AudioLanguageModel(AudioPrompts):
    """An audio-language model answering text prompts about waveforms, whatever its family.

    Build one with `load_audio_language_model` (or `<Family>.load`); all families offer the
    same attributes (`name`, `sampling_rate`, `device`) and methods.
    """

    family: ClassVar[str] = ""
    # A system turn to put before every prompt (None: the chat template's own default).
    system_prompt: ClassVar[str | None] = None
    # Where the audio goes in the user turn, following each model's published examples.
    audio_before_text: ClassVar[bool] = True
    # Extra arguments for the processor call (text padding, mostly).
    processor_kwargs: ClassVar[dict[str, Any]] = {"padding": True}

    def __init__(self, name: str, model, processor, device: torch.device, generation: GenerationSettings):
        self.name = name
        self.model = model
        self.processor = processor
        self.device = device
        self.generation = generation
        self.max_new_tokens = generation.max_new_tokens
        self.dtype = model.dtype
        # A decoder-only model continues from the last position, so batches must be left-padded.
        processor.tokenizer.padding_side = "left"
        self.sampling_rate: int = int(processor.feature_extractor.sampling_rate)
        self._fill_missing_stop_tokens()

    # --- loading ---

    @classmethod
    def load(
        cls, path: str, device: str = "auto", generation: GenerationSettings | None = None, config: dict | None = None
    ) -> "AudioLanguageModel":
        target = _pick_device(device)
        try:
            config = read_model_config(path) if config is None else config
            # The processor first: it is quick, and a missing dependency should fail before
            # minutes of loading weights.
            processor = cls._load_processor(path, config)
            model = cls._load_model(path, config, _dtype_for(target))
        except Exception as exc:  # OSError, ValueError, ImportError...: all mean "this is not a usable model"
            raise RuntimeError(f"could not load audio-language model {path!r}: {exc}") from exc
        return cls(path, model.to(target).eval(), processor, target, generation or GenerationSettings())

    @classmethod
    def _load_processor(cls, path: str, config: dict):
        raise NotImplementedError

    @classmethod
    def _load_model(cls, path: str, config: dict, dtype: torch.dtype):
        raise NotImplementedError

    def _fill_missing_stop_tokens(self) -> None:
        # A sub-model taken out of a larger checkpoint (Omni's thinker) can come without stop
        # tokens; it would then always run to max_new_tokens and decode text past its answer.
        config = self.model.generation_config
        tokenizer = self.processor.tokenizer
        if config.eos_token_id is None:
            config.eos_token_id = tokenizer.eos_token_id
        if config.pad_token_id is None:
            pad = tokenizer.pad_token_id
            config.pad_token_id = pad if pad is not None else tokenizer.eos_token_id

    # --- the interface ---

    def generate_batch(self, waveforms: list, prompts: list[str], temperature: float | None = None) -> list[str]:
        """Evidence text answering prompts[i] about waveforms[i], from one padded generate call
        (`temperature`: sampled at it, e.g. self-consistency samples; None: the model's settings)."""
        return [self.evidence(text) for text in self.generate_raw(waveforms, prompts, temperature)]

    def generate_raw(self, waveforms: list, prompts: list[str], temperature: float | None = None) -> list[str]:
        """The model's decoded replies, before any family-specific parsing."""
        if len(waveforms) != len(prompts):
            raise ValueError(f"{len(waveforms)} waveforms but {len(prompts)} prompts")
        if not prompts:
            return []
        audio = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waveforms]
        self._warn_if_cut(audio)
        inputs = self.processor(
            text=[self._chat_text(p) for p in prompts],
            audio=audio,
            sampling_rate=self.sampling_rate,
            return_tensors="pt",
            **self.processor_kwargs,
        )
        # Floating inputs (audio features) follow the model's dtype; ids and masks keep theirs.
        inputs = inputs.to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            output = self.model.generate(**inputs, **self._decoding(temperature).generate_kwargs())
        texts = self.processor.batch_decode(_new_tokens(output, inputs["input_ids"]), skip_special_tokens=True)
        return [t.strip() for t in texts]

    def _decoding(self, temperature: float | None) -> GenerationSettings:
        if temperature is None or temperature <= 0:
            return self.generation
        return replace(self.generation, do_sample=True, temperature=temperature, num_beams=1)

    # --- what families may change ---

    def _chat_text(self, prompt: str) -> str:
        # Templates test either the block's type or the presence of an "audio" key (the released
        # Qwen2-Audio-Instruct one does the latter), so give both. Rendering without tokenizing
        # never reads the value: the waveform goes to the processor call instead.
        audio, text = {"type": "audio", "audio": "<waveform>"}, {"type": "text", "text": prompt}
        conversation = [{"role": "user", "content": [audio, text] if self.audio_before_text else [text, audio]}]
        if self.system_prompt:
            conversation.insert(0, {"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    @classmethod
    def evidence(cls, text: str) -> str:
        """The evidence a reply gives (Audio-Reasoner keeps its caption and response)."""
        return text

    def window_seconds(self) -> float | None:
        """The longest clip the model hears whole: longer ones are heard in windows."""
        return self._max_audio_seconds()

    def _max_audio_seconds(self) -> float | None:
        """The longest clip the processor passes on whole (None: no fixed limit)."""
        samples = getattr(self.processor.feature_extractor, "n_samples", None)
        return samples / self.sampling_rate if samples else None

    def _warn_if_cut(self, audio: list[np.ndarray]) -> None:
        limit = self._max_audio_seconds()
        if limit and any(len(a) > limit * self.sampling_rate for a in audio):
            log.warning("%s hears only the first %g s of each clip", self.name, limit)
