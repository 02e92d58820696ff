"""Tiny randomly initialised models, built offline at test time.

No model hub is reachable from the test machines, so the ALM backend is exercised on a
Qwen2-Audio of the real architecture with toy sizes: the loading, prompting, batching
and decoding code paths are the production ones, only the weights are noise.
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    WhisperFeatureExtractor,
)

AUDIO, AUDIO_BOS, AUDIO_EOS = "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"
IM_START, IM_END, END_OF_TEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, AUDIO_BOS, AUDIO_EOS, AUDIO]

# A few prompt-like lines so the BPE learns some merges; byte-level keeps any text encodable.
_CORPUS = [
    "system\nYou are a helpful assistant.",
    "user\nAudio 1: Describe this audio in detail.",
    "assistant\nA dog barks twice while rain falls on a roof; a man speaks briefly.",
    "What is the speaker saying? Transcribe the speech. Is there music?",
]


def _tokenizer() -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(_CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=IM_END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[IM_START, AUDIO_BOS, AUDIO_EOS, AUDIO],
        padding_side="left",  # batched generation with a decoder-only model
    )


def _config(tokenizer: PreTrainedTokenizerFast) -> Qwen2AudioConfig:
    audio_config = {
        "model_type": "qwen2_audio_encoder",
        "num_mel_bins": 128,
        "d_model": 32,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "max_source_positions": 1500,  # fixed by the 30 s Whisper window: 3000 mel frames / 2
    }
    text_config = {
        "model_type": "qwen2",
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
    }
    return Qwen2AudioConfig(
        audio_config=audio_config,
        text_config=text_config,
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
    model = Qwen2AudioForConditionalGeneration(_config(tokenizer)).eval()
    special_ids = tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS)
    with torch.no_grad():
        # Zero logits for special tokens: random weights would otherwise often stop at once
        # (empty outputs make the batching test vacuous) or emit tokens that decode to nothing.
        model.lm_head.weight[special_ids] = 0.0
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id], pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
