"""The planning agent: is the evidence enough to answer, and if not, what is missing?"""

from workers.method.reasoning.json_reply import as_confidence
from workers.method.reasoning.prompts import evidence_block, question_block
from workers.method.verdict import Verdict

SYSTEM = (
    "You are the planning agent of an audio question-answering system. You cannot hear the "
    "audio; you read an evidence document produced by perception tools. Decide whether the "
    "evidence is sufficient to answer the question with confidence. If not, say precisely "
    "what information is missing and which tools could provide it. Reply with JSON only."
)


def schema(tool_names: list[str]) -> dict:
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string"},
            "sufficient": {"type": "boolean"},
            "confidence": {"type": "number"},
            "missing": {"type": "array", "items": {"type": "string"}},
            "routes": {"type": "array", "items": {"type": "string", "enum": tool_names}},
        },
        "required": ["reason", "sufficient", "confidence", "missing"],
    }


def messages(question: str, choices: list[str], document: str, tools: list) -> list[dict]:
    tool_lines = "\n".join(f"- {t.name}: {t.description}" for t in tools)
    user = (
        f"{question_block(question, choices)}\n\n{evidence_block(document)}\n\n"
        f"Tools that can be asked for more evidence:\n{tool_lines}\n\n"
        "Is the evidence sufficient to answer? Give your reason, sufficient (true/false), "
        "confidence between 0 and 1, what is missing, and the routes (tool names) that could help."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def verdict_from(parsed: dict | None, raw: str) -> Verdict:
    if parsed is None:
        # An unreadable verdict must not end the loop early: treat it as "not yet sufficient".
        return Verdict(False, f"planner reply unreadable: {raw[:200]}", 0.0, [], [], readable=False)
    return Verdict(
        sufficient=bool(parsed["sufficient"]),
        reason=str(parsed["reason"]),
        confidence=as_confidence(parsed.get("confidence", 0.0)),
        missing=[str(m) for m in parsed.get("missing", [])],
        routes=[str(r) for r in parsed.get("routes", [])],
    )
