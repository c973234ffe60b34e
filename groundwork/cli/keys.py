"""``groundwork keys create|list|revoke`` and ``groundwork audit``: API keys and the audit log.

The key is printed once, at creation; only its hash is stored. Every key change is written to the
audit log with the operating-system user as the actor.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from groundwork.config import CONFIG_FILE_NAME, Settings
from groundwork.container import Container
from groundwork.errors import GroundworkError
from groundwork.security.audit import AuditEvent
from groundwork.security.keys import parse_duration
from groundwork.security.service import cli_actor

keys_app = typer.Typer(
    help="Create, list and revoke API keys (printed once, stored hashed).", no_args_is_help=True
)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help=f"Config file (default ./{CONFIG_FILE_NAME}).")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (overrides the config).")]


def _container(config: Path | None, data_dir: Path | None) -> Container:
    overrides: dict[str, Any] = {} if data_dir is None else {"data_dir": data_dir}
    return Container(Settings.load(config, **overrides))


def _fail(exc: GroundworkError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc.message}  [dim]({exc.category}, id {exc.error_id})[/]")
    return typer.Exit(code=2 if exc.category in ("input", "config", "not_found") else 1)


def audit_cli(container: Container, action: str, target: str, **details: Any) -> None:
    """Record a command-line action (ingestion, deletion, key changes) in the audit log."""
    container.security.record(AuditEvent(action=action, actor=cli_actor(), target=target, details=details))


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")],
    role: Annotated[str, typer.Option("--role", help="admin | builder | user")] = "user",
    groups: Annotated[str, typer.Option("--groups", help="Comma-separated groups the key may read.")] = "",
    expires: Annotated[str | None, typer.Option("--expires", help="Lifetime, e.g. 30d, 12h.")] = None,
    rpm: Annotated[int | None, typer.Option("--rpm", help="Requests per minute (overrides config).")] = None,
    tpm: Annotated[int | None, typer.Option("--tpm", help="Tokens per minute per model group.")] = None,
    concurrent: Annotated[
        int | None, typer.Option("--concurrent", help="In-flight requests at most.")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a key and print it once (it cannot be shown again)."""
    try:
        c = _container(config, data_dir)
        expires_in = parse_duration(expires) if expires else None
        group_list = [g for g in groups.split(",") if g.strip()]
        token, key = c.security.keys.create(
            name, role, group_list, expires_in=expires_in, rpm=rpm, tpm=tpm, max_concurrent=concurrent
        )
        audit_cli(c, "key.create", f"gw_{key.prefix}", name=key.name, role=key.role, groups=list(key.groups))
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    scope = ", ".join(key.groups) or "none"
    err.print(
        f"created key gw_{key.prefix} for {key.name!r} ({key.role}, groups: {scope}, "
        f"expires: {_when(key.expires_at)}). Store it now: it is not shown again."
    )
    typer.echo(token)


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List keys by prefix (never the keys themselves)."""
    try:
        c = _container(config, data_dir)
        keys = c.security.keys.list()
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    now = time.time()
    if as_json:
        rows = [
            {"prefix": f"gw_{k.prefix}", "name": k.name, "role": k.role, "groups": list(k.groups),
             "status": k.status(now), "created_at": k.created_at, "expires_at": k.expires_at}
            for k in keys
        ]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("prefix", "name", "role", "groups", "status", "created", "expires")
    for k in keys:
        table.add_row(
            f"gw_{k.prefix}", k.name, k.role, ",".join(k.groups), k.status(now), _when(k.created_at),
            _when(k.expires_at),
        )  # fmt: skip
    out.print(table)


@keys_app.command("revoke")
def revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, e.g. gw_1a2b3c4d (see `keys list`).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    try:
        c = _container(config, data_dir)
        key = c.security.keys.revoke(prefix)
        audit_cli(c, "key.revoke", f"gw_{key.prefix}", name=key.name)
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    out.print(f"revoked gw_{key.prefix} ({key.name})")


def audit(
    since: Annotated[str | None, typer.Option("--since", help="Only the last period, e.g. 1h, 7d.")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Action prefix, e.g. key. or request.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many records.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Show the audit log, newest first: key changes, ingestion, deletions, denied requests."""
    try:
        c = _container(config, data_dir)
        start = time.time() - parse_duration(since) if since else None
        events = c.security.audit.query(since=start, actor=actor, action=action, limit=limit)
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if as_json:
        for e in events:
            typer.echo(json.dumps(e.to_dict()))
        return
    table = Table("time (UTC)", "action", "actor", "target", "outcome", "source")
    for e in events:
        table.add_row(e.to_dict()["time"], e.action, e.actor, e.target, e.outcome, e.source)
    out.print(table)
