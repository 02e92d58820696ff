"""What stays the same under everything else: sustained tones (a hum, a whistle, a held
chord) and the character of the background between sounds (digital silence, or a
broadband noise floor such as static or hiss).

Taggers trained on foreground events tend to name the speech and miss a steady tone or
noise beneath it, which is exactly what "what is in the background?" asks about.
"""

import numpy as np
from scipy.ndimage import median_filter

from core.numba_cache import librosa_compiled
from workers.method.perception.audio_io import AudioClip

librosa = librosa_compiled()  # its compiled parts by this process alone (core/numba_cache.py)

N_FFT, HOP = 2048, 512
PEAK_OVER_NEIGHBOURS_DB = 20.0  # a tone stands this far above the bins around it
PEAK_WITHIN_DB_OF_MAX = 50.0  # and is not buried far below the loudest sound
SUSTAINED_SHARE = 0.8  # present in at least this share of frames
TONE_LIMIT = 4  # strongest sustained tones named in the text
QUIET_FRAME_SHARE = 0.1  # the background is judged on the quietest tenth of the frames:
# with a fifth, the soft consonants of unbroken speech passed for a noise floor (devset)
SILENCE_DBFS = -70.0  # quieter than this between sounds: (near) digital silence
NOISE_FLATNESS = 0.3  # a flat spectrum in the quiet frames: broadband noise


def analyse(clip: AudioClip) -> dict:
    y, sr = clip.waveform, clip.sample_rate
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    spectrum = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) + 1e-10
    return {
        "start": round(clip.offset_s, 2),
        "end": round(clip.offset_s + clip.duration_s, 2),
        "sustained_tones": _sustained_tones(spectrum, sr),
        "background": _background(y, spectrum),
    }


def _sustained_tones(spectrum: np.ndarray, sr: int) -> list[dict]:
    db = 20 * np.log10(spectrum)
    neighbours = median_filter(db, size=(41, 1), mode="nearest")
    is_peak = (db - neighbours > PEAK_OVER_NEIGHBOURS_DB) & (db > db.max() - PEAK_WITHIN_DB_OF_MAX)
    share = is_peak.mean(axis=1)
    bins = np.flatnonzero(share >= SUSTAINED_SHARE)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=N_FFT)
    level = np.median(db, axis=1)
    tones = []
    for group in np.split(bins, np.flatnonzero(np.diff(bins) > 2) + 1) if len(bins) else []:
        best = group[np.argmax(level[group])]
        tones.append({"hz": round(float(freqs[best]), 1), "share": round(float(share[best]), 2),
                      "level_db": round(float(level[best]), 1)})
    return sorted(tones, key=lambda t: -t["level_db"])


def _background(y: np.ndarray, spectrum: np.ndarray) -> dict:
    rms = librosa.feature.rms(S=spectrum, frame_length=N_FFT)[0]
    quiet = rms <= np.quantile(rms, QUIET_FRAME_SHARE)
    level = float(20 * np.log10(np.median(rms[quiet]) + 1e-12))
    flatness = float(np.median(librosa.feature.spectral_flatness(S=spectrum[:, quiet])))
    if level < SILENCE_DBFS:
        kind = "near silence"
    elif flatness >= NOISE_FLATNESS:
        kind = "broadband noise"
    else:
        kind = "coloured sound"  # a steady but not flat floor: a hum, a room, distant music
    return {"kind": kind, "level_dbfs": round(level, 1), "flatness": round(flatness, 3)}


def render(facts: dict) -> str:
    tones = facts["sustained_tones"]
    if tones:
        named = ", ".join(f"{t['hz']:.0f} Hz ({t['share']:.0%} of the time)" for t in tones[:TONE_LIMIT])
        parts = [f"sustained tone(s): {named}" + ("…" if len(tones) > TONE_LIMIT else "")]
    else:
        parts = ["no sustained pitched sound"]
    bg = facts["background"]
    parts.append(f"between sounds: {bg['kind']} ({bg['level_dbfs']} dBFS, spectral flatness {bg['flatness']})")
    return "; ".join(parts)
