"""Basic signal facts: cheap, always true, and often what a question hinges on."""

import numpy as np

from workers.method.perception.audio_io import AudioClip

SILENCE_DBFS = -50.0
FRAME_S = 0.05


def signal_facts(clip: AudioClip) -> dict:
    x = clip.waveform
    frame = max(1, int(FRAME_S * clip.sample_rate))
    usable = len(x) // frame * frame
    frames = x[:usable].reshape(-1, frame) if usable else x[None, :]
    frame_db = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)
    rms = float(np.sqrt(np.mean(x**2)))
    return {
        "start": round(clip.offset_s, 2),
        "end": round(clip.offset_s + clip.duration_s, 2),
        "duration_s": round(clip.duration_s, 2),
        "sample_rate": clip.sample_rate,
        "rms_dbfs": round(20 * np.log10(rms + 1e-12), 1),
        "peak": round(float(np.max(np.abs(x))), 3),
        "clipping_ratio": round(float(np.mean(np.abs(x) >= 0.999)), 4),
        "silence_ratio": round(float(np.mean(frame_db < SILENCE_DBFS)), 3),
    }


def render(facts: dict) -> str:
    return (
        f"duration {facts['duration_s']} s; level {facts['rms_dbfs']} dBFS RMS, peak {facts['peak']}; "
        f"silent {facts['silence_ratio']:.0%} of the time; clipped samples {facts['clipping_ratio']:.2%}"
    )
