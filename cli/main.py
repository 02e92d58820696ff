"""`agr`: the command line. This module holds the self-contained commands, which start
what they need themselves:

    agr run                          # ../shared/devset on embedded services
    agr run bench.jsonl --audio-dir audio/ --max-iters 2
    agr resume <batch-id>            # after Ctrl-C or a crash: picks up where it stopped
    agr up                           # the service in the foreground, for the openai SDK and harnesses

The HTTP API's commands (submit, status, results, audit) are in cli/remote.py, eval in cli/evaluate.py,
the operator's (keys, serve) in cli/admin.py.
"""

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from uuid import UUID

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from api.batch_view import JobResult, UnknownBatch, accuracy, batch_progress, batch_results
from api.intake.batch_input import SubmissionInvalid, read_batch_file
from api.keys import caller_for, create_key
from cli import admin, evaluate, remote  # noqa: F401  (importing them adds their commands to `app`)
from cli.common import app, console
from cli.db_outage import Outage
from cli.stop_signals import exit_status, stop_on_sigint_and_sigterm
from core.migrate import upgrade_to_head
from core.settings import get_settings
from local_stack.stack import LocalStack
from workers.method.mechanisms import MECHANISMS, resolved
from workers.method.pipelines import PIPELINES, Pipeline

DEFAULT_BATCH = Path(__file__).resolve().parents[2] / "shared" / "devset" / "meta.jsonl"
POLL_S = 0.5



@app.command()
def run(
    file: Path = typer.Argument(DEFAULT_BATCH, help="MMAR-format JSONL (id, audio_path, question, choices[, answer])"),
    audio_dir: Path | None = typer.Option(None, help="folder the audio paths are relative to [default: the file's folder]"),
    max_iters: int | None = typer.Option(None, min=0, max=10, help="refinement rounds per question [default: AGR_MAX_ITERS]"),
    limit: int | None = typer.Option(None, min=1, help="only the first N items"),
    name: str | None = typer.Option(None, help="batch name [default: the file name]"),
    workers: bool = typer.Option(True, help="start perception/reasoning workers and the sweeper here (--no-workers when they run elsewhere)"),
    pipeline: str = typer.Option("agr", help="agr (full method), cascade (no loop), direct (one ALM call answers) or crosscheck (beyond AGR: cross-checked, audio-grounded answers)"),
    without: list[str] = typer.Option([], help="crosscheck: switch a mechanism off (repeatable): " + ", ".join(MECHANISMS)),
) -> None:
    """Submit a benchmark file as one batch, show progress, print answers and accuracy."""
    _start_command()
    items = _read_items(file, audio_dir)[:limit]
    settings = get_settings()
    if pipeline not in PIPELINES:
        raise typer.BadParameter(f"use one of {', '.join(PIPELINES)}", param_hint="--pipeline")
    if unavailable := Pipeline(pipeline).why_unavailable():
        raise typer.BadParameter(unavailable, param_hint="--pipeline")
    options = {"max_iters": settings.max_iters if max_iters is None else max_iters, "pipeline": pipeline}
    try:
        if switches := resolved(pipeline, {m: False for m in without}):
            options["mechanisms"] = switches
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--without") from None
    with _stack(workers) as stack:
        from api.intake.submission import submit  # after the stack exported the broker URL

        batch_id = submit(name or file.name, items, options, source=str(file))
        console.print(f"batch [bold]{batch_id}[/] queued: {len(items)} item(s), pipeline {pipeline}, "
                      f"max_iters={options['max_iters']}")
        _watch_and_report(batch_id, stack)


@app.command()
def resume(batch_id: UUID = typer.Argument(..., help="the id `agr run` printed")) -> None:
    """Finish a batch that was interrupted: re-send its unfinished steps and watch it."""
    _start_command()
    with _stack(True) as stack:
        # Importing it builds the Celery app, which keeps the broker URL it finds: after the stack exported it.
        from workers.runtime.sweeper import resend_unfinished

        outage = Outage(console)
        try:
            outage.read(lambda: batch_progress(batch_id), stack.revive_dead_workers)
        except UnknownBatch as exc:
            console.print(str(exc), style="red", markup=False)
            raise typer.Exit(2) from None
        resent = outage.read(lambda: resend_unfinished(batch_id), stack.revive_dead_workers)
        console.print(f"batch [bold]{batch_id}[/]: re-sent {resent} unfinished step(s)")
        _watch_and_report(batch_id, stack)


@app.command()
def up(
    host: str = typer.Option("127.0.0.1", help="address the API listens on"),
    port: int = typer.Option(8000, min=1, max=65535),
    tenant: str = typer.Option("local", help="the tenant whose key is printed"),
    audio_root: Path | None = typer.Option(None, help="server folder the tenant may name audio paths in"),
) -> None:
    """Run the service in the foreground: the HTTP API, its workers and the sweeper, on the
    embedded defaults (or the configured services). Prints the URL and a key; Ctrl-C or
    SIGTERM stops all."""
    _start_command()
    if audio_root is not None and not audio_root.is_dir():
        raise typer.BadParameter(f"{audio_root} is not a folder", param_hint="--audio-root")
    try:
        with LocalStack(get_settings()) as stack:
            url = stack.serve_api(host, port)
            key = _local_key(tenant, audio_root)
            console.print(f"serving on {url} (console: {url}/console/, logs: {stack.log_dir})", soft_wrap=True)
            console.print(f"export OPENAI_BASE_URL={url}/v1 OPENAI_API_KEY={key}", soft_wrap=True,
                          markup=False, highlight=False)
            console.print("Ctrl-C stops everything", soft_wrap=True)
            while True:
                stack.revive_dead_workers()
                time.sleep(1.0)
    except KeyboardInterrupt:
        console.print("stopped; unfinished jobs continue on the next `agr up` or `agr resume`")
    except RuntimeError as exc:
        console.print(str(exc), style="red", markup=False)
        raise typer.Exit(1) from None


def _local_key(tenant: str, audio_root: Path | None) -> str:
    """The key `agr up` printed last time for this tenant, while it is valid (so a harness's
    environment stays right across restarts), else a new one. Kept in the data folder,
    readable by its owner only: only its hash is in the database."""

    saved = Path(get_settings().data_dir) / f"local-key-{tenant}"
    if saved.is_file() and (caller := caller_for(key := saved.read_text().strip())) is not None:
        if audio_root is None or caller.audio_root == audio_root.resolve():
            return key
    key = create_key(tenant, "agr up", audio_root.resolve() if audio_root else None, check_audio_root=audio_root
                     is not None)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.touch(mode=0o600)
    saved.write_text(key + "\n")
    return key


@app.command()
def migrate() -> None:
    """Bring the configured database (AGR_DATABASE_URL) to the newest schema."""

    url = get_settings().database_url
    if not url:
        raise typer.BadParameter("AGR_DATABASE_URL is not set")
    upgrade_to_head(url)
    console.print("database schema is at head")


def _start_command() -> None:
    """A self-contained command: it stops on SIGTERM as on Ctrl-C (cli/stop_signals.py)."""
    stop_on_sigint_and_sigterm()
    _configure_logging()


def _configure_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def _read_items(file: Path, audio_dir: Path | None):
    if not file.is_file():
        raise typer.BadParameter(f"{file} is not a file", param_hint="FILE")
    try:
        return read_batch_file(file, audio_dir)
    except SubmissionInvalid as exc:  # nothing was queued: say every problem at once
        console.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None


def _stack(start_workers: bool):
    if start_workers:
        return LocalStack(get_settings())
    settings = get_settings()
    if not (settings.database_url and settings.broker_url):
        # Workers elsewhere can only be reached through services they share with us.
        raise typer.BadParameter("--no-workers needs AGR_DATABASE_URL and AGR_BROKER_URL set")
    return nullcontext(None)


def _watch_and_report(batch_id: UUID, stack: LocalStack | None) -> None:
    # A database outage is waited out, however long, with the workers kept running: they
    # finish the batch once it is back (see cli/db_outage.py); Ctrl-C ends the wait.
    outage = Outage(console)
    try:
        _watch(batch_id, stack, outage)
        results = outage.read(lambda: batch_results(batch_id), lambda: _keep_workers_alive(stack))
    except KeyboardInterrupt as interrupt:
        console.print(f"\n[yellow]interrupted; nothing is lost. Continue with:[/] agr resume {batch_id}",
                      soft_wrap=True)  # a command to copy must not be broken across lines
        raise typer.Exit(exit_status(interrupt)) from None
    _report(results)


def _keep_workers_alive(stack: LocalStack | None) -> None:
    if stack is not None:
        stack.revive_dead_workers()


def _watch(batch_id: UUID, stack: LocalStack | None, outage: Outage) -> None:
    progress = outage.read(lambda: batch_progress(batch_id), lambda: _keep_workers_alive(stack))
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[counts]}")]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("answered", total=progress.total, counts="")

        def while_away() -> None:
            _keep_workers_alive(stack)
            bar.update(task, counts=f"database unreachable for {outage.down_for:.0f} s, retrying")

        last_line = 0.0
        while not progress.batch_done:
            _keep_workers_alive(stack)
            time.sleep(POLL_S)
            progress = outage.read(lambda: batch_progress(batch_id), while_away)
            bar.update(task, completed=progress.finished, counts=progress.activity)
            if not console.is_terminal and time.monotonic() - last_line > 10:
                console.print(f"{progress.finished}/{progress.total} finished ({progress.activity})")  # CI logs
                last_line = time.monotonic()


def _report(results: list[JobResult]) -> None:
    # The id never wraps, so a row can be found by its id in a log.
    table = Table(Column("id", no_wrap=True), "status", "answer", "expected", "ok", "iterations", "note")
    for r in results:
        cells = (r.custom_id, r.status, r.answer or "-", r.reference or "-",
                 "yes" if r.correct else "no", str(r.iterations), r.error or (r.normalisation or ""))
        table.add_row(*(Text(str(c)) for c in cells))  # Text: brackets in answers are not markup
    console.print(table)
    score = accuracy(results)
    summary = f"{sum(r.correct for r in results)}/{len(results)} correct"
    if score is not None:
        summary += f", accuracy {score:.3f}"
    console.print(summary)


if __name__ == "__main__":
    app()
