"""Where speech is: voice-activity segments from Silero VAD (weights ship in the wheel).

Run through onnxruntime rather than TorchScript: the same model, no torch threads
competing with the other tools of a CPU worker.
"""

import numpy as np
import torch

from workers.method.perception.audio_io import AudioClip
from workers.method.perception.tools.voice_activity.spec import MODEL_NAME

RATE = 16000  # the rate the clip arrives at, and one Silero supports
SEGMENT_LIMIT = 20  # segments named in the text


class VoiceActivityDetector:
    name = MODEL_NAME

    def __init__(self):
        from silero_vad import get_speech_timestamps, load_silero_vad

        self._model = load_silero_vad(onnx=True)
        self._timestamps = get_speech_timestamps

    def segments(self, clip: AudioClip) -> dict:
        if clip.sample_rate != RATE:
            raise ValueError(f"voice activity needs {RATE} Hz audio, got {clip.sample_rate}")
        found = self._timestamps(torch.from_numpy(np.ascontiguousarray(clip.waveform, dtype=np.float32)),
                                 self._model, sampling_rate=RATE, return_seconds=True)
        spans = [{"start": round(s["start"] + clip.offset_s, 2), "end": round(s["end"] + clip.offset_s, 2)} for s in found]
        speech_s = sum(s["end"] - s["start"] for s in spans)
        return {
            "start": round(clip.offset_s, 2),
            "end": round(clip.offset_s + clip.duration_s, 2),
            "segments": spans,
            "speech_seconds": round(speech_s, 2),
            "speech_ratio": round(speech_s / clip.duration_s, 3) if clip.duration_s else 0.0,
        }


def render(facts: dict) -> str:
    spans = facts["segments"]
    if not spans:
        return "no speech detected"
    named = ", ".join(f"{s['start']:.2f}-{s['end']:.2f}" for s in spans[:SEGMENT_LIMIT])
    return (f"speech in {len(spans)} segment(s) at {named} s" + ("…" if len(spans) > SEGMENT_LIMIT else "")
            + f" ({facts['speech_seconds']} s, {facts['speech_ratio']:.0%} of the audio)")
