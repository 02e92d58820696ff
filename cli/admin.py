"""Operator commands that work on the database directly: API keys, and serving the API."""

import json
import os
from pathlib import Path

import typer

from api import keys as api_keys
from api.keys import AudioRootRefused
from cli.common import app, console, fail
from core.migrate import upgrade_to_head
from core.settings import get_settings
from local_stack import embedded

keys = typer.Typer(help="API keys (stored hashed; a key is shown once, when made)", no_args_is_help=True)
app.add_typer(keys, name="keys")


@keys.command("create")
def create_key(
    tenant: str = typer.Option(..., help="tenant name; created on first use"),
    name: str = typer.Option("default", help="a label for this key"),
    audio_root: Path | None = typer.Option(None, help="server folder this tenant may reference audio in: its "
                                                       "own (no system folder, no other tenant's)"),
    move_audio_root: bool = typer.Option(False, "--move-audio-root",
                                         help="give an existing tenant a different --audio-root"),
    rate_limit: int | None = typer.Option(None, min=1, help="requests per minute for the tenant, all its keys "
                                                            "together [default 600]"),
    max_queued: int | None = typer.Option(None, min=1, help="unfinished items at once [default 100000]"),
) -> None:
    """Make an API key for a tenant and print it (only now: only its hash is stored)."""
    _need_database()
    if audio_root is not None and not audio_root.is_dir():
        fail(f"--audio-root {audio_root} is not a folder")
    try:
        key = api_keys.create_key(tenant, name, audio_root, rate_limit, max_queued, check_audio_root=True,
                                  move_audio_root=move_audio_root)
    except AudioRootRefused as exc:
        fail(f"refused: {exc}")
    console.print(key, markup=False, highlight=False, soft_wrap=True)


@keys.command("list")
def list_keys(
    tenant: str | None = typer.Option(None, help="only this tenant's keys"),
    revoked: bool = typer.Option(True, help="include revoked keys (--no-revoked: live ones only)"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
) -> None:
    """Every key: tenant, name, prefix, when made, when revoked (never the key or its hash)."""
    from rich.table import Table

    _need_database()
    rows = api_keys.list_keys(tenant, include_revoked=revoked)
    if as_json:
        for row in rows:
            console.print(json.dumps(row.as_json()), markup=False, highlight=False, soft_wrap=True)
        return
    table = Table("tenant", "name", "prefix", "id", "created", "revoked")
    for row in rows:
        table.add_row(row.tenant, row.name, row.prefix, str(row.id), f"{row.created_at:%Y-%m-%d %H:%M:%S}",
                      f"{row.revoked_at:%Y-%m-%d %H:%M:%S}" if row.revoked_at else "-")
    console.print(table)


@keys.command("revoke")
def revoke_key(prefix_or_id: str = typer.Argument(..., help="the key's prefix (agr_...) or id, from `agr keys list`")) -> None:
    """Revoke a key: requests carrying it are refused (401) from now on."""
    _need_database()
    try:
        key, was_live = api_keys.revoke_key(prefix_or_id)
    except LookupError as exc:
        fail(str(exc))
    state = "revoked" if was_live else "was already revoked"
    console.print(f"{key.prefix} ({key.tenant}/{key.name}, id {key.id}) {state}", markup=False, highlight=False)


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

        upgrade_to_head(url)
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers)


def _need_database() -> str:
    """The configured database; without one, the embedded Postgres of AGR_DATA_DIR, the one
    `agr up` and `agr run` use there (shared with a running `agr up`, or started for this
    command and stopped after it), so a second tenant's key can be made beside `agr up`."""
    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    data_dir = Path(settings.data_dir).resolve()
    if not embedded.has_postgres(data_dir):
        fail(f"AGR_DATABASE_URL is not set, and AGR_DATA_DIR ({data_dir}) holds no embedded database: "
             "run this where `agr up` runs (the same AGR_DATA_DIR), or set AGR_DATABASE_URL")
    url = embedded.start_postgres(data_dir)
    os.environ["AGR_DATABASE_URL"] = url  # this process's sessions use it from here on
    get_settings.cache_clear()
    return url
