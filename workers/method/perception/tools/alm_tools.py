"""The audio-language models' tools, one per prompt kind: a caption, a question about the audio, a focused
re-caption, and the model's own answer to the job's question with its choices.

One set of these tools per configured model (AGR_ALMS, or AGR_ALM_MODEL alone; at most
MAX_ALMS): the primary model's are named `caption`, `audio_qa`, `re_caption`,
`audio_answer`, the second's `caption_2`, `audio_qa_2`, ... so two models' evidence
about one clip sits side by side in a document, each item naming its model's slot.

A model hears at most its window (30 s for the Whisper-encoder families): a longer clip
or window is covered by consecutive equal windows, each given the same prompt, and the
replies kept with their times; none of the clip is cut off. Every tool of one model
shares its `run_prompts`, so a GPU worker answers the pending calls of many jobs, and
all their windows, in one padded generate call.
"""

import math
from functools import partial
from typing import TYPE_CHECKING

from core.alm_endpoint import is_endpoint
from core.settings import MAX_ALMS, get_settings
from workers.method.alm_prompts import CAPTION_PROMPT, RE_CAPTION_PROMPT, direct_prompt
from workers.method.perception.tools.base import Tool, ToolResult
from workers.method.reasoning.normalise import normalise

if TYPE_CHECKING:
    from workers.method.perception.audio_io import AudioClip

ANSWER_KIND = "audio_answer"
_CHOICES_ARG = {"choices": {"type": "array", "items": {"type": "string"}, "description": "the options to choose from"}}
# Set by the pipeline only, outside the schemas the agents see (an agent's calls keep their
# declared arguments): `cover` (hear the whole clip or part in windows), `part` of `parts`
# (equal segments: workers/method/perception/executor.py clip_for), `sample` and `temperature`
# (one of several self-consistency answers), `evidence` (final listening's summary).


def alm_tool_name(kind: str, slot: int) -> str:
    return kind if slot == 1 else f"{kind}_{slot}"


def prompt_kind_of(tool: str) -> tuple[str, int]:
    """(prompt kind, slot) of an ALM tool's name: `caption_2` -> ("caption", 2)."""
    base, _, slot = tool.rpartition("_")
    return (base, int(slot)) if slot.isdigit() and base else (tool, 1)


def run_prompts(slot: int, calls: list[tuple[str, "AudioClip", dict]]) -> list[ToolResult | Exception]:
    from workers.method.perception.loaded_models import audio_language_model  # loads torch: the GPU worker only

    model = audio_language_model(slot)
    limit = model.window_seconds()
    # A description covers its clip in windows (the model would hear only the first of them,
    # and an engine cuts the rest silently, as a processor does); a question that wants one
    # answer hears the first window, and its evidence says so (_result).
    pieces = [(i, window) for i, (name, clip, args) in enumerate(calls)
              for window in (covering(clip, limit) if _describes(name, args) else [heard_part(clip, limit)])]
    heard: list[list[tuple[AudioClip, str]]] = [[] for _ in calls]
    failed: dict[int, Exception] = {}
    # A self-consistency sample is decoded at its own temperature, the rest as the model
    # is configured (greedy by default): one generate call per kind.
    size = model.prompts_at_once()
    for temperature in dict.fromkeys(calls[i][2].get("temperature") for i, _ in pieces):
        kind = [(i, w) for i, w in pieces if calls[i][2].get("temperature") == temperature]
        prompts = [_prompt(prompt_kind_of(calls[i][0])[0], calls[i][2]) for i, _ in kind]
        # A long clip is many windows: at most a GPU batch of them per generate call, so a
        # 30-minute clip's 60 windows never go through the model at once (an engine takes
        # as many as may be in flight).
        for start in range(0, len(kind), size):
            part = kind[start:start + size]
            texts = model.generate_batch([_at_rate(w, model.sampling_rate) for _, w in part],
                                         prompts[start:start + size], temperature)
            for (i, window), text in zip(part, texts, strict=True):
                if isinstance(text, Exception):  # an engine failed this request alone
                    failed.setdefault(i, text)
                else:
                    heard[i].append((window, text.strip()))
    # A call with a failed window fails alone, in its place (Tool.run_batch): its job's step
    # is retried, its batch-mates' results stand.
    return [failed.get(i) or _result(prompt_kind_of(name)[0], args, clip, heard[i])
            for i, (name, clip, args) in enumerate(calls)]


def _cut_note(clip, heard: list[tuple["AudioClip", str]]) -> str | None:
    """Said in the evidence when a question heard less than its clip: never a silent cut."""
    end = max(w.offset_s + w.duration_s for w, _ in heard)
    clip_end = clip.offset_s + clip.duration_s
    if clip_end - end <= 0.01:
        return None
    return (f"(the model heard only {clip.offset_s:.1f}-{end:.1f} s of this {clip.offset_s:.1f}-{clip_end:.1f} s "
            f"clip: ask about a window to hear the rest)")


def _describes(tool: str, args: dict) -> bool:
    return prompt_kind_of(tool)[0] in ("caption", "re_caption") or bool(args.get("cover"))


def heard_part(clip, limit: float | None):
    """What a one-answer question hears of `clip`: all of it, or its first window."""
    if not limit or clip.duration_s <= limit + 0.01:
        return clip
    return clip.window(0.0, limit)


def covering(clip, limit: float | None) -> list:
    """The clip itself, or consecutive equal windows of at most `limit` seconds covering it."""
    if not limit or clip.duration_s <= limit + 0.01:
        return [clip]
    count = math.ceil(clip.duration_s / limit)
    step = clip.duration_s / count
    return [clip.window(k * step, clip.duration_s if k == count - 1 else (k + 1) * step) for k in range(count)]


def answer_prompt(question: str, choices: list[str], evidence: str | None = None) -> str:
    prompt = direct_prompt(question, choices)
    if evidence:
        prompt += ("\n\nNotes from other tools about this audio (they may be wrong; trust what you hear):\n"
                   + evidence)
    return prompt


def _prompt(kind: str, args: dict) -> str:
    if kind == "caption":
        return CAPTION_PROMPT
    if kind == "re_caption":
        return RE_CAPTION_PROMPT.format(focus=args["focus"])
    if kind == ANSWER_KIND:
        return answer_prompt(args["question"], args.get("choices") or [], args.get("evidence"))
    return args["question"]  # audio_qa


def _at_rate(clip, rate: int):
    if clip.sample_rate == rate:
        return clip.waveform
    from core.numba_cache import librosa_compiled  # librosa and numba: only where a clip is resampled

    return librosa_compiled().resample(clip.waveform, orig_sr=clip.sample_rate, target_sr=rate)


def _span(clip) -> dict:
    return {"start": round(clip.offset_s, 2), "end": round(clip.offset_s + clip.duration_s, 2)}


def _result(kind: str, args: dict, clip, heard: list[tuple["AudioClip", str]]) -> ToolResult:
    output = {**_span(clip), "text": heard[0][1]} if len(heard) == 1 else {
        **_span(clip), "windows": [{**_span(w), "text": t} for w, t in heard]}
    text = heard[0][1] if len(heard) == 1 else "\n".join(f"[{w.offset_s:.1f}-{w.offset_s + w.duration_s:.1f} s] {t}"
                                                         for w, t in heard)
    if kind == ANSWER_KIND:
        output["answer"] = _chosen([t for _, t in heard], args.get("choices") or [])
        text = f"Answer: {output['answer'] or 'none of the choices'}\n{text}"
    if cut := _cut_note(clip, heard):
        output["heard"] = {"start": round(heard[0][0].offset_s, 2), "end": round(max(w.offset_s + w.duration_s for w, _ in heard), 2)}
        text = f"{text}\n{cut}"
    return ToolResult(output, text)


def _chosen(replies: list[str], choices: list[str]) -> str | None:
    """The choice the replies name: one choice, and every window that names one names it
    (None for an open question: there is no choice to name, the text is the answer)."""

    if not choices:
        return None
    named = {normalise(r, choices).answer for r in replies} - {None}
    return named.pop() if len(named) == 1 else None


def model_name(slot: int) -> str:
    """The model and everything that changes its replies: part of the result-cache key, so a
    new family or decoding setting for the same checkpoint is computed afresh, not reused."""
    s = get_settings()
    specs = s.alm_specs
    if len(specs) < slot:
        return "none"
    family, path = specs[slot - 1]
    # How a long clip is heard is part of it: descriptions cover it in windows (the window is
    # configured for an engine, the processor's own in process), so replies cached when the
    # model heard a cut clip are not served for a covered one.
    window = f"window={s.alm_engine_window_s:g}s" if is_endpoint(path) else "window=processor"
    return (f"{path} [{family}; max_new_tokens={s.alm_max_new_tokens} sample={s.alm_do_sample} "
            f"T={s.alm_temperature} top_p={s.alm_top_p} beams={s.alm_num_beams} rep={s.alm_repetition_penalty} "
            f"{window}]")


def _raised(result):
    if isinstance(result, Exception):
        raise result
    return result


def _tools_of_slot(slot: int) -> list[Tool]:
    run_batch = partial(run_prompts, slot)  # one object per model: its calls batch together
    which = "an audio-language model" if slot == 1 else f"audio-language model {slot} (another opinion)"

    def of_kind(name: str, description: str, args: dict | None = None, required: tuple[str, ...] = ()) -> Tool:
        tool = alm_tool_name(name, slot)
        return Tool(tool, description.format(which=which), "gpu",
                    run=lambda clip, call_args: _raised(run_batch([(tool, clip, call_args)])[0]),
                    model_name=partial(model_name, slot),
                    available=lambda: len(get_settings().alm_specs) >= slot,
                    args=args or {}, required=required, run_batch=run_batch)

    return [
        # The first model's descriptions are the paper's, word for word: what `agr` is offered.
        of_kind("caption", "A detailed description of the whole audio from {which}."),
        of_kind("audio_qa", "Ask {which} a specific question about the audio.",
                {"question": {"type": "string", "description": "the question to ask"}}, ("question",)),
        of_kind("re_caption", "Describe the audio again" + ("" if slot == 1 else " with {which}")
                + ", paying attention to one aspect (e.g. the background sounds).",
                {"focus": {"type": "string", "description": "what to attend to"}}, ("focus",)),
        of_kind(ANSWER_KIND, "{which} answers a multiple-choice question itself, from what it hears.",
                {"question": {"type": "string", "description": "the question"}, **_CHOICES_ARG}, ("question",)),
    ]


TOOLS = [tool for slot in range(1, MAX_ALMS + 1) for tool in _tools_of_slot(slot)]
