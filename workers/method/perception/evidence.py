"""The evidence document: every tool result, attributed and numbered, in the order found.

Items are never rewritten, only appended, so an audit can point at the exact line an
agent read ("E1.2") and the round that produced it. Each item stores its tool's source
kind and trust (workers/method/perception/trust.py); a document rendered `with_sources` (the
`crosscheck` pipeline's) shows them, and opens with each tool's declared limits.
"""

from workers.method.perception.agreement import describe, is_final_listening, of_round_zero
from workers.method.perception.tools.alm_tools import ANSWER_KIND, prompt_kind_of
from workers.method.perception.trust import TRUST_BY_SOURCE, declared

SOURCES_NOTE = ("Each item names its source kind and trust: analytic measurements 1.0, probabilistic models 0.75, "
                "heuristics 0.5, audio-language models 0.4. Where items conflict, weigh them by trust; never use "
                "an item for what its tool's limits exclude.")


def evidence_item(iteration: int, call_index: int, tool: str, args: dict, text: str) -> dict:
    source = declared(tool)
    return {
        "id": f"E{iteration}.{call_index + 1}",
        "iteration": iteration,
        "tool": tool,
        "args": args,
        "text": text,
        "source": source.source,
        "trust": source.trust,
    }


def render_document(items: list[dict], with_sources: bool = False, choices: list[str] | None = None) -> str:
    """The document the agents read. With `choices` (crosscheck), the audio models' own
    answers of round 0 follow the coarse evidence, their agreement or conflict stated."""
    sections: dict[int, list[dict]] = {}
    for item in items:
        sections.setdefault(item["iteration"], []).append(item)
    parts = [_sources(items)] if with_sources and items else []
    for iteration, section in sorted(sections.items()):
        parts.append(f"## {_title(iteration, section)}\n" + "\n".join(_render_item(i, with_sources) for i in section))
        if iteration == 0 and choices is not None and (answers := describe(of_round_zero(items, choices))):
            parts.append(answers)
    return "\n\n".join(parts) if parts else "(no evidence)"


def _title(iteration: int, items: list[dict]) -> str:
    if iteration == 0:
        return "Coarse evidence"
    if all(is_final_listening(i["tool"], i["args"]) for i in items):
        return "Final listening (the audio model answers with the evidence)"
    return f"Refinement round {iteration}"


def _sources(items: list[dict]) -> str:
    tools = dict.fromkeys(item["tool"] for item in items)
    lines = [f"- {tool}: {declared(tool).source}, trust {declared(tool).trust:.2f}; limits: {declared(tool).limits}"
             for tool in tools]
    return "## Sources\n" + SOURCES_NOTE + "\n" + "\n".join(lines)


def _render_item(item: dict, with_sources: bool = False) -> str:
    args = dict(item["args"])
    window = ""
    if "start" in args or "end" in args:
        window = f" [window {args.pop('start', 0)}-{args.pop('end', 'end')} s]"
    if "parts" in args:
        window = f" [part {args.pop('part', 1)} of {args.pop('parts')}]"
    if "choices" in args:  # an answer route: the question is the job's own
        args.pop("question", None)  # the job's own question and choices, shown with the document
    args.pop("choices", None)
    for pipeline_only in ("cover", "temperature"):  # how it was heard, not what was asked
        args.pop(pipeline_only, None)
    args.pop("evidence", None)  # the document itself, summarised
    shown = "".join(f" {k}={v!r}" for k, v in args.items())
    text = item["text"].replace("\n", "\n    ")
    # Items stored before sources were: their tool's declaration now.
    source = item.get("source") or declared(item["tool"]).source
    label = f" {{{source} {TRUST_BY_SOURCE[source]:.2f}}}" if with_sources else ""
    return f"[{item['id']}] {item['tool']}{label}{window}{shown}:\n    {text}"


def neutral_summary(items: list[dict], limit: int = 2000) -> str:
    """The evidence for an audio model to answer with: every item's text, without any
    model's answer or trust label (it hears the clip itself and must not be led), cut to
    `limit` characters."""
    lines = [f"- {item['tool']}: {' '.join(item['text'].split())}" for item in items
             if prompt_kind_of(item["tool"])[0] != ANSWER_KIND and not item["text"].startswith("tool error")]
    summary = "\n".join(lines)
    return summary if len(summary) <= limit else summary[: limit - 3].rstrip() + "..."
