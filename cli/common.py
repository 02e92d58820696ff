"""The `agr` command's Typer app and console, shared by the modules that add commands."""

from typing import NoReturn

import typer
from rich.console import Console

HELP = """Answer questions about audio in bulk, and show why each answer was given.

    agr run                               # the devset through an embedded stack, start to finish
    agr keys create --tenant lab          # an API key (shown once)
    agr serve                             # the HTTP API
    agr submit mmar.jsonl --audio-dir audio/ --wait
    agr status BATCH --watch | agr results BATCH -o out.jsonl | agr audit JOB | agr eval --batch BATCH
"""

app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)
console = Console()


def fail(message: str, code: int = 2) -> NoReturn:
    console.print(message, style="red", markup=False, highlight=False)
    raise typer.Exit(code)
