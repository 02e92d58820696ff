"""Several audio-language models in one worker (AGR_ALMS), each with its own tools, and a
long clip heard in windows: tiny random models of two families, loaded in this process
as a GPU worker loads them."""

import numpy as np
import pytest

from core.settings import Settings, get_settings, parse_alms
from tests.tiny_models import build_tiny_audio_flamingo3, build_tiny_qwen2_audio
from workers.method.perception.audio_io import AudioClip


@pytest.fixture
def two_models(tmp_path, monkeypatch):
    from workers.method.perception.loaded_models import audio_language_model

    first, second = build_tiny_qwen2_audio(tmp_path / "q"), build_tiny_audio_flamingo3(tmp_path / "af3")
    monkeypatch.setenv("AGR_ALMS", f"qwen2_audio={first}, audio_flamingo3={second}")
    monkeypatch.setenv("AGR_ALM_DEVICE", "cpu")
    monkeypatch.setenv("AGR_ALM_MAX_NEW_TOKENS", "3")
    monkeypatch.setenv("AGR_GPU_BATCH_SIZE", "2")
    get_settings.cache_clear()
    audio_language_model.cache_clear()
    yield first, second
    get_settings.cache_clear()
    audio_language_model.cache_clear()


def _tone(seconds: float, rate: int = 16000) -> AudioClip:
    t = np.arange(int(seconds * rate)) / rate
    return AudioClip((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate, "tone.wav")


def test_each_model_has_its_tools_and_the_first_is_the_primary(two_models):
    from workers.method.perception.loaded_models import audio_language_model
    from workers.method.perception.tools import TOOLS

    first, second = two_models
    settings = get_settings()
    assert (settings.alm_model, settings.alm_family) == (str(first), "qwen2_audio")  # what `direct` and agr use
    assert TOOLS["caption"].available() and TOOLS["caption_2"].available() and not TOOLS["caption_3"].available()
    assert str(second) in TOOLS["audio_answer_2"].model_name() and "audio_flamingo3" in TOOLS["caption_2"].model_name()
    assert TOOLS["caption"].run_batch is TOOLS["audio_qa"].run_batch  # one model's calls batch together
    assert TOOLS["caption"].run_batch is not TOOLS["caption_2"].run_batch
    assert type(audio_language_model(2)).__name__ == "AudioFlamingo3Model"


def test_a_long_clip_is_heard_in_windows_at_most_a_batch_per_generate_call(two_models):
    from workers.method.perception.loaded_models import audio_language_model
    from workers.method.perception.tools.alm_tools import run_prompts

    model = audio_language_model(1)
    sizes = []
    generate = model.generate_batch
    model.generate_batch = lambda waves, prompts, t=None: sizes.append(len(waves)) or generate(waves, prompts, t)
    try:
        long, short = _tone(75.0), _tone(2.0)
        results = run_prompts(1, [("caption", long, {"cover": True}), ("audio_answer", short, {"question": "What?",
                                                                                               "choices": ["a", "b"]}),
                                  ("caption", long, {}), ("audio_answer", long, {"question": "What?",
                                                                                 "choices": ["a", "b"]})])
    finally:
        model.generate_batch = generate
    windows = results[0].output["windows"]
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 25.0), (25.0, 50.0), (50.0, 75.0)]
    assert results[0].text.startswith("[0.0-25.0 s] ")
    # Eight sequences: each caption's three windows, the short clip, the long one's first 30 s.
    assert sizes == [2, 2, 2, 2]
    assert results[1].text.startswith("Answer: ") and "windows" not in results[1].output
    assert "heard" not in results[1].output
    # A description covers its clip whatever the pipeline asked (no silent cut at 30 s) ...
    assert results[2].output["windows"] == windows
    # ... and a question wanting one answer hears the first window and says so.
    assert results[3].output["heard"] == {"start": 0.0, "end": 30.0} and "windows" not in results[3].output
    assert "heard only 0.0-30.0 s of this 0.0-75.0 s clip" in results[3].text


@pytest.mark.parametrize("listed, error", [
    ("qwen3=/m", "family=path"), ("qwen2_audio=", "family=path"), (",".join(f"/m{k}" for k in range(5)), "at most 4"),
    ("/m,auto=/m", "a model twice"),
])
def test_bad_alms_entries_are_refused_with_the_entry_named(listed, error, monkeypatch):
    monkeypatch.setenv("AGR_ALMS", listed)
    with pytest.raises(ValueError, match=error):
        Settings()


def test_alms_entries_parse_with_or_without_a_family():
    assert parse_alms("/models/a, audio_flamingo3=/models/b") == [("auto", "/models/a"),
                                                                 ("audio_flamingo3", "/models/b")]
    assert parse_alms("qwen2_audio=/models/x=1,/models/y=2") == [("qwen2_audio", "/models/x=1"), ("auto", "/models/y=2")]


def test_answer_samples_are_decoded_at_the_sampling_temperature(two_models, monkeypatch):
    from workers.method.perception.loaded_models import audio_language_model
    from workers.method.perception.tools.alm_tools import run_prompts

    model = audio_language_model(2)
    temperatures = []
    generate = model.generate_batch
    model.generate_batch = lambda waves, prompts, t=None: temperatures.append((len(waves), t)) or generate(waves, prompts, t)
    asked = {"question": "What?", "choices": ["a", "b"]}
    try:
        run_prompts(2, [("caption_2", _tone(1.0), {}),
                        ("audio_answer_2", _tone(1.0), {**asked, "sample": 1, "temperature": 0.7}),
                        ("audio_answer_2", _tone(1.0), {**asked, "sample": 2, "temperature": 0.7})])
    finally:
        model.generate_batch = generate
    assert temperatures == [(1, None), (2, 0.7)]  # the caption greedy, both samples sampled together


def test_crosscheck_plans_each_models_samples(two_models, monkeypatch):
    from workers.method.perception import catalogue
    from workers.method.pipelines import Pipeline

    monkeypatch.setenv("AGR_ALM_ANSWER_SAMPLES", "3")
    get_settings.cache_clear()
    calls = Pipeline("crosscheck").first_round_calls("What?", ["a", "b"], catalogue.current())
    answers = [(c.tool, c.args.get("sample"), c.args.get("temperature")) for c in calls
               if c.tool.startswith("audio_answer")]
    assert answers == [(tool, k, 0.7) for tool in ("audio_answer", "audio_answer_2") for k in (1, 2, 3)]
    open_question = Pipeline("crosscheck").first_round_calls("What is heard?", [], catalogue.current())
    assert not [c for c in open_question if c.tool.startswith("audio_answer")]  # no choice to name


def _answer(tool: str, choice: str | None, sample: int) -> dict:
    return {"iteration": 0, "tool": tool, "args": {"question": "q", "choices": ["rain", "dog"], "sample": sample},
            "text": f"Answer: {choice or 'none of the choices'}\n..."}


def test_each_models_samples_are_voted_before_the_models_are_compared():
    from workers.method.perception.agreement import describe, of_round_zero

    split = [_answer("audio_answer", c, k) for k, c in enumerate(["rain", "dog", "rain"], 1)]
    tied = [_answer("audio_answer_2", c, k) for k, c in enumerate(["rain", "dog", None], 1)]
    agreement = of_round_zero(split + tied, ["rain", "dog"])
    assert agreement.answers == {"audio_answer": "rain", "audio_answer_2": None}  # a tie names none
    record = agreement.as_json()
    assert record["samples"]["audio_answer"] == ["rain", "dog", "rain"]
    assert record["margins"] == {"audio_answer": 0.3333, "audio_answer_2": 0.0}
    assert not agreement.agreed and not agreement.conflict
    assert "(3 samples: rain, dog, rain)" in describe(agreement)
    unanimous = [_answer("audio_answer_2", "rain", k) for k in (1, 2, 3)]
    assert of_round_zero(split + unanimous, ["rain", "dog"]).agreed == "rain"
