"""Decoding real files of each format into mono float32 at the asked rate, and refusing
broken, empty, non-audio and over-limit input with a message naming the file and why."""

import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from core.settings import get_settings
from workers.method.perception.audio_io import BadAudioError, ffmpeg_binary, load_audio

RATE = 16000


def _tone(seconds: float, rate: int, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(clip) -> float:
    spectrum = np.abs(np.fft.rfft(clip.waveform))
    return float(np.argmax(spectrum)) * clip.sample_rate / len(clip.waveform)


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_binary(), "-nostdin", "-y", "-v", "error", *args], check=True)


@pytest.fixture
def limits(monkeypatch):
    """Set AGR_MAX_AUDIO_* for one test; the settings cache is cleared so they are read."""
    def set_limits(**env):
        for name, value in env.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield set_limits
    get_settings.cache_clear()  # the next reader gets the restored environment


def _refused(path, *reason_words) -> str:
    with pytest.raises(BadAudioError) as caught:
        load_audio(path)
    message = str(caught.value)
    assert str(path) in message
    for word in reason_words:
        assert word in message, message
    return message


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_each_soundfile_format_round_trips(tmp_path, fmt):
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt}")
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, _tone(1.0, RATE), RATE, format=fmt)
    clip = load_audio(path)
    assert clip.sample_rate == RATE and clip.waveform.dtype == np.float32 and clip.waveform.ndim == 1
    assert abs(clip.duration_s - 1.0) < 0.1  # lossy codecs pad a few ms
    assert abs(_peak_hz(clip) - 440) < 3
    assert 0.4 < np.abs(clip.waveform).max() < 0.6


def test_m4a_is_decoded_through_ffmpeg(tmp_path):
    wav, m4a = tmp_path / "tone.wav", tmp_path / "tone.m4a"
    sf.write(wav, _tone(2.0, 44100), 44100)
    _ffmpeg("-i", str(wav), "-c:a", "aac", str(m4a))
    with pytest.raises(sf.LibsndfileError):
        sf.info(str(m4a))  # so it cannot have come through soundfile
    clip = load_audio(m4a)
    assert clip.sample_rate == RATE and abs(clip.duration_s - 2.0) < 0.1
    assert abs(_peak_hz(clip) - 440) < 3


def test_ffmpeg_on_path_comes_first_then_the_bundled_one(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert "imageio_ffmpeg" in ffmpeg_binary()  # none on PATH: the static build
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert ffmpeg_binary() == str(fake)


def test_stereo_is_mixed_to_the_mean_of_its_channels(tmp_path):
    left = _tone(1.0, RATE)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([left, np.zeros_like(left)], axis=1), RATE)
    assert np.abs(load_audio(stereo).waveform).max() == pytest.approx(0.25, abs=0.01)
    opposite = tmp_path / "opposite.wav"
    sf.write(opposite, np.stack([left, -left], axis=1), RATE, subtype="FLOAT")
    assert np.abs(load_audio(opposite).waveform).max() < 1e-6  # a mean, not the first channel
    m4a = tmp_path / "stereo.m4a"  # the ffmpeg path mixes the same way
    _ffmpeg("-i", str(stereo), "-c:a", "aac", "-b:a", "192k", str(m4a))
    assert np.abs(load_audio(m4a).waveform[2000:-2000]).max() == pytest.approx(0.25, abs=0.03)


def test_44_1_khz_is_resampled_keeping_duration_and_pitch(tmp_path):
    path = tmp_path / "cd.wav"
    sf.write(path, _tone(2.0, 44100), 44100)
    clip = load_audio(path)
    assert clip.sample_rate == RATE and len(clip.waveform) == 2 * RATE
    assert abs(_peak_hz(clip) - 440) < 1
    other = load_audio(path, rate=22050)  # any tool's rate
    assert other.sample_rate == 22050 and abs(other.duration_s - 2.0) < 1e-3 and abs(_peak_hz(other) - 440) < 1


def test_missing_and_empty_files_are_refused(tmp_path):
    _refused(tmp_path / "nowhere.wav", "no such file")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _refused(empty, "empty")


def test_non_audio_is_refused_with_the_decoders_reason(tmp_path):
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).bytes(50_000))
    _refused(noise, "not decodable audio", "Invalid data")
    text = tmp_path / "notes.mp3"
    text.write_text("these are meeting notes, not a recording\n" * 20)
    _refused(text, "not decodable audio", "Invalid data")
    silent_film = tmp_path / "film.mp4"  # a real container with a picture and no sound
    _ffmpeg("-f", "lavfi", "-i", "color=c=black:s=32x32:d=1", str(silent_film))
    _refused(silent_film, "not decodable audio", "ffmpeg: ")


def test_a_wav_cut_after_its_header_is_refused(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, _tone(1.0, RATE), RATE, subtype="PCM_16")
    header_only = tmp_path / "header_only.wav"
    header_only.write_bytes(full.read_bytes()[:44])
    _refused(header_only, "no audio samples")


def test_over_the_byte_limit_is_refused(tmp_path, limits):
    path = tmp_path / "big.wav"
    sf.write(path, _tone(1.0, RATE), RATE)
    limits(AGR_MAX_AUDIO_BYTES=1000)
    _refused(path, "over the limit of 1000 bytes", "AGR_MAX_AUDIO_BYTES")


@pytest.mark.parametrize("suffix", ["wav", "m4a"])
def test_over_the_duration_limit_is_refused(tmp_path, limits, suffix):
    wav = tmp_path / "long.wav"
    sf.write(wav, _tone(3.0, RATE), RATE)
    path = wav
    if suffix == "m4a":  # no header duration here: ffmpeg decodes only up to the limit
        path = tmp_path / "long.m4a"
        _ffmpeg("-i", str(wav), "-c:a", "aac", str(path))
    limits(AGR_MAX_AUDIO_SECONDS=2)
    _refused(path, "over the limit of 2 s", "AGR_MAX_AUDIO_SECONDS")


def test_an_absurd_header_duration_is_refused_before_decoding(tmp_path):
    # 20,000 samples at 1 Hz: a 40 kB file claiming 5.5 hours, which would resample to
    # 320 million samples if it were decoded first.
    path = tmp_path / "slow.wav"
    sf.write(path, np.zeros(20_000, dtype=np.float32), 1, subtype="PCM_16")
    started = time.perf_counter()
    _refused(path, "20000.0 s long", "AGR_MAX_AUDIO_SECONDS")
    assert time.perf_counter() - started < 0.5
