"""numba's compiled code goes to a persistent folder, so a new worker process skips the
~20 s of librosa compiles that the first one paid."""

import os
import sys
from pathlib import Path

import pytest

from core.numba_cache import use_persistent_numba_cache
from core.settings import get_settings
from tests import children

ROOT = Path(__file__).resolve().parent.parent

# What a perception worker does: import the package (which sets the folder), then run librosa.
MUSIC_ON_A_TONE = """
import numpy as np
from workers.method.perception.audio_io import AudioClip
from workers.method.perception.tools import TOOLS
t = np.arange(16000) / 16000
TOOLS["music"].run(AudioClip((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, "tone"), {})
"""


@pytest.fixture
def fresh_settings():
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_music_tool_writes_numba_cache_under_data_dir(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "AGR_NUMBA_CACHE_DIR")}
    env["AGR_DATA_DIR"] = str(tmp_path)
    proc = children.run([sys.executable, "-c", MUSIC_ON_A_TONE], env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cache = tmp_path / "numba-cache"
    assert list(cache.rglob("*.nbi")), f"no numba index files under {cache}"
    assert list(cache.rglob("*.nbc")), f"no numba compiled-code files under {cache}"


def test_explicit_numba_cache_dir_wins(tmp_path, monkeypatch, fresh_settings):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("AGR_NUMBA_CACHE_DIR", str(tmp_path / "setting"))
    assert use_persistent_numba_cache() == tmp_path / "explicit"
    assert (tmp_path / "explicit").is_dir()
    assert not (tmp_path / "setting").exists()


def test_setting_names_the_folder_as_an_absolute_path(tmp_path, monkeypatch, fresh_settings):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AGR_NUMBA_CACHE_DIR", "relative/cache")
    assert use_persistent_numba_cache() == tmp_path / "relative" / "cache"
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "relative" / "cache")
