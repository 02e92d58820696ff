"""Decoding audio into the one form every tool takes: mono float32 at a given rate."""

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.settings import get_settings

TARGET_RATE = 16_000


class BadAudioError(ValueError):
    """The file is missing, empty, too large or not decodable audio."""


@dataclass(frozen=True)
class AudioClip:
    waveform: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    source: str  # the path it was read from, for messages
    offset_s: float = 0.0  # where this clip starts in the original, when it is a window

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate

    def window(self, start: float | None, end: float | None) -> "AudioClip":
        """The part between start and end seconds (clamped), keeping absolute timestamps."""
        start = max(0.0, start or 0.0)
        end = self.duration_s if end is None else min(end, self.duration_s)
        if end <= start:
            raise BadAudioError(f"empty window [{start}, {end}] in {self.source} ({self.duration_s:.2f} s)")
        a, b = int(start * self.sample_rate), int(end * self.sample_rate)
        return AudioClip(self.waveform[a:b], self.sample_rate, self.source, self.offset_s + start)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_audio(path: str | Path, rate: int = TARGET_RATE) -> AudioClip:
    path = Path(path)
    _check_file(path)
    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        data, source_rate = _decode_with_ffmpeg(path, rate, reason=str(exc))
    if data.size == 0:
        raise BadAudioError(f"{path}: contains no audio samples")
    mono = data.mean(axis=1) if data.ndim == 2 else data
    if not np.all(np.isfinite(mono)):
        raise BadAudioError(f"{path}: contains NaN or infinite samples")
    clip = AudioClip(_resample(mono, source_rate, rate), rate, str(path))
    if clip.duration_s > get_settings().max_audio_seconds:
        raise BadAudioError(
            f"{path}: {clip.duration_s:.0f} s is longer than the limit of "
            f"{get_settings().max_audio_seconds:.0f} s (AGR_MAX_AUDIO_SECONDS)"
        )
    return clip


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise BadAudioError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise BadAudioError(f"{path}: file is empty")
    if size > get_settings().max_audio_bytes:
        raise BadAudioError(f"{path}: {size} bytes exceeds AGR_MAX_AUDIO_BYTES")


def _decode_with_ffmpeg(path: Path, rate: int, reason: str) -> tuple[np.ndarray, int]:
    """Formats libsndfile cannot read (m4a, aac, ...) go through ffmpeg when present."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BadAudioError(f"{path}: not decodable audio ({reason})")
    proc = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise BadAudioError(f"{path}: not decodable audio ({proc.stderr.decode(errors='replace')[:300]})")
    return np.frombuffer(proc.stdout, dtype=np.float32)[:, None], rate


def _resample(signal: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    if source_rate == rate:
        return np.ascontiguousarray(signal, dtype=np.float32)
    from scipy.signal import resample_poly  # imported late: most inputs are already 16 kHz

    g = np.gcd(source_rate, rate)
    return resample_poly(signal, rate // g, source_rate // g).astype(np.float32)
