"""Musical and rhythmic facts with librosa: tempo and beats, onsets and separate sound
bursts, the pitch contour (pyin), key and mode (chroma profiles) and chord quality.

Every time is absolute (seconds in the original file), so a windowed call stays
comparable with the rest of the evidence.
"""

import threading

import numpy as np

from core.numba_cache import compiling_alone, librosa_compiled
from workers.method.perception.audio_io import AudioClip
from workers.method.perception.helper_process import run_apart

librosa = librosa_compiled()  # its compiled parts by this process alone (core/numba_cache.py)

PITCH_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
# Krumhansl-Kessler key profiles (probe-tone ratings), C major and C minor.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
TRIADS = {"major": (0, 4, 7), "minor": (0, 3, 7), "diminished": (0, 3, 6), "augmented": (0, 4, 8)}
BURST_TOP_DB = 30  # a burst is a stretch within this many dB of the loudest frame
REGULAR_BURSTS_CV = 0.15  # bursts spaced this steadily make a tempo by themselves
MIN_NOTE_S = 0.08  # shorter stable-pitch runs are noise, not notes
SAME_NOTE_CENTS = 50
PITCH_MAX_S = 60.0  # pyin is the slow part; longer clips are tracked over their start only
LIST_LIMIT = 8  # how many times or notes the text names before "…" (the output has all)


_compiled = threading.Event()  # this process has compiled (or loaded) every jitted function below
_compiling = threading.Lock()


def analyse(clip: AudioClip) -> dict:
    # In a step, apart from the lease's renewals: pyin's decoder holds the interpreter lock
    # for seconds (workers/method/perception/helper_process.py).
    return run_apart(analysed_here, clip)


def analysed_here(clip: AudioClip) -> dict:
    compile_once()
    return _analyse(clip)


def compile_once() -> None:
    """Run the analysis once on a clip that takes every branch (a tone with a gap: bursts,
    the beat tracker, chroma, pyin), holding the numba cache's lock (core.numba_cache.compiling_alone):
    every jitted function this module calls is then compiled, or loaded, before real clips run
    without the lock."""
    with _compiling:
        if _compiled.is_set():
            return
        rate = 16000
        t = np.arange(rate) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
        with compiling_alone():
            _analyse(AudioClip(np.concatenate([tone, np.zeros(rate // 2, np.float32), tone]), rate, "warm-up", 0.0))
        _compiled.set()


def _analyse(clip: AudioClip) -> dict:
    y, sr, offset = clip.waveform.astype(np.float32), clip.sample_rate, clip.offset_s
    onsets = librosa.onset.onset_detect(y=y, sr=sr, units="time", backtrack=False)
    bursts = _bursts(y, sr, offset)
    chroma = librosa.feature.chroma_cqt(y=y, sr=sr).mean(axis=1) if np.any(y) else np.zeros(12)
    return {
        "start": round(offset, 2),
        "end": round(offset + clip.duration_s, 2),
        "tempo": _tempo(y, sr, np.array([b["start"] for b in bursts]), offset),
        "onsets": {"count": len(onsets), "times": _shift(onsets, offset)},
        "bursts": bursts,
        "pitch_contour": _notes(y[: int(PITCH_MAX_S * sr)], sr, offset),
        "key": _key(chroma),
        "chord": _chord(chroma),
    }


def _shift(times, offset: float) -> list[float]:
    return [round(float(t) + offset, 3) for t in times]


def _tempo(y: np.ndarray, sr: int, burst_starts: np.ndarray, offset: float) -> dict:
    intervals = np.diff(burst_starts)
    if len(intervals) >= 3 and np.std(intervals) / np.mean(intervals) < REGULAR_BURSTS_CV:
        # A click track or a steady pulse of separate sounds: their spacing is the tempo,
        # free of the beat tracker's octave errors (150 BPM clicks reported as 75). Burst
        # starts, not onsets: onset detection also fires on each click's decay.
        return {"bpm": round(60.0 / float(np.median(intervals)), 1), "method": "regular burst intervals",
                "beat_times": [round(float(t), 3) for t in burst_starts]}
    tempo, beats = librosa.beat.beat_track(y=y, sr=sr, units="time")
    bpm = float(np.atleast_1d(tempo)[0])
    return {"bpm": round(bpm, 1) if len(beats) else None, "method": "beat tracker", "beat_times": _shift(beats, offset)}


def _bursts(y: np.ndarray, sr: int, offset: float) -> list[dict]:
    if not np.any(y):
        return []
    spans = librosa.effects.split(y, top_db=BURST_TOP_DB, frame_length=512, hop_length=128)
    return [{"start": round(s / sr + offset, 3), "end": round(e / sr + offset, 3)} for s, e in spans]


def _notes(y: np.ndarray, sr: int, offset: float) -> list[dict]:
    if len(y) < 2048 or not np.any(y):
        return []
    hop = 256
    f0, voiced, _ = librosa.pyin(y, fmin=50.0, fmax=2000.0, sr=sr, frame_length=2048, hop_length=hop)
    times = librosa.times_like(f0, sr=sr, hop_length=hop)
    notes: list[dict] = []
    run: list[tuple[float, float]] = []  # (time, f0) of the note being followed
    for t, hz, is_voiced in zip(times, f0, voiced):
        if is_voiced and run and abs(1200 * np.log2(hz / np.median([h for _, h in run]))) < SAME_NOTE_CENTS:
            run.append((t, hz))
            continue
        notes += _as_note(run, hop / sr, offset)
        run = [(t, hz)] if is_voiced else []
    return notes + _as_note(run, hop / sr, offset)


def _as_note(run: list, frame_s: float, offset: float) -> list[dict]:
    if not run or run[-1][0] - run[0][0] + frame_s < MIN_NOTE_S:
        return []
    hz = float(np.median([h for _, h in run]))
    return [{"start": round(run[0][0] + offset, 2), "end": round(run[-1][0] + frame_s + offset, 2),
             "f0_hz": round(hz, 1), "note": librosa.hz_to_note(hz)}]


def _key(chroma: np.ndarray) -> dict | None:
    if not np.any(chroma):
        return None
    scores = [
        (float(np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]), PITCH_NAMES[tonic], mode)
        for mode, profile in (("major", MAJOR_PROFILE), ("minor", MINOR_PROFILE))
        for tonic in range(12)
    ]
    r, tonic, mode = max(scores)
    return {"tonic": tonic, "mode": mode, "correlation": round(r, 3)}


def _chord(chroma: np.ndarray) -> dict | None:
    if not np.any(chroma):
        return None
    unit = chroma / np.linalg.norm(chroma)
    scores = []
    for quality, intervals in TRIADS.items():
        for root in range(12):
            template = np.zeros(12)
            template[[(root + i) % 12 for i in intervals]] = 1 / np.sqrt(3)
            scores.append((float(unit @ template), PITCH_NAMES[root], quality))
    match, root_name, quality = max(scores)
    return {"root": root_name, "quality": quality, "match": round(match, 3)}


def render(facts: dict) -> str:
    parts = []
    tempo = facts["tempo"]
    if tempo["bpm"]:
        parts.append(f"tempo about {tempo['bpm']} BPM ({tempo['method']}, {len(tempo['beat_times'])} beats)")
    bursts = facts["bursts"]
    spans = ", ".join(f"{b['start']:.2f}-{b['end']:.2f}" for b in bursts[:LIST_LIMIT])
    parts.append(f"{len(bursts)} separate sound burst(s)" + (f" at {spans} s" if bursts else "")
                 + ("…" if len(bursts) > LIST_LIMIT else ""))
    parts.append(f"{facts['onsets']['count']} onset(s)")
    notes = facts["pitch_contour"]
    if notes:
        named = "; ".join(f"{n['start']:.2f}-{n['end']:.2f} s {n['f0_hz']} Hz ({n['note']})" for n in notes[:LIST_LIMIT])
        parts.append(f"pitch contour: {named}" + ("…" if len(notes) > LIST_LIMIT else ""))
    else:
        parts.append("no stable pitch found")
    if facts["chord"]:
        chord = facts["chord"]
        parts.append(f"chord: {chord['root']} {chord['quality']} triad (match {chord['match']})")
    if facts["key"]:
        key = facts["key"]
        parts.append(f"key estimate: {key['tonic']} {key['mode']} (r={key['correlation']})")
    return "; ".join(parts)
