"""Speech recognition asked of a transcription service: an OpenAI-compatible
`/v1/audio/transcriptions` endpoint (vLLM serving Whisper, `transformers serve`), with
the result shaped as the in-process recogniser's (workers/method/perception/tools/transcription/whisper.py).

It asks for `verbose_json` with word and segment timestamps. A server that refuses the
timestamp request (`transformers serve` answers 422 to `timestamp_granularities`) is asked
again without it, and this process does not ask it again; a reply without segments is one
segment spanning the clip, marked `"timestamps": "none"`, and the evidence says so.
"""

import logging
import threading

import numpy as np

from core.settings import get_settings
from workers.method.perception.audio_io import wav_bytes

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
GRANULARITIES = ["word", "segment"]


class SpeechServiceError(RuntimeError):
    """The service refused a clip, failed it, or could not be reached."""


class SpeechService:
    sampling_rate = SAMPLE_RATE

    def __init__(self, base_url: str, model: str):
        import openai

        settings = get_settings()
        self.base_url, self.model = base_url.rstrip("/"), model
        self.name = f"{self.base_url}#{model}"
        # Retries are the step's (its attempts are audited); the client's own would hide them.
        self._client = openai.OpenAI(base_url=self.base_url, api_key=settings.asr_api_key.get_secret_value(),
                                     timeout=settings.asr_timeout_s, max_retries=0)
        self._ask_granularities = True
        self._learning = threading.Lock()

    def transcribe(self, waveform: np.ndarray, offset_s: float = 0.0) -> dict:
        """Segments and words with absolute timestamps (offset_s: where the clip starts)."""
        reply = self._ask(wav_bytes(waveform, SAMPLE_RATE))
        duration = len(waveform) / SAMPLE_RATE
        try:
            segments = [_segment(s, offset_s) for s in reply.get("segments") or []]
            words = [_word(w, offset_s) for w in reply.get("words") or []]
        except (KeyError, TypeError, ValueError) as exc:  # not the documented verbose_json shape
            raise SpeechServiceError(f"{self.name} answered a transcription of an unknown shape: {exc!r}") from exc
        for segment in segments:  # words come apart from segments: each goes in the one it starts in
            segment["words"] = [w for w in words if segment["start"] <= w["start"] < segment["end"]] or segment["words"]
        timestamps = "words" if words else "segments" if segments else "none"
        if not segments and ((reply.get("text") or "").strip() or words):
            # Words without segments, or text alone: one segment spanning the clip.
            segments = [{"start": round(offset_s, 2), "end": round(offset_s + duration, 2),
                         "text": (reply.get("text") or " ".join(w["word"] for w in words)).strip(), "words": words}]
        return {"language": reply.get("language"), "language_probability": None, "multilingual": False,
                "segments": segments, "timestamps": timestamps}

    def transcribe_many(self, clips: list[tuple[np.ndarray, float]], batch_size: int = 16) -> list[dict | Exception]:
        results: list[dict | Exception] = []
        for waveform, offset_s in clips:
            try:
                results.append(self.transcribe(waveform, offset_s))
            except SpeechServiceError as exc:
                results.append(exc)
        return results

    def _ask(self, audio: bytes) -> dict:
        import openai

        def create(**extra):
            return self._client.audio.transcriptions.create(
                model=self.model, file=("clip.wav", audio, "audio/wav"), response_format="verbose_json", **extra)

        try:
            if self._ask_granularities:
                try:
                    return _as_dict(create(timestamp_granularities=GRANULARITIES))
                except openai.APIStatusError as exc:
                    if exc.status_code not in (400, 422) or "timestamp_granularities" not in str(exc.body):
                        raise
                    with self._learning:
                        if self._ask_granularities:
                            log.warning("%s refuses timestamp_granularities (%s): asking for text only",
                                        self.name, exc.status_code)
                            self._ask_granularities = False
            return _as_dict(create())
        except openai.APIStatusError as exc:
            raise SpeechServiceError(f"{self.name} answered {exc.status_code}: {str(exc.body)[:300]}") from exc
        except openai.APIError as exc:
            raise SpeechServiceError(f"{self.name} could not be asked: {exc}") from exc


def _as_dict(reply) -> dict:
    return reply if isinstance(reply, dict) else reply.model_dump(exclude_none=True)


def _segment(segment: dict, offset_s: float) -> dict:
    return {"start": round(float(segment["start"]) + offset_s, 2), "end": round(float(segment["end"]) + offset_s, 2),
            "text": str(segment.get("text", "")).strip(), "words": []}


def _word(word: dict, offset_s: float) -> dict:
    return {"start": round(float(word["start"]) + offset_s, 2), "end": round(float(word["end"]) + offset_s, 2),
            "word": str(word.get("word", "")).strip()}
