"""The evidence document: every tool result, attributed and numbered, in the order found.

Items are never rewritten, only appended, so an audit can point at the exact line an
agent read ("E1.2") and the round that produced it. Each item stores its tool's source
kind and trust (workers/perception/trust.py); a document rendered `with_sources` (the
`crosscheck` pipeline's) shows them, and opens with each tool's declared limits.
"""

from workers.perception.trust import TRUST_BY_SOURCE, declared

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


def render_document(items: list[dict], with_sources: bool = False) -> str:
    sections: dict[int, list[str]] = {}
    for item in items:
        sections.setdefault(item["iteration"], []).append(_render_item(item, with_sources))
    parts = [_sources(items)] if with_sources and items else []
    for iteration, lines in sorted(sections.items()):
        title = "Coarse evidence" if iteration == 0 else f"Refinement round {iteration}"
        parts.append(f"## {title}\n" + "\n".join(lines))
    return "\n\n".join(parts) if parts else "(no evidence)"


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
    shown = "".join(f" {k}={v!r}" for k, v in args.items())
    text = item["text"].replace("\n", "\n    ")
    # Items stored before sources were: their tool's declaration now.
    source = item.get("source") or declared(item["tool"]).source
    label = f" {{{source} {TRUST_BY_SOURCE[source]:.2f}}}" if with_sources else ""
    return f"[{item['id']}] {item['tool']}{label}{window}{shown}:\n    {text}"
