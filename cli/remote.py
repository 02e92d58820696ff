"""The CLI commands that talk to the HTTP API (AGR_API_URL, AGR_API_KEY):
submit, status, results, audit, eval."""

import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.intake.batch_input import SubmissionInvalid, UploadRef, parse_submission, resolve_in_root
from cli import uploads as cli_uploads
from cli.audit_view import render_audit
from cli.client import ApiClient, ApiError
from cli.common import app, console, fail
from cli.db_outage import Outage
from evaluation.benchmark_exports import EXPORT_FORMATS
from evaluation.trace_rubric import JudgeUnavailable, thinking_prediction

ENDED = {"completed", "failed", "expired", "cancelled"}
POLL_S = 1.0
EVIDENCE_THREADS = 4  # evidence chains fetched at once for the traces


@app.command()
def submit(
    file: Path = typer.Argument(..., help="our JSONL items, an MMAR JSONL file or an MMAU JSON file"),
    audio_dir: Path | None = typer.Option(None, help="local folder the audio paths are relative to; its files "
                                                     "are uploaded [default: the file's folder]"),
    server_audio_dir: str | None = typer.Option(None, help="instead of uploading: a folder inside the "
                                                           "tenant's server-side audio root"),
    input_format: str = typer.Option("auto", "--format", help="auto, jsonl, mmar or mmau"),
    pipeline: str = typer.Option("agr", help="agr (full method), cascade (no loop), direct (one ALM call) or crosscheck (beyond AGR: cross-checked, audio-grounded)"),
    without: list[str] = typer.Option([], help="crosscheck: switch a mechanism off (repeatable), e.g. agreement_gate"),
    max_iters: int | None = typer.Option(None, min=0, max=10),
    name: str | None = typer.Option(None),
    completion_window: str | None = typer.Option(None, help="e.g. 24h; unfinished jobs expire after it"),
    wait: bool = typer.Option(False, help="show live progress until the batch ends, then the score"),
) -> None:
    """Validate a file (every line, every audio file), upload the audio the service does not
    hold yet, queue it as one batch. Running the same command again (after any failure)
    uploads only what is missing and finds the batch the first run made."""
    text = _read_text(file)
    client = _client()
    body: dict[str, Any] = {"input_format": input_format, "pipeline": pipeline, "max_iters": max_iters,
                            "name": name or file.name, "completion_window": completion_window}
    if without:
        body["mechanisms"] = {m: False for m in without}
    if server_audio_dir is not None:
        body |= {"input": text, "audio_dir": server_audio_dir or None}
    else:
        jsonl = _with_uploads(client, text, input_format, (audio_dir or file.parent).resolve())
        input_file = _api(lambda: client.input_file(jsonl, file.name + ".jsonl"))
        body |= {"input_file_id": input_file["id"], "input_format": "jsonl"}
    # Derived from the request itself: the same files and options make the same key, so a
    # re-run after a timeout or a crash gets the first run's batch back instead of a second.
    key = "agr-submit-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    batch = _validated(client, _api(lambda: client.create_batch(body, idempotency_key=key)))
    console.print(f"batch [bold]{batch['id']}[/] queued: {batch['request_counts']['total']} item(s), "
                  f"pipeline {batch['pipeline']}")
    if wait:
        outage = _outage()
        _watch(client, batch["id"], outage)
        _print_score(_through(outage, lambda: client.score(batch["id"])))


def _validated(client: ApiClient, batch: dict) -> dict:
    """The batch once the service has checked every line and file; the command fails with
    every bad line if it was refused."""
    outage = _outage()
    with console.status(f"batch {batch['id']}: the service is checking every line and file"):
        while batch["status"] == "validating":
            time.sleep(POLL_S)
            batch = _through(outage, lambda: client.batch(batch["id"]))
    if batch["status"] == "failed":
        errors = [e["message"] for e in (batch.get("errors") or {}).get("data", [])]
        fail(str(SubmissionInvalid(errors or ["refused, with no reason given"])))
    if batch["status"] in ("cancelling", "cancelled", "expired"):
        fail(f"batch {batch['id']} is {batch['status']}: nothing more of it will run (to submit the "
             "same file again, give it another --name)")
    return batch


@app.command()
def status(batch_id: str, watch: bool = typer.Option(False, help="follow until the batch ends")) -> None:
    """A batch's status and live counts."""
    client = _client()
    _print_batch(_watch(client, batch_id, _outage()) if watch else _api(lambda: client.batch(batch_id)))


@app.command()
def cancel(batch_id: str) -> None:
    """Cancel a batch; finished results are kept."""
    client = _client()
    _print_batch(_api(lambda: client.cancel(batch_id)))


@app.command()
def delete(batch_id: str) -> None:
    """Delete an ended batch, its evidence and the audio no other job or upload uses."""
    client = _client()
    deleted = _api(lambda: client.delete(batch_id))
    console.print(f"batch {batch_id} deleted; {deleted['audio_objects_deleted']} stored audio object(s) with it")


@app.command()
def results(
    batch_id: str,
    output: Path = typer.Option(..., "-o", "--output", help="file to write"),
    export_format: str = typer.Option("jsonl", "--format", help="jsonl (ours), mmar, mmau or mmar-challenge"),
) -> None:
    """Download answers (partial while running). jsonl writes the output file to OUTPUT and the
    error file beside it (OUTPUT.errors.jsonl); mmar/mmau/mmar-challenge write the official format."""
    client = _client()
    done = _api(lambda: client.result_lines(batch_id, "output"))
    failed = _api(lambda: client.result_lines(batch_id, "errors"))
    if export_format == "jsonl":
        _write_jsonl(output, done)
        errors_path = output.with_name(output.name + ".errors.jsonl")
        _write_jsonl(errors_path, failed)
        console.print(f"{len(done)} answer(s) -> {output}; {len(failed)} error(s) -> {errors_path}")
        return
    if export_format not in EXPORT_FORMATS:
        fail(f"unknown format {export_format!r}; use jsonl or one of {', '.join(EXPORT_FORMATS)}")
    items = sorted(done + failed, key=lambda r: r["custom_id"])
    benchmark_items = [{"id": r["custom_id"], "question": r["question"], "choices": r["choices"],
                        "answer": r["reference_answer"], **r["metadata"]} for r in items]
    # The challenge's rubric reads thinking_prediction: there, the trace built from each
    # job's stored evidence chain (evaluation/trace_rubric.py); elsewhere the answerer's reasoning.
    traces = _traces(client, [r["job_id"] for r in done]) if export_format == "mmar-challenge" else {}
    predictions = {r["custom_id"]: {"answer": r["answer"] if r["answer"] is not None else r["raw_answer"],
                                    "thinking": traces.get(r["job_id"], r["reasoning"])} for r in done}
    written = EXPORT_FORMATS[export_format](benchmark_items, predictions, output)
    console.print(f"{export_format}: {len(benchmark_items)} item(s), {written} with a prediction -> {output}")


@app.command()
def audit(job_id: str) -> None:
    """A job's evidence chain, rendered for reading: each iteration's tool calls, document,
    the planner's verdict and the agents' LLM calls, then the answer against the reference."""
    client = _client()
    render_audit(console, _api(lambda: client.evidence(job_id)))


def _traces(client: ApiClient, job_ids: list[str]) -> dict[str, str]:
    """Each job's thinking_prediction, built from its evidence chain (a few fetched at once)."""
    return each_at_once("traces from the evidence chains", job_ids, lambda job_id: job_id,
                        lambda job_id: thinking_prediction(client.evidence(job_id)), EVIDENCE_THREADS)


def each_at_once(description: str, items: list, key, work, threads: int) -> dict:
    """{key(item): work(item)} for every item, `threads` at a time, with a progress bar; the
    first failure (the API or the judge) cancels the rest and ends the command."""
    done = {}
    with _progress() as bar, ThreadPoolExecutor(threads) as pool:
        task = bar.add_task(description, total=len(items))
        futures = {pool.submit(work, item): key(item) for item in items}
        try:
            for future in as_completed(futures):
                done[futures[future]] = future.result()
                bar.advance(task)
        except Exception as exc:  # the rest is not worth asking
            for f in futures:
                f.cancel()
            fail(_failure(exc))
    return done


def _failure(exc: Exception) -> str:
    if isinstance(exc, (JudgeUnavailable, ApiError)):
        return str(exc)
    return f"cannot reach the API: {type(exc).__name__}: {exc}"  # httpx transport errors


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _client() -> ApiClient:
    try:
        return ApiClient(on_wait=lambda s: console.print(f"rate limited by the API: waiting {s} s"))
    except ApiError as exc:
        fail(str(exc))


def _api(call):
    try:
        return call()
    except ApiError as exc:
        fail(str(exc))
    except Exception as exc:  # httpx transport errors: the API is not reachable
        fail(f"cannot reach the API: {type(exc).__name__}: {exc}")


def _outage() -> Outage:
    # The API answers 503 while its database is unreachable (api/app.py): a watch waits
    # that out, as `agr run` does, instead of ending on the first poll that fails.
    return Outage(console, is_outage=lambda exc: isinstance(exc, ApiError) and exc.status == 503)


def _through(outage: Outage, call):
    """call() through the API, waiting out a database outage; other errors end the command."""
    return _api(lambda: outage.read(call))


def _read_text(file: Path) -> str:
    if not file.is_file():
        fail(f"{file} is not a file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text")


def _with_uploads(client: ApiClient, text: str, input_format: str, audio_dir: Path) -> str:
    """The file as our JSONL, each audio path replaced by the id of its upload. Everything
    is checked here first, so nothing is uploaded for a file that would be refused."""
    try:
        items = parse_submission(text, input_format)
    except SubmissionInvalid as exc:
        fail(str(exc))
    errors: list[str] = []
    paths: dict[str, Path] = {}
    for item in items:
        if isinstance(item.audio, UploadRef):
            continue
        # Meant to be a path: an inline or URL audio (an OpenAI batch file) fails in check_relative
        # with a TypeError, as it always has.
        reference = cast(str, item.audio)
        if reference in paths:
            continue
        try:
            paths[reference] = resolve_in_root(reference, audio_dir)
        except ValueError as exc:
            errors.append(f"{item.where}: {exc}")
    if errors:
        fail(str(SubmissionInvalid(errors)))
    files = cli_uploads.hash_files(sorted(set(paths.values())), console)
    uploads = _api(lambda: cli_uploads.upload_missing(client, files, console))
    return cli_uploads.as_jsonl(items, paths, {f.path: f.sha256 for f in files}, uploads)


def _watch(client: ApiClient, batch_id: str, outage: Outage) -> dict:
    """Live progress until the batch ends; returns its last state."""
    batch = _through(outage, lambda: client.batch(batch_id))
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[counts]}")]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("finished", total=batch["request_counts"]["total"], counts="")
        while True:
            counts = batch["request_counts"]
            finished = counts["completed"] + counts["failed"] + counts["cancelled"] + counts["expired"]
            summary = " ".join(f"{k}={v}" for k, v in counts.items() if k != "total" and v)
            bar.update(task, completed=finished, counts=f"{batch['status']} · {summary}")
            if batch["status"] in ENDED:
                return batch
            time.sleep(POLL_S)
            batch = _through(outage, lambda: client.batch(batch_id))


def _print_batch(batch: dict) -> None:
    table = Table("field", "value", show_header=False)
    for key in ("id", "name", "status", "pipeline", "created_at", "expires_at", "completed_at", "ended_at"):
        table.add_row(key, str(batch.get(key)))
    table.add_row("counts", " ".join(f"{k}={v}" for k, v in batch["request_counts"].items()))
    table.add_row("files", f"{batch['output_file']}  {batch['error_file']}")
    console.print(table)


def _print_score(report: dict) -> None:
    overall = report["overall"]
    table = Table("group", "value", "correct", "scored", "total", "official", "strict")
    table.add_row("overall", "", *_figures(overall))
    for group, values in report["by_group"].items():
        for value, acc in values.items():
            table.add_row(group, value, *_figures(acc))
    console.print(table)
    console.print(f"rule {report['rule']}: official {_pct(overall['official'])} (items without a prediction "
                  f"dropped: {overall['missing']}), strict {_pct(overall['strict'])}")


def _figures(acc: dict) -> list[str]:
    return [str(acc["correct"]), str(acc["scored"]), str(acc["total"]), _pct(acc["official"]), _pct(acc["strict"])]


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
