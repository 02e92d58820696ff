"""A job's evidence chain rendered for a person reading a terminal (`agr audit JOB`)."""

import json

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

REPLY_CHARS = 600


def render_audit(console: Console, chain: dict) -> None:
    job = chain["job"]
    console.print(Panel(_job_header(job), title=f"job {job['custom_id']}", expand=False))
    for iteration in chain["iterations"]:
        console.print(Panel(_iteration(iteration), title=_iteration_title(iteration["index"]), expand=True))
    console.print(_steps(chain["steps"]))
    for line in _how_decided(job):
        console.print(line)
    console.print(_verdict_line(job))


def _job_header(job: dict) -> Text:
    text = Text()
    text.append(f"{job['question']}\n", style="bold")
    for choice in job["choices"]:
        text.append(f"  - {choice}\n")
    text.append(f"status {job['status']} · {job['attempts']} step attempt(s) · id {job['id']}")
    return text


def _iteration_title(index: int) -> str:
    return "iteration 0: coarse document" if index == 0 else f"iteration {index}: refinement round {index}"


def _iteration(it: dict) -> Group:
    parts: list[RenderableType] = []
    if it["tool_calls"]:
        tools = Table("#", "tool", "args", "ms", "cache", "result", expand=True)
        for call in it["tool_calls"]:
            result = call["error"] and f"error: {call['error']}" or call["text"]
            tools.add_row(str(call["index"]), call["tool"], Text(json.dumps(call["args"])),
                          _milliseconds(call["latency_ms"]), "hit" if call["cache_hit"] else "",
                          Text(_short(result, 300)))
        parts.append(tools)
    if it["document"]:
        parts.append(Panel(Text(it["document"]), title="evidence document", border_style="dim"))
    if it["verdict"]:
        v = it["verdict"]
        missing = v.get("missing") or v.get("missing_information") or ""
        parts.append(Text(f"planner: {'sufficient' if v.get('sufficient') else 'insufficient'}"
                          f"{' (final)' if v.get('final') else ''}"
                          f"{' · missing: ' + _short(str(missing), 300) if missing else ''}", style="cyan"))
        if v.get("agreement"):  # crosscheck: the audio models' own answers and the gate
            answers = ", ".join(f"{tool}: {answer or 'no choice'}" for tool, answer in v["agreement"]["answers"].items())
            parts.append(Text(f"audio models: {answers} · gate: {v.get('gate') or 'none'}", style="cyan"))
    if it["tool_plan"]:
        parts.append(Text("tool plan: " + _short(json.dumps(it["tool_plan"]), 600), style="magenta"))
    for call in it["llm_calls"]:
        tokens = f"{call['prompt_tokens']}+{call['completion_tokens']} tokens"
        parts.append(Text(f"{call['agent']} ({call['model']}, {tokens}, {call['latency_ms']:.0f} ms): "
                          f"{_short(call['reply'], REPLY_CHARS)}", style="green"))
    return Group(*parts)


def _steps(steps: list[dict]) -> Table:
    table = Table("step", "iteration", "status", "attempts", "created", "finished", "last error", title="steps")
    for s in steps:
        table.add_row(s["kind"], str(s["iteration"]), s["status"], str(s["attempts"]), s["created_at"][11:23],
                      (s["finished_at"] or "")[11:23], Text(_short(s["last_error"] or "", 120)))
    return table


def _how_decided(job: dict) -> list[Text]:
    """The vote of the answer samples and (crosscheck) who decided, with both sides' answers."""
    lines = []
    if vote := job.get("vote"):
        counts = ", ".join(f"{v['answer']}: {v['votes']}" for v in vote["votes"])
        lines.append(Text(f"vote of {vote['samples']} samples: {counts} · margin {vote['margin']}", style="cyan"))
    if decision := job.get("decision"):
        sides = (f" · text side: {decision.get('text_answer')} · audio model: {decision.get('audio_answer')}"
                 if "text_answer" in decision else "")
        why = decision.get("why") or decision.get("arbiter_reasoning") or ""
        lines.append(Text(f"decided by {decision['by']}{sides}{' · ' + _short(why, 300) if why else ''}",
                          style="cyan"))
    return lines


def _verdict_line(job: dict) -> Text:
    if job["status"] != "succeeded":
        return Text(f"no answer: {job['error']}", style="red")
    answer = job["answer"] if job["answer"] is not None else f"(unmapped) {job['raw_answer']}"
    line = Text(f"answer: {answer}", style="bold")
    if job["reference_answer"] is not None:
        right = job["answer"] == job["reference_answer"]
        line.append(f"   reference: {job['reference_answer']}  ")
        line.append("correct" if right else "wrong", style="green" if right else "red")
    return line


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _milliseconds(latency_ms: float | None) -> str:
    # None: the call shared a GPU pass, whose time the evidence does not show (api/evidence_chain.py).
    return "shared pass" if latency_ms is None else f"{latency_ms:.0f}"
