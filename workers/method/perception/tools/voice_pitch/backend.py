"""Voice pitch facts with Praat (parselmouth): F0 median and range over voiced frames.

Reported as acoustic measurements only. Pitch ranges of voices overlap widely, so this
never states a gender or an identity; the agents weigh the numbers themselves.
"""

import numpy as np
import parselmouth

from workers.method.perception.audio_io import AudioClip

F0_FLOOR_HZ = 60.0
F0_CEILING_HZ = 500.0  # speech; singing and tones above this belong to the music tool
MIN_VOICED_FRAMES = 5


def analyse(clip: AudioClip) -> dict:
    sound = parselmouth.Sound(clip.waveform.astype(np.float64), sampling_frequency=clip.sample_rate)
    pitch = sound.to_pitch(pitch_floor=F0_FLOOR_HZ, pitch_ceiling=F0_CEILING_HZ)
    f0 = pitch.selected_array["frequency"]
    voiced = f0[f0 > 0]
    facts = {
        "start": round(clip.offset_s, 2),
        "end": round(clip.offset_s + clip.duration_s, 2),
        "voiced_seconds": round(len(voiced) * pitch.time_step, 2),
    }
    if len(voiced) < MIN_VOICED_FRAMES:
        return facts | {"f0_median_hz": None}
    return facts | {
        "f0_median_hz": round(float(np.median(voiced)), 1),
        "f0_p10_hz": round(float(np.percentile(voiced, 10)), 1),
        "f0_p90_hz": round(float(np.percentile(voiced, 90)), 1),
    }


def render(facts: dict) -> str:
    if facts["f0_median_hz"] is None:
        return "no voiced speech found for a pitch measurement"
    return (
        f"voice fundamental frequency (F0) median {facts['f0_median_hz']} Hz, "
        f"10th-90th percentile {facts['f0_p10_hz']}-{facts['f0_p90_hz']} Hz "
        f"over {facts['voiced_seconds']} s of voiced sound"
    )
