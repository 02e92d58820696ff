"""Every audio-language model family behind the one interface, on tiny random models built
here: real loading through the factory (float32 on CPU), single and batched generation, and
the clear errors for checkpoints that cannot run on this machine."""

import importlib.util

import numpy as np
import pytest
import torch

from tests.tiny_models import (
    AudioOnlyOmniProcessor,
    build_tiny_audio_flamingo3,
    build_tiny_audio_reasoner,
    build_tiny_qwen2_audio,
    build_tiny_qwen_omni,
    build_tiny_qwen_omni_thinker,
    build_tiny_remote_code_midashenglm,
    write_midashenglm_config_without_code,
)
from workers.method.alm_prompts import CAPTION_PROMPT
from workers.method.perception.alm.audio_flamingo3 import AudioFlamingo3Model
from workers.method.perception.alm.audio_reasoner import (
    AUDIO_REASONER_SYSTEM_PROMPT,
    AudioReasonerModel,
    ReasonerOutput,
    parse_audio_reasoner_output,
)
from workers.method.perception.alm.base import GenerationSettings
from workers.method.perception.alm.families import choose_family
from workers.method.perception.alm.loading import load_audio_language_model
from workers.method.perception.alm.midashenglm import MiDashengLMModel
from workers.method.perception.alm.qwen2_audio import Qwen2AudioModel
from workers.method.perception.alm.qwen_omni import QwenOmniModel

RATE = 16000
GREEDY = GenerationSettings(max_new_tokens=8)
HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None


def _noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


class OmniWithoutTorchvision(QwenOmniModel):
    """Qwen2.5-Omni with the audio half of its processor, so the thinker runs here; the
    production class differs only in loading the full processor."""

    @classmethod
    def _load_processor(cls, path, config):
        return AudioOnlyOmniProcessor.from_pretrained(path)


# --- the Audio-Reasoner output parser ---


def test_parser_splits_a_complete_reply():
    reply = (
        "<THINK><PLANNING>Listen, then compare.</PLANNING><CAPTION>A dog barks twice.</CAPTION>"
        "<REASONING>Two barks, no speech.</REASONING><SUMMARY>A dog.</SUMMARY></THINK>"
        "<RESPONSE>A dog is barking.</RESPONSE>"
    )
    parsed = parse_audio_reasoner_output(reply)
    assert parsed == ReasonerOutput(
        planning="Listen, then compare.",
        caption="A dog barks twice.",
        reasoning="Two barks, no speech.",
        summary="A dog.",
        response="A dog is barking.",
    )
    assert parsed.evidence_text == "Caption: A dog barks twice.\nResponse: A dog is barking."


def test_parser_tolerates_missing_and_unclosed_tags():
    # No PLANNING, CAPTION never closed, REASONING missing, the answer after </THINK> untagged.
    parsed = parse_audio_reasoner_output(
        "<THINK>\n<CAPTION> Rain on a roof, then thunder.\n<SUMMARY>Storm.</SUMMARY>\n</THINK>\nA thunderstorm."
    )
    assert parsed.planning == "" and parsed.reasoning == ""
    assert parsed.caption == "Rain on a roof, then thunder."
    assert parsed.summary == "Storm."
    assert parsed.response == "A thunderstorm."


def test_parser_on_a_reply_cut_before_the_response():
    parsed = parse_audio_reasoner_output("<think><planning>First</planning><caption>A flute melody.</caption><reason")
    assert parsed.caption == "A flute melody." and parsed.response == ""
    assert parsed.evidence_text == "Caption: A flute melody."


def test_parser_without_tags_takes_the_whole_text_as_response():
    parsed = parse_audio_reasoner_output("  The speaker sounds happy.  ")
    assert parsed == ReasonerOutput(response="The speaker sounds happy.")
    assert parsed.evidence_text == "The speaker sounds happy."


# --- choosing the family ---


@pytest.mark.parametrize(
    ("path", "model_type", "family"),
    [
        ("/models/Qwen2-Audio-7B-Instruct", "qwen2_audio", "qwen2_audio"),
        ("zhifeixie/Audio-Reasoner", "qwen2_audio", "audio_reasoner"),
        ("/models/audio_reasoner/", "qwen2_audio", "audio_reasoner"),
        ("nvidia/audio-flamingo-3-hf", "audioflamingo3", "audio_flamingo3"),
        ("Qwen/Qwen2.5-Omni-7B", "qwen2_5_omni", "qwen2_5_omni"),
        ("/models/omni-thinker", "qwen2_5_omni_thinker", "qwen2_5_omni"),
        ("mispeech/midashenglm-7b", "midashenglm", "midashenglm"),
    ],
)
def test_family_follows_model_type_and_name(path, model_type, family):
    assert choose_family(path, {"model_type": model_type}) == family


def test_family_setting_overrides_and_is_checked():
    assert choose_family("/models/my-finetune", {"model_type": "qwen2_audio"}, "audio_reasoner") == "audio_reasoner"
    with pytest.raises(ValueError, match="unknown audio-language model family 'qwen3'"):
        choose_family("/m", {"model_type": "qwen2_audio"}, "qwen3")
    with pytest.raises(ValueError, match="model_type 'whisper' is not a supported .*AGR_ALM_FAMILY"):
        choose_family("/m", {"model_type": "whisper"})


def test_missing_directory_is_a_clear_load_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(RuntimeError, match="could not load audio-language model .*no-such-model.* is not a directory"):
        load_audio_language_model(str(missing), device="cpu")


def test_unsupported_model_type_is_a_clear_load_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "whisper"}')
    with pytest.raises(RuntimeError, match="could not load audio-language model .*model_type 'whisper'"):
        load_audio_language_model(str(tmp_path), device="cpu")


# --- each family on a tiny model ---


def _check_family(alm, expected_class):
    """What every family must do: float32 on CPU, text from each helper, audio that matters,
    and a left-padded batch that equals one-at-a-time greedy decoding."""
    assert type(alm) is expected_class
    assert alm.sampling_rate == RATE and alm.device.type == "cpu"
    assert {p.dtype for p in alm.model.parameters()} == {torch.float32}
    clip = _noise(2.0, seed=1)
    # (All four helpers are covered on Qwen2-Audio in test_alm_backend; they share one code path.)
    outputs = [alm.caption(clip), alm.answer(clip, "Is a dog barking?")]
    assert all(isinstance(text, str) and text for text in outputs)
    assert alm.caption(_noise(2.0, seed=2)) != alm.caption(np.zeros(2 * RATE, dtype=np.float32))
    # Different audio lengths (so different numbers of audio tokens) and prompt lengths.
    clips = [_noise(0.5, seed=3), _noise(4.0, seed=4), _noise(9.0, seed=5)]
    prompts = [CAPTION_PROMPT, "What is happening?", "Describe this audio again, paying attention to speech"]
    singles = [alm.generate_batch([c], [p])[0] for c, p in zip(clips, prompts)]
    batch = alm.generate_batch(clips, prompts)
    assert len(batch) == 3 and all(isinstance(text, str) and text for text in batch)
    assert batch == singles
    assert alm.generate_batch([], []) == []


def test_audio_flamingo3(tmp_path):
    directory = build_tiny_audio_flamingo3(tmp_path / "tiny-af3")
    alm = load_audio_language_model(str(directory), device="cpu", generation=GREEDY)
    _check_family(alm, AudioFlamingo3Model)
    assert alm.name == str(directory)


def test_audio_reasoner_found_by_name(tmp_path):
    directory = build_tiny_audio_reasoner(tmp_path)
    alm = load_audio_language_model(str(directory), device="cpu", generation=GREEDY)
    _check_family(alm, AudioReasonerModel)
    assert AUDIO_REASONER_SYSTEM_PROMPT in alm._chat_text("Is it raining?")
    # What it returns is the parsed reply (a random model writes no tags: the whole reply).
    clip, prompt = _noise(1.0, seed=6), "Is it raining?"
    raw = alm.generate_raw([clip], [prompt])[0]
    assert alm.generate_batch([clip], [prompt]) == [parse_audio_reasoner_output(raw).evidence_text]


def test_audio_reasoner_forced_by_setting(tmp_path):
    directory = build_tiny_qwen2_audio(tmp_path / "my-finetune")
    assert type(load_audio_language_model(str(directory), device="cpu")) is Qwen2AudioModel
    forced = load_audio_language_model(str(directory), device="cpu", family="audio_reasoner")
    assert type(forced) is AudioReasonerModel


@pytest.mark.parametrize("build", [build_tiny_qwen_omni_thinker, build_tiny_qwen_omni], ids=["thinker", "full"])
def test_qwen_omni_thinker_generates(tmp_path, build):
    directory = build(tmp_path / "tiny-omni")
    _check_family(OmniWithoutTorchvision.load(str(directory), device="cpu", generation=GREEDY), OmniWithoutTorchvision)


@pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision is installed: the Omni processor loads")
def test_qwen_omni_without_torchvision_is_a_clear_error(tmp_path):
    directory = build_tiny_qwen_omni_thinker(tmp_path / "tiny-omni")
    with pytest.raises(RuntimeError) as error:
        load_audio_language_model(str(directory), device="cpu")
    message = str(error.value)
    assert message.startswith(f"could not load audio-language model '{directory}'")
    assert "Qwen2.5-Omni" in message and "requires torchvision" in message and "CUDA machine" in message


def test_midashenglm_without_code_is_a_clear_error(tmp_path):
    bare = write_midashenglm_config_without_code(tmp_path / "midashenglm-7b")
    no_auto_map = r"could not load audio-language model '.*midashenglm-7b': MiDashengLM .*auto_map"
    with pytest.raises(RuntimeError, match=no_auto_map):
        load_audio_language_model(str(bare), device="cpu")
    named = write_midashenglm_config_without_code(
        tmp_path / "midashenglm-named",
        auto_map={"AutoModelForCausalLM": "modeling_midashenglm.MiDashengLMModel"},
    )
    no_code = r"could not load audio-language model .*MiDashengLM .*lacks modeling_midashenglm\.py"
    with pytest.raises(RuntimeError, match=no_code):
        load_audio_language_model(str(named), device="cpu")


def test_midashenglm_loads_its_shipped_code(tmp_path):
    # A stand-in for MiDashengLM's code (see tiny_models): loaded with trust_remote_code from
    # the directory, and its generate() returns only the continuation, as MiDashengLM's does.
    directory = build_tiny_remote_code_midashenglm(tmp_path / "tiny-midashenglm")
    alm = load_audio_language_model(str(directory), device="cpu", generation=GREEDY)
    _check_family(alm, MiDashengLMModel)
    assert type(alm.model).__name__ == "TinyRemoteModel"


# --- configuration ---


def test_worker_loads_the_configured_family_and_decoding(tmp_path, monkeypatch):
    from core.settings import get_settings
    from workers.method.perception.loaded_models import audio_language_model

    directory = build_tiny_qwen2_audio(tmp_path / "configured")
    monkeypatch.setenv("AGR_ALM_MODEL", str(directory))
    monkeypatch.setenv("AGR_ALM_DEVICE", "cpu")
    monkeypatch.setenv("AGR_ALM_FAMILY", "audio_reasoner")
    monkeypatch.setenv("AGR_ALM_MAX_NEW_TOKENS", "5")
    monkeypatch.setenv("AGR_ALM_NUM_BEAMS", "2")
    get_settings.cache_clear()
    audio_language_model.cache_clear()
    try:
        alm = audio_language_model()
        assert type(alm) is AudioReasonerModel and alm.name == str(directory)
        assert alm.generation == GenerationSettings(max_new_tokens=5, num_beams=2)
        assert isinstance(alm.caption(_noise(1.0, seed=7)), str)
    finally:
        get_settings.cache_clear()
        audio_language_model.cache_clear()


def test_sampling_settings_reach_generate_only_when_sampling():
    assert "temperature" not in GREEDY.generate_kwargs()
    sampling = GenerationSettings(do_sample=True, temperature=0.7, top_p=0.9).generate_kwargs()
    assert sampling["do_sample"] is True and sampling["temperature"] == 0.7 and sampling["top_p"] == 0.9


def test_bad_family_setting_is_refused(monkeypatch):
    from pydantic import ValidationError

    from core.settings import Settings

    monkeypatch.setenv("AGR_ALM_FAMILY", "qwen3")
    with pytest.raises(ValidationError):
        Settings()


# --- CUDA ---


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_audio_flamingo3_bf16_on_cuda_generates_in_batches(tmp_path):
    directory = build_tiny_audio_flamingo3(tmp_path / "tiny-af3")
    alm = load_audio_language_model(str(directory), device="auto", generation=GREEDY)
    assert {p.dtype for p in alm.model.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in alm.model.parameters()} == {"cuda"}
    clips = [_noise(0.5, seed=3), _noise(4.0, seed=4), _noise(9.0, seed=5)]
    batch = alm.generate_batch(clips, [CAPTION_PROMPT, "What is happening?", "Any speech?"])
    assert len(batch) == 3 and all(isinstance(text, str) and text for text in batch)
