"""The arbiter: the reasoner deciding between its own text-side answer and the audio model's,
given after it heard the clip with a summary of the evidence (Audio-Mind keeps the audio
model in the final decision; this asks the reasoner only when the two differ)."""

from workers.method.reasoning.answerer import schema  # the same reply: reasoning, answer, confidence
from workers.method.reasoning.prompts import evidence_block, question_block

__all__ = ["messages", "schema"]

SYSTEM = (
    "You are the arbiter of an audio question-answering system. Two answers to one question "
    "differ: one reasoned from the evidence document, one from an audio model that heard the "
    "audio itself with a summary of that evidence. Decide which is right from the evidence and "
    "each source's trust; the answer must be one of the choices, copied exactly. Reply with JSON only."
)


def messages(question: str, choices: list[str], document: str, text_answer: str, text_reasoning: str | None,
             audio_answer: str, audio_reply: str) -> list[dict]:
    user = (
        f"{question_block(question, choices)}\n\n{evidence_block(document)}\n\n"
        f"The text-side answer: {text_answer!r}. Its reasoning: {text_reasoning or '(none given)'}\n"
        f"The audio model's answer, having heard the audio: {audio_answer!r}. Its reply: {audio_reply}\n\n"
        "Give your reasoning, the answer, and your confidence between 0 and 1."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
