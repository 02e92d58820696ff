"""What the audio-language models are asked: the prompt of each kind of their tools, and the `direct`
pipeline's question with its choices. Outside the perception package, whose start sets up
numba's cache: the pipelines read these in every role, the CLI's included."""

CAPTION_PROMPT = (
    "Describe this audio in detail: the sound events, any speech and who is speaking, music, "
    "the acoustic scene, and how these change over time."
)
RE_CAPTION_PROMPT = "Describe this audio again in detail, paying particular attention to: {focus}"
TRANSCRIBE_PROMPT = "Transcribe the speech in this audio verbatim. If there is no speech, say so."


def direct_prompt(question: str, choices: list[str]) -> str:
    # Verbatim choice text is what the benchmarks' token rule scores, so ask for it.
    if not choices:
        return question
    listed = "\n".join(f"- {c}" for c in choices)
    return f"{question}\nChoose one of these options and reply with its exact text:\n{listed}"
