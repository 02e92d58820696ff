"""The interaction agent: turn what is missing into concrete tool calls.

Unlike the published system it sees the question and the choices (so it can ask the
discriminating question), and it may plan several calls in one round. Calls naming an
unknown tool or carrying arguments that fail the tool's schema are dropped, and the
drop is recorded in the plan so an audit shows it.
"""

from workers.method.perception.tools import PlannedCall
from workers.method.reasoning.json_reply import schema_errors
from workers.method.reasoning.prompts import evidence_block, question_block

MAX_CALLS_PER_ROUND = 4

SYSTEM = (
    "You are the interaction agent of an audio question-answering system. Perception tools "
    "can examine the audio; you decide which tool calls would supply the missing evidence. "
    "Use the time window arguments start/end (seconds) to re-listen to one part. "
    f"Plan between 1 and {MAX_CALLS_PER_ROUND} calls. Reply with JSON only."
)


def schema(tools: list) -> dict:
    return {
        "type": "object",
        "properties": {
            "calls": {
                "type": "array",
                "maxItems": MAX_CALLS_PER_ROUND,
                "items": {
                    "type": "object",
                    "properties": {
                        "tool": {"type": "string", "enum": [t.name for t in tools]},
                        "args": {"type": "object"},
                        "purpose": {"type": "string"},
                    },
                    "required": ["tool", "args"],
                },
            }
        },
        "required": ["calls"],
    }


def messages(question, choices, document, missing: list[str], tools: list) -> list[dict]:
    tool_lines = "\n".join(
        f"- {t.name}: {t.description} args: {sorted(t.args_schema()['properties'])}"
        f"{' (required: ' + ', '.join(t.required) + ')' if t.required else ''}"
        for t in tools
    )
    user = (
        f"{question_block(question, choices)}\n\n{evidence_block(document)}\n\n"
        f"The planning agent says this is missing: {'; '.join(missing) or 'unspecified'}\n\n"
        f"Available tools:\n{tool_lines}\n\nWhich calls should be made?"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def plan_from(parsed: dict | None, tools: list) -> list[dict]:
    """Every proposed call, each marked accepted or dropped with the reason."""
    by_name = {t.name: t for t in tools}
    plan = []
    for proposed in (parsed or {}).get("calls", [])[:MAX_CALLS_PER_ROUND]:
        tool, args = proposed.get("tool"), proposed.get("args") or {}
        problem = "unknown tool" if tool not in by_name else schema_errors(args, by_name[tool].args_schema())
        plan.append({"tool": tool, "args": args, "purpose": proposed.get("purpose", ""),
                     "accepted": problem is None, "dropped_because": problem})
    return plan


def accepted_calls(plan: list[dict], catalogue) -> list[PlannedCall]:
    """The next round's calls, with the models of the job's tool catalogue, each with only
    the arguments its schema declares: what only the pipeline sets (an audio model's
    final-listening `evidence`, a sample's `temperature`) an agent cannot."""
    calls = []
    for c in plan:
        if c["accepted"]:
            entry = catalogue.tool(c["tool"])
            declared = entry.args_schema()["properties"] if entry else c["args"]
            calls.append(catalogue.call(c["tool"], {k: v for k, v in c["args"].items() if k in declared}))
    return calls
