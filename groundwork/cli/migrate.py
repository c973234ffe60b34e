"""``groundwork migrate``: apply the storage backend's pending schema migrations.

Replicas apply migrations at start by default (``storage.postgres.migrate_on_start``); with that off,
an operator runs this once per release, before starting the new replicas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from groundwork.config import CONFIG_FILE_NAME, Settings
from groundwork.container import Container
from groundwork.errors import GroundworkError

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def migrate(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help=f"Config file (default ./{CONFIG_FILE_NAME}).")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Data directory (overrides the config).")
    ] = None,
) -> None:
    """Apply pending schema migrations to the configured store (storage.backend)."""
    try:
        settings = Settings.load(config, **({"data_dir": data_dir} if data_dir is not None else {}))
        c = Container(settings)
        try:
            lines = c.migrate()
        finally:
            c.close()
    except GroundworkError as exc:
        _err.print(f"[bold red]error:[/] {exc.message}  [dim]({exc.category}, id {exc.error_id})[/]")
        raise typer.Exit(code=2 if exc.category == "config" else 1) from exc
    for line in lines:
        _out.print(f"{settings.storage.backend}: {line}")
