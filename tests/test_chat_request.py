"""Reading chat completion requests: any JSON is a question or an OpenAI-style refusal
(never another exception, which would be a 500), and remote audio only from inside an
allowed folder."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.intake.chat_request import allowed_url, read_chat_request
from api.openai_errors import OpenAIError

AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                               max_size=4), max_leaves=20)
FIELDS = st.sampled_from(["model", "messages", "n", "modalities", "stream", "stream_options", "max_iters",
                          "temperature"])


def _refused_or_read(body) -> None:
    try:
        read_chat_request(body)
    except OpenAIError as refusal:
        assert 400 <= refusal.status_code < 500 and refusal.error["message"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(FIELDS, JSON, max_size=6))
def test_any_top_level_fields_are_read_or_refused(body):
    _refused_or_read(body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON, JSON)
def test_any_message_and_part_shapes_are_read_or_refused(message, part):
    _refused_or_read({"model": "agr", "messages": [message]})
    _refused_or_read({"model": "agr", "messages": [{"role": "user", "content": [AUDIO, part]}]})
    _refused_or_read({"model": "agr", "modalities": [part], "messages": [{"role": "user", "content": [AUDIO]}]})


@pytest.mark.parametrize("body, refused", [
    ({"model": "agr", "modalities": [{}], "messages": [{"role": "user", "content": [AUDIO]}]}, True),
    ({"model": "agr", "messages": [{"role": "user", "content": [
        AUDIO, {"type": "text", "text": "Which?\nChoices: [{[]: 1}]"}]}]}, False),  # an open question
    ({"model": "agr", "messages": [{"role": "user", "content": [AUDIO, {"type": "text", "text": "x" * 50_000}]}]},
     True),
    ({"model": "agr", "messages": [{"role": "user", "content": [AUDIO, {"type": "text", "text": "a\u0000b"}]}]},
     True),
    ({"model": "agr", "messages": [{"role": "user", "content": [AUDIO, AUDIO]}]}, True),
    ({"model": ["agr"], "messages": []}, True),
], ids=["unhashable-modality", "unhashable-choices-list", "long-text", "nul", "two-clips", "model-not-a-string"])
def test_found_by_review(body, refused):
    if refused:
        with pytest.raises(OpenAIError):
            read_chat_request(body)
    else:
        _refused_or_read(body)


def test_the_choices_read_are_checked_as_a_batch_lines_are():
    text = "Which?\n" + "\n".join(f"({chr(65 + i)}) same" for i in range(4))
    asked = read_chat_request({"model": "agr", "messages": [{"role": "user", "content": [AUDIO, {"type": "text",
                                                                                                   "text": text}]}]})
    assert asked.choices == ["same"]  # repeats dropped, as for a batch line


PREFIXES = ["https://data.example.org/team-a/audio/"]


@pytest.mark.parametrize("url, allowed", [
    ("https://data.example.org/team-a/audio/x.wav", True),
    ("https://DATA.example.org/team-a/audio/sub/x.wav?sig=1", True),
    ("https://data.example.org/team-a/audio/..#", False),  # the fragment hid '..' from a prefix check
    ("https://data.example.org/team-a/audio/../x.wav", False),
    ("https://data.example.org/team-a/audio/%2e%2e/x.wav", False),
    ("https://data.example.org/team-a/audio/..%2fx.wav", False),
    ("https://data.example.org/team-a/audio/..\\x.wav", False),
    ("https://data.example.org@evil.example/team-a/audio/x.wav", False),
    ("https://user:pw@data.example.org/team-a/audio/x.wav", False),
    ("https://data.example.org.evil.example/team-a/audio/x.wav", False),
    ("https://data.example.org:8443/team-a/audio/x.wav", False),
    ("http://data.example.org/team-a/audio/x.wav", False),
    ("https://data.example.org/team-a/audio-private/x.wav", False),
    ("https://data.example.org/team-a/x.wav", False),
    ("not a url", False),
])
def test_only_urls_inside_an_allowed_folder(url, allowed):
    assert allowed_url(url, PREFIXES) is allowed
