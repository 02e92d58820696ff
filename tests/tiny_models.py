"""Tiny randomly initialised models, built offline at test time.

No model hub is reachable from the test machines, so each audio-language model family is
exercised on a model of its real architecture with toy sizes: the loading, prompting, batching
and decoding code paths are the production ones, only the weights are noise.
"""

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    AutoTokenizer,
    BatchFeature,
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2_5OmniConfig,
    Qwen2_5OmniForConditionalGeneration,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizerFast,
)

AUDIO, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, AUDIO_BOS, AUDIO_EOS, AUDIO]
SOUND = "<sound>"  # Audio Flamingo 3's audio placeholder
# Qwen2.5-Omni's processor finds its placeholders through these tokenizer attributes.
OMNI_NAMED_TOKENS = {
    "audio_token": AUDIO,
    "audio_bos_token": AUDIO_BOS,
    "audio_eos_token": AUDIO_EOS,
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}

# A few prompt-like lines so the BPE learns some merges; byte-level keeps any text encodable.
_CORPUS = [
    "system\nYou are a helpful assistant.",
    "user\nAudio 1: Describe this audio in detail.",
    "assistant\nA dog barks twice while rain falls on a roof; a man speaks briefly.",
    "What is the speaker saying? Transcribe the speech. Is there music?",
]

# ChatML like the released checkpoints; `audio_markup` is what one audio block renders to.
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for block in message['content'] %}"
    "{% if block['type'] == 'audio' %}AUDIO_MARKUP{% elif block['type'] == 'text' %}{{ block['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _chat_template(audio_markup: str) -> str:
    return _CHATML.replace("AUDIO_MARKUP", audio_markup)


def _tokenizer(extra_tokens: list[str] = (), named_tokens: dict[str, str] | None = None, chat_template=None):
    named_tokens = named_tokens or {}
    specials = list(dict.fromkeys(SPECIAL_TOKENS + list(extra_tokens) + list(named_tokens.values())))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer=trainer)
    extra = {"extra_special_tokens": named_tokens} if named_tokens else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[t for t in specials if t not in (IM_END, END_OF_TEXT, *named_tokens.values())],
        padding_side="left",  # batched generation with a decoder-only model
        chat_template=chat_template,
        **extra,
    )


def _text_config(tokenizer, **extra) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,  # 750 audio tokens for 30 s plus the text
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": False,
        **extra,
    }


def _audible(model, tokenizer):
    """Zero the special tokens' logits and stop at <|im_end|>: random weights would otherwise
    often stop at once (empty outputs make the batching tests vacuous) or emit tokens that
    decode to nothing."""
    with torch.no_grad():
        model.lm_head.weight[list(tokenizer.added_tokens_decoder)] = 0.0
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id
    )
    return model


# --- Qwen2-Audio and Audio-Reasoner ---


def _qwen2_audio_config(tokenizer) -> Qwen2AudioConfig:
    audio_config = {
        "model_type": "qwen2_audio_encoder",
        "num_mel_bins": 128,
        "d_model": 32,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "max_source_positions": 1500,  # fixed by the 30 s Whisper window: 3000 mel frames / 2
    }
    return Qwen2AudioConfig(
        audio_config=audio_config,
        text_config=_text_config(tokenizer, model_type="qwen2"),
        audio_token_index=tokenizer.convert_tokens_to_ids(AUDIO),
    )


def build_tiny_qwen2_audio(directory: Path) -> Path:
    """Save a random tiny Qwen2-Audio (model, processor, generation config) to `directory`."""
    directory = Path(directory)
    tokenizer = _tokenizer()
    feature_extractor = WhisperFeatureExtractor(feature_size=128, return_attention_mask=True)
    # Without an explicit template the processor falls back to its built-in default, which is
    # the Qwen2-Audio-Instruct format (<|audio_bos|><|AUDIO|><|audio_eos|>); saving it makes the
    # directory self-describing like a real checkpoint.
    template = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).default_chat_template
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=template)

    torch.manual_seed(0)
    model = _audible(Qwen2AudioForConditionalGeneration(_qwen2_audio_config(tokenizer)).eval(), tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def _load_tiny_qwen2_audio(directory: Path):
    return Qwen2AudioForConditionalGeneration.from_pretrained(directory, dtype=torch.float32)


def build_tiny_audio_reasoner(parent: Path) -> Path:
    """An Audio-Reasoner-style checkpoint: a Qwen2-Audio model in a directory named like the
    released one, which is how the loader tells it from plain Qwen2-Audio."""
    return build_tiny_qwen2_audio(Path(parent) / "Audio-Reasoner-tiny")


# --- Audio Flamingo 3 ---


def build_tiny_audio_flamingo3(directory: Path) -> Path:
    """Save a random tiny Audio Flamingo 3 (model, processor, generation config) to `directory`."""
    directory = Path(directory)
    tokenizer = _tokenizer(extra_tokens=[SOUND])
    feature_extractor = WhisperFeatureExtractor(feature_size=128, return_attention_mask=True)
    processor = AudioFlamingo3Processor(
        feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=_chat_template(SOUND)
    )
    config = AudioFlamingo3Config(
        audio_config={
            "model_type": "audioflamingo3_encoder",
            "num_mel_bins": 128,
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        },
        text_config=_text_config(tokenizer, model_type="qwen2"),
        audio_token_id=tokenizer.convert_tokens_to_ids(SOUND),
    )
    torch.manual_seed(0)
    model = _audible(AudioFlamingo3ForConditionalGeneration(config).eval(), tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


# --- Qwen2.5-Omni ---


def _omni_thinker_config(tokenizer) -> Qwen2_5OmniThinkerConfig:
    ids = tokenizer.convert_tokens_to_ids
    return Qwen2_5OmniThinkerConfig(
        audio_config={
            "num_mel_bins": 128,
            "d_model": 32,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "output_dim": 32,  # = the text model's hidden size
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [0],
        },
        text_config=_text_config(
            tokenizer,
            # multimodal rotary positions: head_dim 8 = 2 x (2 temporal + 1 height + 1 width)
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 1, 1]},
        ),
        audio_token_index=ids(AUDIO),
        image_token_index=ids(OMNI_NAMED_TOKENS["image_token"]),
        video_token_index=ids(OMNI_NAMED_TOKENS["video_token"]),
        audio_start_token_id=ids(AUDIO_BOS),
        audio_end_token_id=ids(AUDIO_EOS),
        vision_start_token_id=ids(OMNI_NAMED_TOKENS["vision_bos_token"]),
        user_token_id=ids(IM_START),
    )


def _omni_hears(thinker):
    """At random init the Omni audio encoder's output is almost all position embedding, so noise
    and silence decode alike; stronger input convolutions let the audio show in the text."""
    with torch.no_grad():
        thinker.model.audio_tower.conv1.weight.mul_(4.0)
        thinker.model.audio_tower.conv2.weight.mul_(4.0)
    return thinker


def _save_omni_processing_parts(directory: Path, tokenizer) -> None:
    # The audio half of Qwen2.5-Omni's processor; the image and video halves need torchvision.
    tokenizer.save_pretrained(directory)
    WhisperFeatureExtractor(feature_size=128, return_attention_mask=True).save_pretrained(directory)


def build_tiny_qwen_omni_thinker(directory: Path) -> Path:
    """Save a random tiny Qwen2.5-Omni thinker (model_type qwen2_5_omni_thinker) with its
    tokenizer and feature extractor (no processor: that needs torchvision)."""
    directory = Path(directory)
    tokenizer = _tokenizer(named_tokens=OMNI_NAMED_TOKENS, chat_template=_chat_template(AUDIO_BOS + AUDIO + AUDIO_EOS))
    torch.manual_seed(0)
    model = Qwen2_5OmniThinkerForConditionalGeneration(_omni_thinker_config(tokenizer)).eval()
    model = _omni_hears(_audible(model, tokenizer))
    model.save_pretrained(directory)
    _save_omni_processing_parts(directory, tokenizer)
    return directory


def build_tiny_qwen_omni(directory: Path) -> Path:
    """Save a random tiny full Qwen2.5-Omni checkpoint (model_type qwen2_5_omni). The talker is
    left out (its toy config would be most of the work); the released layout's speaker file is
    there, empty, because loading the full model requires it."""
    directory = Path(directory)
    tokenizer = _tokenizer(named_tokens=OMNI_NAMED_TOKENS, chat_template=_chat_template(AUDIO_BOS + AUDIO + AUDIO_EOS))
    config = Qwen2_5OmniConfig(thinker_config=_omni_thinker_config(tokenizer).to_dict(), enable_audio_output=False)
    torch.manual_seed(0)
    model = Qwen2_5OmniForConditionalGeneration(config).eval()
    _omni_hears(_audible(model.thinker, tokenizer))
    model.save_pretrained(directory)
    torch.save({}, directory / "spk_dict.pt")
    _save_omni_processing_parts(directory, tokenizer)
    return directory


class AudioOnlyOmniProcessor:
    """The audio path of Qwen2_5OmniProcessor, for machines without torchvision.

    Same features (Whisper log-mel padded to the 30 s window, `feature_attention_mask`) and same
    ids: each <|AUDIO|> becomes one token per encoder output frame, ((L - 1) // 2 + 1 - 2) // 2 + 1
    for L mel frames, the count the real processor computes.
    """

    def __init__(self, feature_extractor, tokenizer):
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer

    @classmethod
    def from_pretrained(cls, directory):
        return cls(WhisperFeatureExtractor.from_pretrained(directory), AutoTokenizer.from_pretrained(directory))

    def apply_chat_template(self, conversation, **kwargs):
        return self.tokenizer.apply_chat_template(conversation, **kwargs)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def __call__(self, text, audio, sampling_rate, return_tensors="pt", padding=True):
        features = self.feature_extractor(
            audio, sampling_rate=sampling_rate, padding="max_length", return_attention_mask=True, return_tensors="pt"
        )
        mask = features.pop("attention_mask")
        counts = ((mask.sum(-1) - 1) // 2 + 1 - 2) // 2 + 1
        expanded = [t.replace(AUDIO, AUDIO * int(n), 1) for t, n in zip(text, counts, strict=True)]
        ids = self.tokenizer(expanded, padding=padding, return_tensors=return_tensors)
        return BatchFeature({**ids, "input_features": features["input_features"], "feature_attention_mask": mask})


# --- MiDashengLM ---


def write_midashenglm_config_without_code(directory: Path, auto_map: dict | None = None) -> Path:
    """A MiDashengLM-looking checkpoint whose remote code is missing: config.json only."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "midashenglm", "architectures": ["MiDashengLMModel"]}
    if auto_map:
        config["auto_map"] = auto_map
    (directory / "config.json").write_text(json.dumps(config))
    return directory


# A stand-in for MiDashengLM's shipped code: a Qwen2-Audio under model_type "midashenglm",
# whose generate() returns only the continuation, as MiDashengLM's does (it generates from
# input embeddings). It exercises the trust_remote_code path end to end, not MiDashengLM itself.
_REMOTE_CONFIG_CODE = '''
from transformers import Qwen2AudioConfig


class TinyRemoteConfig(Qwen2AudioConfig):
    model_type = "midashenglm"
'''
_REMOTE_MODEL_CODE = '''
from transformers import Qwen2AudioForConditionalGeneration

from .configuration_tiny_remote import TinyRemoteConfig


class TinyRemoteModel(Qwen2AudioForConditionalGeneration):
    config_class = TinyRemoteConfig

    def generate(self, input_ids=None, **kwargs):
        return super().generate(input_ids=input_ids, **kwargs)[:, input_ids.shape[1]:]
'''


def build_tiny_remote_code_midashenglm(directory: Path) -> Path:
    """A tiny checkpoint that, like MiDashengLM, needs its own code (shipped in the directory)."""
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    directory = build_tiny_qwen2_audio(directory)
    weights = _load_tiny_qwen2_audio(directory)
    (directory / "configuration_tiny_remote.py").write_text(_REMOTE_CONFIG_CODE)
    (directory / "modeling_tiny_remote.py").write_text(_REMOTE_MODEL_CODE)
    config = json.loads((directory / "config.json").read_text())
    config["model_type"] = "midashenglm"
    config["architectures"] = ["TinyRemoteModel"]
    config["auto_map"] = {
        "AutoConfig": "configuration_tiny_remote.TinyRemoteConfig",
        "AutoModelForCausalLM": "modeling_tiny_remote.TinyRemoteModel",
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    # Re-save the weights through the stand-in class: transformers renames Qwen2-Audio's weights
    # on save and load by model_type, so they must be written under the new one.
    model_class = get_class_from_dynamic_module(config["auto_map"]["AutoModelForCausalLM"], directory)
    model = model_class(AutoConfig.from_pretrained(directory, trust_remote_code=True))
    model.load_state_dict(weights.state_dict())
    model.generation_config = weights.generation_config
    model.save_pretrained(directory)
    return directory


# --- a tiny model that says chosen words ---


def steer_to_words(directory: Path, words: list[str], bias: float = 100.0) -> Path:
    """Make the random model at `directory` reply with `words` over and over (" rain dog rain
    dog ..."), through its saved generation config's `sequence_bias`, as a scripted LLM
    replies what a test chooses. Only the decoding is steered: the audio still goes through
    the real processor, encoder and generate call, batched like any other request."""
    directory = Path(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    ids = [i for w in words for i in tokenizer.encode(" " + w, add_special_tokens=False)]
    # The first token always; each next one after its predecessor, more strongly, so the
    # sequence runs in order and then starts again.
    sequence_bias = [[[ids[0]], bias]] + [[[ids[k - 1], ids[k]], bias * (k + 2)] for k in range(1, len(ids))]
    config = GenerationConfig.from_pretrained(directory)
    config.sequence_bias = sequence_bias
    config.save_pretrained(directory)
    return directory


def build_tiny_whisper(directory: Path) -> Path:
    """A randomly initialised Whisper of a few thousand parameters with the real English
    tokenizer (faster-whisper's bundled tiny.en's): what `transformers serve` transcribes
    with, where production serves a real Whisper."""
    from workers.method.perception.tools.transcription.whisper import bundled_model_dir

    tokenizer = WhisperTokenizerFast(tokenizer_file=str(bundled_model_dir("tiny.en") / "tokenizer.json"))
    start, end = tokenizer.convert_tokens_to_ids(["<|startoftranscript|>", "<|endoftext|>"])
    special = {"decoder_start_token_id": start, "eos_token_id": end, "pad_token_id": end, "bos_token_id": end}
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=64, **special))
    model.generation_config = GenerationConfig(
        **special, no_timestamps_token_id=tokenizer.convert_tokens_to_ids("<|notimestamps|>"), is_multilingual=False,
        max_length=20, forced_decoder_ids=None, begin_suppress_tokens=[], suppress_tokens=[])
    model.save_pretrained(directory)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(directory)
    return directory
