"""``groundwork prompts list|show|history|create|render|label|rollback|diff``: the prompt registry."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from groundwork.errors import GroundworkError, InputError
from groundwork.prompts.store import PromptVersion
from groundwork.prompts.template import PromptTemplate

if TYPE_CHECKING:
    from groundwork.container import Container

prompts_app = typer.Typer(help="Versioned prompts: list, show, create, render, label, rollback, diff.")
out = Console(soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Config file.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")]
RefOpt = Annotated[str, typer.Option("--version", "-v", help="Version number, label, or `latest`.")]


def _open(config: Path | None, data_dir: Path | None, model: str | None = None) -> Container:
    from groundwork.cli.main import _container

    return _container(config, data_dir, model)


def _fail(exc: GroundworkError) -> typer.Exit:
    from groundwork.cli.main import _fail as fail

    return fail(exc)


def _print_version(v: PromptVersion, labels: dict[str, int]) -> None:
    at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(v.created_at))
    mine = sorted(label for label, n in labels.items() if n == v.version)
    out.print(
        f"[bold]{v.ref}[/]  {', '.join(mine)}  [dim]by {v.author} at {at} UTC, {v.content_hash[:12]}[/]"
    )
    if v.message:
        out.print(f"[dim]{v.message}[/]")
    t = v.template
    if t.kind == "text":
        out.print(t.text, markup=False, highlight=False)
    for role, content in t.messages:
        out.print(f"[bold cyan]{role}:[/]")
        out.print(content, markup=False, highlight=False)
    for name in t.variable_names:
        out.print(f"  [green]{{{{ {name} }}}}[/] {json.dumps(t.spec(name).to_dict())}", highlight=False)
    if t.model.to_dict():
        out.print(f"  model: {json.dumps(t.model.to_dict())}")


@prompts_app.command("list")
def list_prompts(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Every prompt with its latest version and labels."""
    try:
        registry = _open(config, data_dir).prompts
        table = Table("name", "latest", "labels", "variables")
        for name in registry.names():
            latest = registry.get(name)
            labels = registry.labels(name)
            shown = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "latest")
            table.add_row(name, str(latest.version), shown, ", ".join(latest.template.variable_names))
    except GroundworkError as exc:
        raise _fail(exc) from exc
    out.print(table)


@prompts_app.command("show")
def show(
    name: str,
    version: RefOpt = "latest",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """One version of a prompt: text, variables and their schema, model config."""
    try:
        registry = _open(config, data_dir).prompts
        v = registry.get(name, version)
        labels = registry.labels(name)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps({**v.to_dict(), "labels": labels}, indent=2, ensure_ascii=False))
    else:
        _print_version(v, labels)


@prompts_app.command("history")
def history(
    name: str,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Every version and every label move of a prompt."""
    try:
        versions, events = _open(config, data_dir).prompts.history(name)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if as_json:
        body = {"versions": [v.to_dict() for v in versions], "label_events": [e.to_dict() for e in events]}
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    table = Table("version", "author", "created (UTC)", "hash", "message")
    for v in versions:
        at = time.strftime("%Y-%m-%d %H:%M", time.gmtime(v.created_at))
        table.add_row(str(v.version), v.author, at, v.content_hash[:12], v.message)
    out.print(table)
    moves = Table("label", "from", "to", "by", "at (UTC)", "reason")
    for e in events:
        at = time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.at))
        moves.add_row(e.label, str(e.previous or "-"), str(e.version), e.actor, at, e.reason[:100])
    out.print(moves)


def _template_from(
    file: Path | None, text: str | None, system: str | None, user: str | None
) -> PromptTemplate:
    if file is not None:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read template file {file}: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError(f"{file} must hold a mapping (text or messages, variables, model)")
        return PromptTemplate.from_dict(data)
    if text is not None:
        return PromptTemplate(text=text)
    if user is not None:
        messages: list[Any] = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user}
        ]
        return PromptTemplate.from_dict({"messages": messages})
    raise InputError("give the template: --file TEMPLATE.yaml, --text TEXT, or --user TEXT [--system TEXT]")


@prompts_app.command("create")
def create(
    name: str,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="YAML/JSON: text|messages, variables, model.")
    ] = None,
    text: Annotated[str | None, typer.Option("--text", help="A text template.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="Chat template: system message.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Chat template: user message.")] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="What changed and why.")] = "",
    author: Annotated[str, typer.Option("--author", help="Who made it.")] = "local",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Store a new version (no new version when it equals the latest)."""
    try:
        registry = _open(config, data_dir).prompts
        before = registry.latest(name) if name in registry.names() else None
        v = registry.create(name, _template_from(file, text, system, user), author, message)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if before is not None and before.version == v.version:
        out.print(f"unchanged: {v.ref} already has this content")
    else:
        out.print(f"created {v.ref} ({v.content_hash[:12]})")


def _variables(pairs: list[str] | None, vars_file: Path | None) -> dict[str, object]:
    values: dict[str, object] = {}
    if vars_file is not None:
        try:
            loaded = yaml.safe_load(vars_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read variables file {vars_file}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise InputError(f"{vars_file} must hold a mapping of variable names to values")
        values.update(loaded)
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InputError(f"--var {pair!r}: write NAME=VALUE")
        values[key.strip()] = value
    return values


@prompts_app.command("render")
def render(
    name: str,
    version: RefOpt = "production",
    var: Annotated[list[str] | None, typer.Option("--var", help="NAME=VALUE (repeatable; strings).")] = None,
    vars_file: Annotated[Path | None, typer.Option("--vars-file", help="YAML/JSON mapping (typed).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the messages as JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Render a version strictly: a missing, unexpected or invalid variable is an error naming it."""
    try:
        v, messages = _open(config, data_dir).prompts.render(name, version, _variables(var, vars_file))
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if as_json:
        body = {"prompt": v.ref, "messages": [{"role": m.role, "content": m.content} for m in messages]}
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    out.print(f"[dim]{v.ref}[/]")
    for m in messages:
        out.print(f"[bold cyan]{m.role}:[/]")
        out.print(m.content, markup=False, highlight=False)


@prompts_app.command("label")
def label(
    name: str,
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="production, staging or any label.")],
    version: Annotated[str, typer.Option("--version", "-v", help="The version to label.")],
    gate: Annotated[str | None, typer.Option("--gate", help="Promote only if this suite holds.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="HTML report of the gate.")] = None,
    author: Annotated[str, typer.Option("--author", help="Who moves the label.")] = "local",
    model: Annotated[str | None, typer.Option("--model", help="Model group, or `fake`.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Point a label at a version; with --gate, only when the suite passes and it is not worse."""
    try:
        c = _open(config, data_dir, model)
        if gate is None:
            event = c.prompts.set_label(name, label_name, version, author, "manual")
            out.print(f"{name}: {label_name} -> {event.version} (was {event.previous or 'unset'})")
            return
        decision = _gate(c, name, int(c.prompts.get(name, version).version), label_name, gate, author, report)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    for reason in decision:
        out.print(f"  {reason}")


def _gate(
    c: Container, name: str, version: int, label_name: str, suite_ref: str, author: str, report: Path | None
) -> list[str]:
    from groundwork.cli.evals import (
        bar_callback,
        ingest_for,
        print_comparison,
        print_run,
        progress_bar,
        warm_up_models,
    )
    from groundwork.evals.gate import GateOptions, promote
    from groundwork.evals.report import report_html
    from groundwork.evals.suite import load_suite

    suite = load_suite(suite_ref)
    ingest_for(c, suite)
    p = c.settings.prompts
    options = GateOptions(p.eval_concurrency, p.bootstrap_resamples, p.confidence, p.gate_margin)

    async def run() -> Any:
        try:
            await warm_up_models(c)
            with progress_bar() as bar:
                return await promote(
                    suite,
                    c.eval_deps(),
                    c.evaluator(),
                    name,
                    version,
                    label_name,
                    options,
                    author,
                    lambda phase: bar_callback(bar, phase, len(suite.cases)),
                )
        finally:
            await c.aclose_clients()

    decision = asyncio.run(run())
    print_run(decision.candidate)
    if decision.comparison is not None:
        print_comparison(decision.comparison)
    if report is not None and decision.baseline is not None:
        report.write_text(report_html(decision.baseline, decision.comparison, decision.candidate), "utf-8")
    elif report is not None:
        report.write_text(report_html(decision.candidate), "utf-8")
    if decision.allowed:
        out.print(f"[green]promoted[/] {name}@{version} to {label_name}")
        return list(decision.reasons)
    out.print(f"[red]refused[/]: {label_name} stays where it was")
    for reason in decision.reasons:
        out.print(f"  {reason}")
    raise typer.Exit(1)


@prompts_app.command("rollback")
def rollback(
    name: str,
    label_name: Annotated[str, typer.Argument(metavar="LABEL")],
    to: Annotated[int | None, typer.Option("--to", help="Version (default: where it was before).")] = None,
    author: Annotated[str, typer.Option("--author")] = "local",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Move a label back to its previous version (or to --to)."""
    try:
        event = _open(config, data_dir).prompts.rollback(name, label_name, to, author)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    out.print(f"{name}: {label_name} -> {event.version} (was {event.previous})")


@prompts_app.command("diff")
def diff(
    name: str,
    a: Annotated[str, typer.Argument(help="Version or label.")],
    b: Annotated[str, typer.Argument(help="Version or label.")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """A unified diff of two versions (text, variables, model config)."""
    try:
        text = _open(config, data_dir).prompts.diff(name, a, b)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    typer.echo(text or "(no difference)")
