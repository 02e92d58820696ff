"""Loudness over time: integrated LUFS (ITU-R BS.1770 via pyloudnorm), RMS level per
window, and where the audio is loudest and quietest."""

import numpy as np
import pyloudnorm

from workers.method.perception.audio_io import AudioClip

WINDOW_S = 0.5
MIN_LUFS_SECONDS = 0.4  # BS.1770 gating needs at least one 400 ms block
SERIES_LIMIT = 120  # the RMS series kept in the output (60 s at 0.5 s windows)


def analyse(clip: AudioClip) -> dict:
    x, sr, offset = clip.waveform.astype(np.float64), clip.sample_rate, clip.offset_s
    size = max(1, int(WINDOW_S * sr))
    rms_db = [
        round(float(20 * np.log10(np.sqrt(np.mean(x[i:i + size] ** 2)) + 1e-12)), 1)
        for i in range(0, max(len(x) - size // 2, 1), size)
    ]
    loudest, quietest = int(np.argmax(rms_db)), int(np.argmin(rms_db))
    return {
        "start": round(offset, 2),
        "end": round(offset + clip.duration_s, 2),
        "integrated_lufs": _lufs(x, sr),
        "window_s": WINDOW_S,
        "rms_dbfs": rms_db[:SERIES_LIMIT],
        "loudest": {"start": round(offset + loudest * WINDOW_S, 2), "rms_dbfs": rms_db[loudest]},
        "quietest": {"start": round(offset + quietest * WINDOW_S, 2), "rms_dbfs": rms_db[quietest]},
    }


def _lufs(x: np.ndarray, sr: int) -> float | None:
    if len(x) < MIN_LUFS_SECONDS * sr or not np.any(x):
        return None
    value = pyloudnorm.Meter(sr).integrated_loudness(x)
    return round(float(value), 1) if np.isfinite(value) else None


def render(facts: dict) -> str:
    lufs = f"{facts['integrated_lufs']} LUFS integrated" if facts["integrated_lufs"] is not None else "too short or silent for LUFS"
    loud, quiet = facts["loudest"], facts["quietest"]
    return (
        f"{lufs}; loudest {WINDOW_S} s window at {loud['start']} s ({loud['rms_dbfs']} dBFS RMS), "
        f"quietest at {quiet['start']} s ({quiet['rms_dbfs']} dBFS RMS)"
    )
