"""The evidence document: every tool result, attributed and numbered, in the order found.

Items are never rewritten, only appended, so an audit can point at the exact line an
agent read ("E1.2") and the round that produced it.
"""


def evidence_item(iteration: int, call_index: int, tool: str, args: dict, text: str) -> dict:
    return {
        "id": f"E{iteration}.{call_index + 1}",
        "iteration": iteration,
        "tool": tool,
        "args": args,
        "text": text,
    }


def render_document(items: list[dict]) -> str:
    sections: dict[int, list[str]] = {}
    for item in items:
        sections.setdefault(item["iteration"], []).append(_render_item(item))
    parts = []
    for iteration, lines in sorted(sections.items()):
        title = "Coarse evidence" if iteration == 0 else f"Refinement round {iteration}"
        parts.append(f"## {title}\n" + "\n".join(lines))
    return "\n\n".join(parts) if parts else "(no evidence)"


def _render_item(item: dict) -> str:
    args = dict(item["args"])
    window = ""
    if "start" in args or "end" in args:
        window = f" [window {args.pop('start', 0)}-{args.pop('end', 'end')} s]"
    shown = "".join(f" {k}={v!r}" for k, v in args.items())
    text = item["text"].replace("\n", "\n    ")
    return f"[{item['id']}] {item['tool']}{window}{shown}:\n    {text}"
