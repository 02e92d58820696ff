"""Decoding audio into the one form every tool takes: mono float32 at a given rate.

libsndfile (soundfile) reads wav, flac, ogg and mp3 itself; anything else (m4a, aac, ...)
goes through ffmpeg: the one on PATH, else the static binary imageio-ffmpeg ships. Size
and duration limits are checked before the costly work wherever the file lets us: bytes
before opening it, the duration from the header before decoding. Every failure is a
BadAudioError whose message names the file and the reason.
"""

import dataclasses
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.settings import get_settings

TARGET_RATE = 16_000
FFMPEG_TIMEOUT_S = 300


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


def load_audio(path: str | Path, rate: int = TARGET_RATE, name: str | None = None) -> AudioClip:
    """`name`: what messages call the file (a stored object's path means nothing to its submitter)."""
    path = Path(path)
    if name is None:
        return _load(path, rate)
    try:
        return dataclasses.replace(_load(path, rate), source=name)
    except BadAudioError as exc:
        raise BadAudioError(str(exc).replace(str(path), name)) from None


def _load(path: Path, rate: int) -> AudioClip:
    settings = get_settings()
    _check_file(path, settings.max_audio_bytes)
    data, source_rate = _decode(path, rate, settings.max_audio_seconds)
    if data.size == 0:
        raise BadAudioError(f"{path}: contains no audio samples (empty, or cut off after its header)")
    mono = data.mean(axis=1)  # mix down before resampling: less to resample
    if not np.all(np.isfinite(mono)):
        raise BadAudioError(f"{path}: contains NaN or infinite samples")
    clip = AudioClip(_resample(mono, source_rate, rate), rate, str(path))
    _check_duration(path, clip.duration_s, settings.max_audio_seconds)
    return clip


def _check_file(path: Path, max_bytes: int) -> None:
    if not path.exists():
        raise BadAudioError(f"{path}: no such file")
    if not path.is_file():
        raise BadAudioError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise BadAudioError(f"{path}: file is empty (0 bytes)")
    if size > max_bytes:
        raise BadAudioError(f"{path}: {size} bytes is over the limit of {max_bytes} bytes (AGR_MAX_AUDIO_BYTES)")


def _check_duration(path: Path, seconds: float, limit: float, at_least: bool = False) -> None:
    if seconds > limit:
        raise BadAudioError(f"{path}: {'at least ' if at_least else ''}{seconds:.1f} s long, over the "
                            f"limit of {limit:g} s (AGR_MAX_AUDIO_SECONDS)")


def _decode(path: Path, rate: int, max_seconds: float) -> tuple[np.ndarray, int]:
    """(frames x channels float32, its rate): soundfile first, ffmpeg for what it cannot read."""
    try:
        return _read_with_soundfile(path, max_seconds)
    except (RuntimeError, TypeError) as exc:  # LibsndfileError is a RuntimeError
        return _decode_with_ffmpeg(path, rate, max_seconds, soundfile_reason=getattr(exc, "error_string", str(exc)))


def _read_with_soundfile(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    # The header tells the duration: a file claiming hours (say 20,000 samples at 1 Hz, which
    # resampling would blow up to 320 million) is refused before anything is decoded.
    _check_duration(path, sf.info(str(path)).duration, max_seconds)
    return sf.read(str(path), dtype="float32", always_2d=True)


def ffmpeg_binary() -> str | None:
    """PATH's ffmpeg (the operator's choice) first, else imageio-ffmpeg's static build."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # not installed, or its binary is missing
        return None


def _decode_with_ffmpeg(path: Path, rate: int, max_seconds: float, soundfile_reason: str) -> tuple[np.ndarray, int]:
    ffmpeg = ffmpeg_binary()
    if ffmpeg is None:
        raise BadAudioError(f"{path}: not decodable audio (soundfile: {soundfile_reason}; no ffmpeg found)")
    command = [
        ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-vn", "-sn", "-dn",  # its best audio stream only
        "-t", str(max_seconds + 1),  # the header may not tell the duration: decode no more than needed to refuse
        "-rematrix_maxval", "1",  # mix channels to their mean, as the soundfile path does (else +3 dB)
        "-f", "f32le", "-ac", "1", "-ar", str(rate), "-",
    ]
    try:
        proc = subprocess.run(command, capture_output=True, timeout=FFMPEG_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise BadAudioError(f"{path}: decoding took longer than {FFMPEG_TIMEOUT_S} s (ffmpeg)") from None
    if proc.returncode != 0:
        reason = _ffmpeg_reason(proc.stderr) or f"exit status {proc.returncode}"
        raise BadAudioError(f"{path}: not decodable audio (ffmpeg: {reason}; soundfile: {soundfile_reason})")
    data = np.frombuffer(proc.stdout, dtype=np.float32)[:, None]
    _check_duration(path, len(data) / rate, max_seconds, at_least=True)
    return data, rate


def _ffmpeg_reason(stderr: bytes) -> str:
    """ffmpeg's first error line is the specific cause, its last the general failure."""
    # "[in#0 @ 0x55d0...] " opening a line names a context, not the reason.
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line.strip()) for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    picked = lines[:1] + lines[-1:] if len(lines) > 1 else lines
    return " / ".join(picked)[:400]


def _resample(signal: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    if source_rate == rate:
        return np.ascontiguousarray(signal, dtype=np.float32)
    from scipy.signal import resample_poly  # imported late: most inputs are already 16 kHz

    g = np.gcd(source_rate, rate)
    return resample_poly(signal, rate // g, source_rate // g).astype(np.float32)


def wav_bytes(waveform: np.ndarray, rate: int) -> bytes:
    """A waveform as a 16-bit WAV file's bytes: what a serving engine is sent."""
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(waveform, dtype=np.float32).reshape(-1), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
