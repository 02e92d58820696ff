"""The Qwen2-Audio backend on a tiny random model built here: real loading, prompting,
padding and decoding, no network and no downloaded weights. The other families are in
test_alm_families.py."""

import numpy as np
import pytest
import torch

from tests.tiny_models import build_tiny_qwen2_audio
from workers.method.alm_prompts import CAPTION_PROMPT
from workers.method.perception.alm.base import GenerationSettings, _pick_device
from workers.method.perception.alm.loading import load_audio_language_model
from workers.method.perception.alm.qwen2_audio import Qwen2AudioModel

RATE = 16000


@pytest.fixture(scope="module")
def alm(tmp_path_factory):
    directory = build_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))
    return load_audio_language_model(str(directory), device="cpu", generation=GenerationSettings(max_new_tokens=8))


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def test_loads_float32_on_cpu(alm):
    assert type(alm) is Qwen2AudioModel  # model_type qwen2_audio, and not named like Audio-Reasoner
    assert alm.sampling_rate == RATE
    assert "tiny-qwen2-audio" in alm.name  # the path it was given: the cached results' model field
    assert {p.dtype for p in alm.model.parameters()} == {torch.float32}
    assert {p.device.type for p in alm.model.parameters()} == {"cpu"}


def test_auto_device_follows_cuda_availability():
    assert _pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_single_item_methods_return_text(alm):
    clip = _noise(1.5, seed=1)
    outputs = [
        alm.caption(clip),
        alm.answer(clip, "Is a dog barking?"),
        alm.re_caption(clip, "speech"),
        alm.transcribe(clip),
    ]
    # The builder zeroes the special tokens' logits, so random weights still yield visible text.
    assert all(isinstance(text, str) and text for text in outputs)


def test_audio_reaches_the_model(alm):
    assert alm.caption(_noise(2.0, seed=2)) != alm.caption(np.zeros(2 * RATE, dtype=np.float32))


def test_batch_matches_one_at_a_time(alm):
    # Different audio lengths (different numbers of <|AUDIO|> tokens) and prompt lengths, so the
    # batch is really left-padded; greedy decoding must not notice. float32 on CPU: batching
    # changes reduction order only at the 1e-7 level, far below the gaps between top logits.
    clips = [_noise(0.5, seed=3), _noise(4.0, seed=4), _noise(9.0, seed=5)]
    prompts = [CAPTION_PROMPT, "What is happening?", "Describe this audio again in detail, paying attention to speech"]
    singles = [alm.generate_batch([clip], [prompt])[0] for clip, prompt in zip(clips, prompts)]
    batch = alm.generate_batch(clips, prompts)
    assert len(batch) == 3 and all(isinstance(text, str) and text for text in batch)
    assert batch == singles


def test_batch_needs_one_prompt_per_clip(alm):
    with pytest.raises(ValueError, match="2 waveforms but 1 prompts"):
        alm.generate_batch([_noise(1, 6), _noise(1, 7)], ["?"])


def test_bad_path_raises_clear_error(tmp_path):
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="could not load audio-language model .*not-a-model"):
        load_audio_language_model(str(empty), device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_on_cuda_generates_in_batches(tmp_path):
    directory = build_tiny_qwen2_audio(tmp_path / "tiny-qwen2-audio")
    alm = load_audio_language_model(str(directory), device="auto", generation=GenerationSettings(max_new_tokens=8))
    assert {p.dtype for p in alm.model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in alm.model.parameters()} == {"cuda"}
    clips = [_noise(0.5, seed=3), _noise(4.0, seed=4), _noise(9.0, seed=5)]
    batch = alm.generate_batch(clips, [CAPTION_PROMPT, "What is happening?", "Any speech?"])
    assert len(batch) == 3 and all(isinstance(text, str) and text for text in batch)
    assert alm.caption(_noise(2.0, seed=2)) != alm.caption(np.zeros(2 * RATE, dtype=np.float32))
