"""`agr eval`: a batch's accuracy through the API (or a predictions file's), several batches
side by side over their common items, and the MMAR challenge's trace score (--rubric) of
the right answers, judged through the configured reasoner endpoint (evaluation/trace_rubric.py)."""

import json
from pathlib import Path

import typer
from rich.table import Table

from cli.client import ApiClient
from cli.common import app, console, fail
from cli.remote import _api, _client, _pct, _print_score, each_at_once
from core.settings import get_settings
from evaluation.scoring import (
    GROUP_FIELDS,
    ScoredItem,
    common_items,
    read_benchmark,
    read_predictions,
    report_of,
    score,
)
from evaluation.trace_rubric import JUDGE_RUNS, TraceItem, TraceJudge, TraceReport, judge_messages, thinking_prediction
from workers.method.mechanisms import switched_off

JUDGE_THREADS = 4  # right answers judged at once (each one's runs in turn): calls in flight to the judge


@app.command("eval")
def evaluate(
    batch: list[str] | None = typer.Option(None, help="score a batch through the API; repeat it to compare "
                                                      "batches over the same items side by side"),
    predictions: Path | None = typer.Option(None, help="a predictions file (MMAR/MMAU output, MMAR challenge "
                                                       "JSONL, or our output JSONL)"),
    benchmark: Path | None = typer.Option(None, help="the benchmark file the predictions answer; with --batch "
                                                     "--rubric, MMAR's per-item rubric and reference thinking "
                                                     "are given to the judge"),
    rule: str = typer.Option("token", help="token (MMAR/MMAU official) or letter (AIR-Bench)"),
    rubric: bool = typer.Option(False, help="with --batch: score each right answer's trace as the MMAR challenge "
                                            "does (an LLM judge, the configured reasoner endpoint, 5 runs, "
                                            "mean of the middle 3; wrong answers 0)"),
    judge_model: str | None = typer.Option(None, help="the judge's model on that endpoint [default: AGR_LLM_MODEL]"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the report as JSON"),
) -> None:
    """Accuracy by the benchmarks' official rule: overall and per modality, category,
    sub-category and difficulty; official (no-prediction items dropped) and strict. Several
    --batch: one table, a column per batch (its pipeline and switched-off mechanisms), over
    the items they all have. --rubric: the MMAR challenge's trace score too."""
    if rubric and not batch:
        fail("--rubric scores a batch's traces: give --batch ID")
    rubric_items = _rubric_items(benchmark) if rubric and benchmark else {}
    if batch and len(batch) > 1:
        report = _compare(_client(), batch, rule, _judge(judge_model) if rubric else None, rubric_items)
    elif batch:
        client = _client()
        report = _api(lambda: client.score(batch[0], rule, items=rubric))
        _print_score(report)
        if rubric:
            trace = _judge_traces(client, _judge(judge_model), report.pop("items"), rubric_items)
            _print_trace(trace)
            report["trace_score"] = trace.as_json()
    elif predictions and benchmark:
        try:
            report = score(read_benchmark(benchmark), read_predictions(predictions), rule).as_json()
        except (ValueError, OSError) as exc:
            fail(str(exc))
        _print_score(report)
    else:
        fail("give --batch ID, or --predictions FILE with --benchmark FILE")
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))


def column_label(batch: dict) -> str:
    """A batch's column in a comparison: its pipeline, then each mechanism it switched off
    ("crosscheck -agreement_gate"); just the pipeline when none is off."""
    options = batch.get("options") or {}
    pipeline = batch.get("pipeline") or options.get("pipeline") or "agr"
    return " ".join([pipeline, *(f"-{name}" for name in sorted(switched_off(options.get("mechanisms"))))])


def _compare(client: ApiClient, batch_ids: list[str], rule: str, judge: TraceJudge | None,
             rubric_items: dict) -> dict:
    """Several batches scored over the items they all have, printed side by side."""
    if len(set(batch_ids)) != len(batch_ids):
        fail("each --batch once: the same batch is given twice")
    reports = [_api(lambda b=b: client.score(b, rule, items=True)) for b in batch_ids]
    runs = [[ScoredItem.from_json(i) for i in r["items"]] for r in reports]
    shared_runs, shared = common_items(runs)
    sizes = [len(run) for run in runs]
    warning = None
    if any(n != len(shared) for n in sizes):
        warning = (f"the batches do not cover the same items ({', '.join(f'{b}: {n}' for b, n in zip(batch_ids, sizes))}"
                   f"): scored over the {len(shared)} item(s) they all have")
        console.print(f"[yellow]warning:[/] {warning}")
    columns = []
    for batch_id, report, run in zip(batch_ids, reports, shared_runs):
        column = {"id": batch_id, "label": column_label(report["batch"]), "name": report["batch"].get("name"),
                  "pipeline": report["batch"].get("pipeline"), "options": report["batch"].get("options"),
                  "items": len(report["items"]), "report": report_of(run, rule).as_json()}
        if judge is not None:
            by_id = {i["id"]: i for i in report["items"]}
            console.print(f"judging the traces of {column['label']} ({batch_id})")
            trace = _judge_traces(client, judge, [by_id[i.id] for i in run], rubric_items)
            column["trace_score"] = trace.as_json()
        columns.append(column)
    _print_side_by_side(columns, rule, len(shared))
    return {"rule": rule, "common_items": len(shared), "warning": warning, "batches": columns}


def _print_side_by_side(columns: list[dict], rule: str, shared: int) -> None:
    table = Table("group", "value", *(f"{c['label']}\n{c['id']}" for c in columns),
                  title=f"accuracy per batch, rule {rule}, over {shared} common item(s)")
    overall = [c["report"]["overall"] for c in columns]
    table.add_row("items", "", *(str(o["total"]) for o in overall))
    table.add_row("overall", "official", *(_cell(o["official"], o["correct"], o["scored"]) for o in overall))
    table.add_row("overall", "strict", *(_cell(o["strict"], o["correct"], o["total"]) for o in overall))
    table.add_row("overall", "no prediction", *(str(o["missing"]) for o in overall))
    groups: dict[str, dict[str, None]] = {}  # group -> values, in report order, over every column
    for c in columns:
        for group, values in c["report"]["by_group"].items():
            groups.setdefault(group, {}).update(dict.fromkeys(values))
    for group in sorted(groups, key=lambda g: GROUP_FIELDS.index(g) if g in GROUP_FIELDS else len(GROUP_FIELDS)):
        for value in sorted(groups[group]):
            cells = []
            for c in columns:
                acc = c["report"]["by_group"].get(group, {}).get(value)
                cells.append(_cell(acc["official"], acc["correct"], acc["scored"]) if acc else "-")
            table.add_row(group, value, *cells)
    if all("trace_score" in c for c in columns):
        traces = [c["trace_score"]["overall"] for c in columns]
        table.add_row("trace score", "right answers", *(_score(t["mean_right"]) for t in traces))
        table.add_row("trace score", "challenge (all)", *(_score(t["challenge"]) for t in traces))
        table.add_row("trace score", "missing runs", *(str(t["missing_runs"]) for t in traces))
    console.print(table)
    console.print("per-group figures are official (items without a prediction dropped); "
                  "cells: accuracy (correct/items counted)")


def _cell(value, correct: int, count: int) -> str:
    return f"{_pct(value)} ({correct}/{count})"


# --- the trace rubric ---


def _judge(model: str | None) -> TraceJudge:
    settings = get_settings()
    if not settings.llm_base_url:
        fail("--rubric asks the configured reasoner endpoint to judge: set AGR_LLM_BASE_URL (and AGR_LLM_MODEL, "
             "AGR_LLM_API_KEY); the embedded toy reasoner runs only inside `agr run`")
    return TraceJudge(settings.llm_base_url, model or settings.llm_model, settings.llm_api_key.get_secret_value(),
                      timeout_s=settings.llm_timeout_s, max_retries=settings.llm_max_retries,
                      max_tokens=max(settings.llm_max_tokens, 256))


def _rubric_items(benchmark: Path) -> dict:
    """The benchmark's items by id, for their own rubric and reference thinking (MMAR)."""
    try:
        return {str(item.get("id")): item for item in read_benchmark(benchmark)}
    except (ValueError, OSError) as exc:
        fail(str(exc))


def _judge_traces(client: ApiClient, judge: TraceJudge, items: list[dict], rubric_items: dict) -> TraceReport:
    """Each right answer's trace (from its evidence chain) judged JUDGE_RUNS times, a few
    answers at once, with progress; every other item scores 0."""
    right = [i for i in items if i["correct"]]

    def judged(item: dict) -> TraceItem:
        chain = client.evidence(item["job_id"])
        job, reference = chain["job"], rubric_items.get(item["id"], {})
        answer = job["answer"] if job["answer"] is not None else job["raw_answer"]
        messages = judge_messages(job["question"], job["choices"], job["reference_answer"] or answer,
                                  thinking_prediction(chain), reference.get("rubric"), reference.get("thinking"))
        return TraceItem(item["id"], True, judge.score(messages), item.get("groups") or {})

    scores = each_at_once(f"judging traces ({JUDGE_RUNS} runs each)", right, lambda item: item["id"], judged,
                          JUDGE_THREADS)
    return TraceReport.of([scores.get(i["id"]) or TraceItem(i["id"], i["correct"], None, i.get("groups") or {})
                           for i in items], model=judge.model)


def _print_trace(trace: TraceReport) -> None:
    table = Table("group", "value", "right", "judged", "mean (right answers)", "challenge (all items)",
                  title=f"trace score: judge {trace.model}, {trace.runs} runs per right answer, middle 3 averaged")
    table.add_row("overall", "", *_trace_figures(trace.overall))
    for group in sorted(trace.by_group, key=lambda g: GROUP_FIELDS.index(g) if g in GROUP_FIELDS else 99):
        for value, figures in trace.by_group[group].items():
            table.add_row(group, value, *_trace_figures(figures))
    console.print(table)
    o = trace.overall
    console.print(f"trace score: mean over right answers {_score(o.mean_right)} ({o.judged} judged of {o.right} "
                  f"right), challenge-style mean over all {o.total - o.unjudged} item(s) {_score(o.challenge)} "
                  f"(wrong or unanswered 0); {o.missing_runs} judge run(s) missing (no score after a retry), "
                  f"{trace.retries} repl(ies) retried, {o.unjudged} right answer(s) with no score at all")


def _trace_figures(f) -> list[str]:
    return [str(f.right), str(f.judged), _score(f.mean_right), _score(f.challenge)]


def _score(value) -> str:
    return "-" if value is None else f"{value:.3f}"
