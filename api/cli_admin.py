"""Operator commands that work on the database directly: API keys, and serving the API."""

from pathlib import Path

import typer

from api.cli_common import app, console, fail
from core.settings import get_settings

keys = typer.Typer(help="API keys (stored hashed; a key is shown once, when made)", no_args_is_help=True)
app.add_typer(keys, name="keys")


@keys.command("create")
def create_key(
    tenant: str = typer.Option(..., help="tenant name; created on first use"),
    name: str = typer.Option("default", help="a label for this key"),
    audio_root: Path | None = typer.Option(None, help="server folder this tenant may reference audio in"),
    rate_limit: int | None = typer.Option(None, min=1, help="requests per minute per key [default 600]"),
    max_queued: int | None = typer.Option(None, min=1, help="unfinished items at once [default 100000]"),
) -> None:
    """Make an API key for a tenant and print it (only now: only its hash is stored)."""
    from api.keys import create_key as make

    _need_database()
    if audio_root is not None and not audio_root.is_dir():
        fail(f"--audio-root {audio_root} is not a folder")
    key = make(tenant, name, audio_root, rate_limit, max_queued)
    console.print(key, markup=False, highlight=False, soft_wrap=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes"),
    migrate: bool = typer.Option(True, help="bring the schema to head first"),
) -> None:
    """Serve the HTTP API (AGR_DATABASE_URL and AGR_BROKER_URL must name the shared services)."""
    import uvicorn

    url = _need_database()
    if not get_settings().broker_url:
        fail("AGR_BROKER_URL is not set")
    if migrate:
        from core.migrate import upgrade_to_head

        upgrade_to_head(url)
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers)


def _need_database() -> str:
    url = get_settings().database_url
    if not url:
        fail("AGR_DATABASE_URL is not set")
    return url
