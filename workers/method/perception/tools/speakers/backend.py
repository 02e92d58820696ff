"""How many people speak, and when each one does: speaker turns from voice embeddings.

Speech segments come from Silero VAD (the voice-activity tool's model). Inside them,
windows of 1.5 s every 0.75 s are embedded with resemblyzer's voice encoder (weights ship
in its wheel, installed --no-deps: it declares the unbuildable `webrtcvad`; we install
`webrtcvad-wheels`, which provides the same module). The windows are grouped by
agglomerative clustering under a cosine-distance threshold, so the number of speakers is
found rather than given, and runs of one cluster become turns. Speakers are labelled
S1, S2, ... in order of first appearance: nothing is said about who they are.
"""

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from workers.method.perception.audio_io import AudioClip
from workers.method.perception.tools.speakers.spec import installed

RATE = 16000  # resemblyzer's and Silero's rate
WINDOW_S = 1.5  # long enough for a stable voice embedding, short enough to place a change
HOP_S = 0.75  # half a window: a change of speaker is placed within about this much
# Shorter speech (a word or two) embeds what is said more than who says it: on the devset
# two windows of the same spoken digit are 0.01 apart and 0.4 from the speaker's other
# words. It joins the nearest speaker instead of founding one of its own.
MIN_WINDOW_S = 1.0
# Average-linkage cosine distance under which windows are one voice. Tuned on the devset's
# espeak-ng speech (gender-00/01/02, city-*, spoken_number-*, background-*, so synthetic
# voices only): each of those 12 clips alone merges into one cluster by 0.27 at most; two
# clips of different voices one after the other (12 pairs, e.g. gender-00 then gender-02)
# merge only at 0.42-0.50. 0.35 sits in that gap; real recordings, noisier and with more
# alike voices, may want it retuned.
DISTANCE_THRESHOLD = 0.35
BLEND_WINDOWS = round(WINDOW_S / HOP_S)  # windows that can straddle one instant
MAX_PAUSE_S = 2.0  # one speaker's segments this close together are one turn
TARGET_DBFS = -30.0  # resemblyzer's training loudness; quieter windows are raised to it
FRAMES_PER_S = 100  # resemblyzer's mel hop is 10 ms
BATCH = 64  # windows per encoder call: bounds memory on a long clip
TURN_LIMIT = 12  # turns named in the text (all are in the output)


@dataclass(frozen=True)
class Window:
    start: float  # the audio embedded, seconds from the clip's start
    end: float
    span_start: float  # the part of the speech this window answers for (overlapping windows
    span_end: float  # split their segment at the midpoints between their centres)

    @property
    def length(self) -> float:
        return self.end - self.start


class SpeakerEncoder:
    """resemblyzer's voice encoder: one L2-normalised 256-d vector per window of speech."""

    name = f"resemblyzer-0.1.4 ({WINDOW_S} s windows, cosine threshold {DISTANCE_THRESHOLD})"

    def __init__(self):
        if not installed():
            raise RuntimeError("the speakers tool needs resemblyzer: pip install --no-deps resemblyzer==0.1.4")
        # resemblyzer imports scipy.ndimage.morphology, deprecated in SciPy: not our warning to show.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder, audio
        self._mel = audio.wav_to_mel_spectrogram
        self._model = VoiceEncoder("cpu", verbose=False)  # device class cpu; never CUDA in a parent

    def window_mels(self, speech: np.ndarray, windows: list[tuple[float, float]]) -> list[np.ndarray]:
        """The encoder's input for each (start, end) window of one speech segment (seconds
        from its start): one mel spectrogram of the segment, sliced, since windows overlap."""
        mel = self._mel(speech)
        out = []
        for start, end in windows:
            first, frames = round(start * FRAMES_PER_S), max(1, round((end - start) * FRAMES_PER_S))
            piece = speech[int(start * RATE):int(end * RATE)]
            out.append(mel[first:first + frames] * _gain(piece) ** 2)  # mel is power: gain squared
        return out

    def embed(self, mels: list[np.ndarray]) -> np.ndarray:
        import torch

        out = np.zeros((len(mels), 256), dtype=np.float32)
        # The LSTM takes a batch of equal lengths: group the windows by frame count.
        for frames in {len(m) for m in mels}:
            index = [i for i, m in enumerate(mels) if len(m) == frames]
            for chunk in range(0, len(index), BATCH):
                part = index[chunk:chunk + BATCH]
                with torch.no_grad():
                    out[part] = self._model(torch.from_numpy(np.stack([mels[i] for i in part]))).numpy()
        return out


def _gain(piece: np.ndarray) -> float:
    # The encoder reads power mel spectrograms, not log ones, so level matters: raise quiet
    # speech to the loudness it was trained at (never lower it, as resemblyzer does).
    rms = float(np.sqrt(np.mean(piece.astype(np.float64) ** 2))) if len(piece) else 0.0
    return max(1.0, 10 ** (TARGET_DBFS / 20) / rms) if rms > 0 else 1.0


def speech_windows(start: float, end: float) -> list[Window]:
    """Windows over one speech segment; the last one is aligned to the segment's end so no
    speech is left out, and a segment shorter than a window is one window."""
    starts = [start]
    if end - start > WINDOW_S:
        starts = [float(s) for s in np.arange(start, end - WINDOW_S + 1e-9, HOP_S)]
        if end - WINDOW_S - starts[-1] > 0.05:
            starts.append(end - WINDOW_S)
    stops = [min(s + WINDOW_S, end) for s in starts]
    centres = [(s + e) / 2 for s, e in zip(starts, stops)]
    edges = [start] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [end]
    return [Window(*parts) for parts in zip(starts, stops, edges, edges[1:])]


def cluster(embeddings: np.ndarray, windows: list[Window]) -> np.ndarray:
    """Speaker labels 0, 1, ... per window, in order of first appearance.

    Only windows of at least MIN_WINDOW_S found speakers (all of them when none is that
    long); a blend of two voices at a change is not a speaker; the rest join the nearest.
    """
    founders = np.array([w.length >= MIN_WINDOW_S for w in windows])
    if not founders.any():
        founders[:] = True
    labels = np.full(len(windows), -1)
    labels[founders] = 0
    if founders.sum() > 1:
        tree = linkage(embeddings[founders], method="average", metric="cosine")
        labels[founders] = fcluster(tree, t=DISTANCE_THRESHOLD, criterion="distance") - 1
    for i in _blends(labels, windows):
        labels[i] = -1
    unset = labels < 0
    labels[unset] = _nearest(embeddings[unset], _centroids(embeddings, labels))
    first_seen = {label: rank for rank, label in enumerate(dict.fromkeys(labels.tolist()))}
    return np.array([first_seen[label] for label in labels.tolist()], dtype=int)


def _blends(labels: np.ndarray, windows: list[Window]) -> list[int]:
    """Windows taken for blends of two voices. A window that straddles a change of speaker
    without a pause embeds part of each voice and can land far from both: with windows
    overlapping by half, at most two in a row do. So a run of at most two windows whose
    cluster occurs nowhere else, inside continuous speech between two different
    speakers, is the change itself, not a third speaker."""
    runs = _runs(labels, windows)
    blends = []
    for before, run, after in zip(runs, runs[1:], runs[2:]):
        label = labels[run[0]]
        touching = (windows[before[-1]].span_end == windows[run[0]].span_start
                    and windows[run[-1]].span_end == windows[after[0]].span_start)
        only_here = np.count_nonzero(labels == label) == len(run)
        between_two = labels[before[0]] != labels[after[0]]
        if label >= 0 and len(run) <= BLEND_WINDOWS and only_here and touching and between_two:
            blends += run
    return blends


def _runs(labels: np.ndarray, windows: list[Window]) -> list[list[int]]:
    """Indices of consecutive windows with one label and no pause between them."""
    runs: list[list[int]] = []
    for i in range(len(windows)):
        if runs and labels[runs[-1][-1]] == labels[i] and windows[i - 1].span_end == windows[i].span_start:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _centroids(embeddings: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    centroids = {}
    for k in sorted(set(labels[labels >= 0].tolist())):
        mean = embeddings[labels == k].mean(axis=0)
        centroids[k] = mean / np.linalg.norm(mean)
    return centroids


def _nearest(embeddings: np.ndarray, centroids: dict[int, np.ndarray]) -> np.ndarray:
    keys = list(centroids)
    similarity = embeddings @ np.stack([centroids[k] for k in keys]).T
    return np.array(keys, dtype=int)[np.argmax(similarity, axis=1)]


def merge_turns(windows: list[Window], labels: np.ndarray) -> list[dict]:
    """Consecutive spans of one speaker, across pauses up to MAX_PAUSE_S, are one turn."""
    turns: list[dict] = []
    for w, label in zip(windows, labels):
        speaker = f"S{label + 1}"
        if turns and turns[-1]["speaker"] == speaker and w.span_start - turns[-1]["end"] <= MAX_PAUSE_S:
            turns[-1]["end"] = w.span_end
        else:
            turns.append({"speaker": speaker, "start": w.span_start, "end": w.span_end})
    return turns


def analyse(clip: AudioClip, encoder: SpeakerEncoder, speech_detector) -> dict:
    if clip.sample_rate != RATE:
        raise ValueError(f"speaker analysis needs {RATE} Hz audio, got {clip.sample_rate}")
    windows: list[Window] = []
    mels: list[np.ndarray] = []
    for found in speech_detector.segments(clip)["segments"]:  # absolute times
        start, end = found["start"] - clip.offset_s, found["end"] - clip.offset_s
        inside = speech_windows(start, end)
        speech = clip.waveform[int(start * RATE):int(end * RATE)]
        mels += encoder.window_mels(speech, [(w.start - start, w.end - start) for w in inside])
        windows += inside
    labels = np.zeros(0, dtype=int)
    if windows:
        labels = cluster(encoder.embed(mels), windows)
    return _facts(clip, windows, labels)


def _facts(clip: AudioClip, windows: list[Window], labels: np.ndarray) -> dict:
    turns = [{"speaker": t["speaker"], "start": round(t["start"] + clip.offset_s, 2),
              "end": round(t["end"] + clip.offset_s, 2)} for t in merge_turns(windows, labels)]
    speech = {f"S{k + 1}": sum(w.span_end - w.span_start for w, label in zip(windows, labels) if label == k)
              for k in range(labels.max() + 1 if len(labels) else 0)}
    return {
        "start": round(clip.offset_s, 2),
        "end": round(clip.offset_s + clip.duration_s, 2),
        "speaker_count": len(speech),
        "turns": turns,
        "speaker_changes": sum(a["speaker"] != b["speaker"] for a, b in zip(turns, turns[1:])),
        "speech_seconds_by_speaker": {s: round(v, 2) for s, v in speech.items()},
    }


def render(facts: dict) -> str:
    turns = facts["turns"]
    if not turns:
        return "no speech detected"
    count = facts["speaker_count"]
    named = ", ".join(f"{t['speaker']} {t['start']:.2f}-{t['end']:.2f} s" for t in turns[:TURN_LIMIT])
    more = f" … ({len(turns)} turns in all)" if len(turns) > TURN_LIMIT else ""
    return (f"{count} speaker{'s' if count != 1 else ''} (voice clustering); turns: {named}{more}; "
            f"{facts['speaker_changes']} change(s) of speaker")
