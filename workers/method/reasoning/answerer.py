"""The answering agent: pick exactly one choice (or write a short free answer)."""

from workers.method.reasoning.prompts import evidence_block, question_block

SYSTEM = (
    "You are the answering agent of an audio question-answering system. You cannot hear the "
    "audio; answer from the evidence document only. For a multiple-choice question, the "
    "answer must be one of the choices, copied exactly. Reply with JSON only."
)


def schema(choices: list[str]) -> dict:
    answer = {"type": "string", "enum": choices} if choices else {"type": "string"}
    return {
        "type": "object",
        "properties": {
            "reasoning": {"type": "string"},
            "answer": answer,
            "confidence": {"type": "number"},
        },
        "required": ["reasoning", "answer", "confidence"],
    }


def messages(question: str, choices: list[str], document: str) -> list[dict]:
    user = (
        f"{question_block(question, choices)}\n\n{evidence_block(document)}\n\n"
        "Give your reasoning, the answer, and your confidence between 0 and 1."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
