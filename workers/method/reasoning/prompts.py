"""Shared prompt pieces: how a question and the evidence are shown to every agent."""


def question_block(question: str, choices: list[str]) -> str:
    lines = [f"Question: {question}"]
    if choices:
        lines.append("Choices:")
        lines += [f"- {c}" for c in choices]
    else:
        lines.append("(Open question: answer in a short phrase.)")
    return "\n".join(lines)


def evidence_block(document: str) -> str:
    return f"Evidence document (what the perception tools found in the audio):\n{document}"
