"""``groundwork traces list|show`` and ``groundwork stats``: recent traces from the local trace store.

They read ``<data_dir>/traces.sqlite3`` (written by ``groundwork serve`` with ``observability.trace_store``
on), or with ``storage.backend: postgres`` the trace store shared by all replicas in PostgreSQL, so they
work without any tracing service and while the server runs.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from groundwork.config import Settings
from groundwork.container import TRACE_STORES
from groundwork.errors import GroundworkError, InputError
from groundwork.observability.store import SpanRecord, TraceStorage, TraceStore

traces_app = typer.Typer(help="Show recent traces from the local trace store.", no_args_is_help=True)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config file (default ./groundwork.yaml).")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (overrides the config).")]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SHOWN = (
    "http.response.status_code",
    "groundwork.principal",
    "cache.result",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "groundwork.cost",
    "deployment",
    "retrieved",
    "error.id",
    "error.category",
)


def _store(config: Path | None, data_dir: Path | None) -> TraceStorage:
    overrides: dict[str, Any] = {"data_dir": data_dir} if data_dir is not None else {}
    settings = Settings.load(config, **overrides)
    if settings.storage.backend in TRACE_STORES:  # shared by replicas (PostgreSQL)
        return TRACE_STORES[settings.storage.backend](settings)
    path = settings.data_dir / "traces.sqlite3"
    if not path.is_file():
        raise InputError(
            f"no trace store at {path}: run `groundwork serve` with observability.trace_store: true first"
        )
    return TraceStore(path, settings.observability.trace_retention)


def _fail(exc: GroundworkError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc.message}  [dim]({exc.category}, id {exc.error_id})[/]")
    return typer.Exit(code=2 if exc.category in ("input", "config", "not_found") else 1)


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_since(value: str | None, now: float | None = None) -> int:
    """``30m``, ``2h``, ``1d`` -> the epoch nanoseconds that long ago (0 for ``None``: everything)."""
    if value is None:
        return 0
    match = _DURATION.match(value.strip())
    if match is None:
        raise InputError(f"--since {value!r}: use a number and a unit s, m, h or d (e.g. 30m, 2h, 1d)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    return int(((now if now is not None else time.time()) - seconds) * 1e9)


@traces_app.command("list")
def traces_list(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many traces.")] = 20,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """The most recent traces, newest first."""
    try:
        store = _store(config, data_dir)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    try:
        out.print(
            "trace id                          time (UTC)           ms       status  cache  tokens  request"
        )
        for root in store.recent(limit):
            a = root.attributes
            tokens = int(a.get("gen_ai.usage.input_tokens", 0)) + int(a.get("gen_ai.usage.output_tokens", 0))
            status = str(a.get("http.response.status_code", root.status))
            out.print(
                f"{root.trace_id}  {_when(root.start_ns)}  {root.duration_ms:7.1f}  {status:6}  "
                f"{a.get('cache.result', '-'):5}  {tokens or '-':>6}  {root.name}"
                + (f"  ({a['groundwork.principal']})" if "groundwork.principal" in a else ""),
                highlight=False,
            )
    finally:
        store.close()


def _label(s: SpanRecord) -> str:
    attrs = " ".join(f"{k}={s.attributes[k]}" for k in _SHOWN if k in s.attributes)
    mark = "[red]✗[/] " if s.status == "error" else ""
    return f"{mark}[bold]{s.name}[/] {s.duration_ms:.2f} ms [dim]{attrs}[/]"


@traces_app.command("show")
def traces_show(
    trace_id: Annotated[str, typer.Argument(help="The trace id (the x-trace-id header, or from `list`).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """One trace as a tree of spans with their durations and attributes, and its feedback."""
    try:
        store = _store(config, data_dir)
        spans = store.trace(trace_id)
        if not spans:
            raise InputError(f"no trace {trace_id!r} in the store (see `groundwork traces list`)")
    except GroundworkError as exc:
        raise _fail(exc) from exc
    try:
        nodes: dict[str, Tree] = {}
        roots: list[Tree] = []
        for s in spans:  # start order: a parent comes before its children
            parent = nodes.get(s.parent_id or "")
            node = parent.add(_label(s)) if parent is not None else Tree(_label(s))
            if parent is None:
                roots.append(node)
            nodes[s.span_id] = node
        out.print(f"trace {trace_id}  {_when(spans[0].start_ns)} UTC")
        for root in roots:
            out.print(root)
        for fb in store.feedback(trace_id):
            out.print(f"feedback: score {fb.score:g} by {fb.principal}: {fb.comment}")
    finally:
        store.close()


def stats(
    since: Annotated[str | None, typer.Option("--since", help="Only the last 30m, 2h, 1d, ...")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """A summary of recent requests: count, p50/p95 latency, tokens, cost, cache hit rate, errors."""
    try:
        since_ns = parse_since(since)
        store = _store(config, data_dir)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    try:
        summary = store.stats(since_ns)
    finally:
        store.close()
    table = Table("measure", "value", show_header=False)
    table.add_row("requests", str(summary.requests))
    table.add_row("latency p50 / p95", f"{summary.p50_ms:.1f} ms / {summary.p95_ms:.1f} ms")
    table.add_row("tokens in / out", f"{summary.prompt_tokens} / {summary.completion_tokens}")
    table.add_row("cost", f"{summary.cost:.6f}")
    rate = (
        f"{summary.cache_hit_rate:.1%} of {summary.cache_lookups} lookups" if summary.cache_lookups else "-"
    )
    table.add_row("cache hit rate", rate)
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(summary.errors.items())) or "none"
    table.add_row("errors by category", errors)
    out.print(table)


feedback_app = typer.Typer(
    help="Rated answers as data: an eval suite or fine-tuning JSONL.", no_args_is_help=True
)


@feedback_app.command("export")
def feedback_export(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="File to write (YAML suite or JSONL).")],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="suite (for `groundwork eval`) or jsonl (chat fine-tuning)")
    ] = "suite",
    good: Annotated[float, typer.Option("--good", help="Scores at or above this are good answers.")] = 0.5,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Answers that received feedback (``POST /v1/feedback``), from the local trace store."""
    from groundwork.evals.export import FeedbackRecord, to_chat_jsonl, to_suite_yaml

    try:
        if fmt not in ("suite", "jsonl"):
            raise InputError(f"--format {fmt!r}: use suite or jsonl")
        store = _store(config, data_dir)
        try:
            rated = store.rated_exchanges()
        finally:
            store.close()
        if not rated:
            raise InputError(
                "no rated answers yet: rate one with POST /v1/feedback {trace_id, score, comment}"
            )
        records = [
            FeedbackRecord(e.question, e.answer, e.citations, f.score, f.comment, e.trace_id)
            for e, f in rated
        ]
        if fmt == "suite":
            collections = Counter(e.collection or "default" for e, _ in rated)
            text = to_suite_yaml(records, collection=collections.most_common(1)[0][0], good_score=good)
        else:
            text = to_chat_jsonl(records, good_score=good)
        out_file.write_text(text, encoding="utf-8")
    except GroundworkError as exc:
        raise _fail(exc) from exc
    except OSError as exc:
        raise _fail(InputError(f"cannot write {out_file}: {exc.strerror}")) from exc
    good_n = sum(1 for _, f in rated if f.score >= good)
    out.print(f"wrote {len(records)} rated answers ({good_n} good) to {out_file} as {fmt}")
