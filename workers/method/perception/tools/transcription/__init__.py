"""Speech recognition with timestamps (faster-whisper; bundled tiny.en by default).

Where it runs follows AGR_ASR_DEVICE, resolved the same way in every process: on CUDA it
is a GPU tool (float16; the GPU step runs the pending calls of several jobs as one batched
call), on the CPU a CPU tool (int8, on the perception-cpu queue, one call at a time), so a
CPU-only deployment's GPU queue never waits on it. The model name carries the device when
it is CUDA ("faster-whisper/tiny.en@cuda-float16"): its output differs from int8's, so its
results are cached apart, and a worker whose own setting disagrees with the job's plan
refuses the call by name (workers/method/steps/perception_round.py) instead of running it on
the other queue or leaving it for a step that never comes.
"""

from workers.method.perception.tools.base import Tool, ToolResult
from workers.method.perception.tools.transcription.spec import device_class, model_name


def render(result: dict) -> str:
    """The evidence text: the detected language (for a multilingual model), then each segment."""
    lines = [f"[{s['start']:.1f}-{s['end']:.1f}s] {s['text']}" for s in result["segments"]]
    if result.get("multilingual") and lines:
        lines.insert(0, f"language: {result['language']} (p={result['language_probability']:.2f})")
    if result.get("timestamps") == "none" and lines:
        lines.append("(the transcription service gave no timestamps: the text is of the whole span, "
                     "not placed in time)")
    return "\n".join(lines) if lines else "no speech recognised"


def run(clip, _args: dict) -> ToolResult:
    from workers.method.perception.loaded_models import speech_recognizer  # loads the model: only where the tool runs

    result = speech_recognizer().transcribe(clip.waveform, offset_s=clip.offset_s)
    return ToolResult(result, render(result))


def run_batch(calls) -> list[ToolResult | Exception]:
    """Several jobs' calls as one batched decode (the GPU step's runner): each call's
    result, or the exception that failed only that call's job."""
    from workers.method.perception.loaded_models import speech_recognizer  # loads the model: only where the tool runs

    results = speech_recognizer().transcribe_many([(clip.waveform, clip.offset_s) for _, clip, _ in calls])
    return [r if isinstance(r, Exception) else ToolResult(r, render(r)) for r in results]


TOOL = Tool(
    "transcription",
    "Speech recognition with timestamps: what is said, and when (and in which language).",
    device_class,
    run,
    model_name,
    speech_only=True,
    run_batch=run_batch,
)
