"""A renamed setting is still read by its old environment name, with a warning, so a
deployment's environment or .env keeps working across the rename; the new name wins when
both are set in the same place."""

import pytest

from core.settings import RENAMED, Settings, warn_of_renamed
from tests.no_services import librosa_compiled_first, module_services  # noqa: F401  (no services here)


def test_the_old_name_is_read_and_warned_about(monkeypatch):
    for old, new in RENAMED.items():
        monkeypatch.delenv(new, raising=False)
        monkeypatch.setenv(old, "7")
    with pytest.warns(FutureWarning, match="AGR_RATE_LIMIT_WINDOW_S is now AGR_RATE_LIMIT_PERIOD_S"):
        assert warn_of_renamed() == sorted(RENAMED)
    settings = Settings()
    assert settings.rate_limit_period_s == 7
    assert settings.chat_replay_period_s == 7


def test_an_old_name_in_the_env_file_is_read_and_warned_about(monkeypatch, tmp_path):
    for old, new in RENAMED.items():
        monkeypatch.delenv(old, raising=False)
        monkeypatch.delenv(new, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("AGR_RATE_LIMIT_WINDOW_S=11\n")
    with pytest.warns(FutureWarning, match="AGR_RATE_LIMIT_WINDOW_S is now AGR_RATE_LIMIT_PERIOD_S"):
        assert warn_of_renamed() == ["AGR_RATE_LIMIT_WINDOW_S"]
    assert Settings().rate_limit_period_s == 11


def test_the_new_name_wins_and_nothing_is_warned(monkeypatch, recwarn):
    monkeypatch.delenv("AGR_RATE_LIMIT_WINDOW_S", raising=False)
    monkeypatch.delenv("AGR_CHAT_REPLAY_WINDOW_S", raising=False)
    monkeypatch.setenv("AGR_RATE_LIMIT_PERIOD_S", "5")
    monkeypatch.setenv("AGR_CHAT_REPLAY_WINDOW_S", "8")
    monkeypatch.setenv("AGR_CHAT_REPLAY_PERIOD_S", "6")
    assert Settings().chat_replay_period_s == 6  # both set: the new name's value
    monkeypatch.delenv("AGR_CHAT_REPLAY_WINDOW_S")
    assert warn_of_renamed() == []
    assert Settings().rate_limit_period_s == 5
    assert Settings(rate_limit_period_s=9).rate_limit_period_s == 9  # by field name too
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]
