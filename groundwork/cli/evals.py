"""``groundwork eval SUITE [--compare A B] [--report out.html] [--json out.json]``.

Exit status: 0 when every threshold holds, 1 when one fails (in either run of a comparison), 2 for a
usage error (unknown suite, prompt or model group).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from groundwork.errors import GroundworkError
from groundwork.evals.compare import Comparison, compare_runs
from groundwork.evals.report import report_html, report_json
from groundwork.evals.results import CaseResult, SuiteRun
from groundwork.evals.runner import run_suite
from groundwork.evals.suite import Suite, load_suite
from groundwork.evals.targets import build_target

if TYPE_CHECKING:
    from groundwork.container import Container

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def progress_bar() -> Progress:
    """The progress bar of evaluation runs (on stderr)."""
    return Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("[red]{task.fields[failed]} failing[/]"),
        console=err,
    )


def bar_callback(bar: Progress, description: str, total: int) -> Callable[[int, int, CaseResult], None]:
    """A runner progress callback that advances a new task of ``bar``."""
    task = bar.add_task(description, total=total, failed=0)
    failed = 0

    def update(done: int, total: int, result: CaseResult) -> None:
        nonlocal failed
        failed += not result.passed
        bar.update(task, completed=done, failed=failed)

    return update


def ingest_for(c: Container, suite: Suite) -> None:
    """Ingest the suite's ``target.ingest`` paths into its collection (incremental)."""
    if not suite.target.ingest:
        return
    from groundwork.cli.main import _print_report, _run_ingest

    report = _run_ingest(c, suite.ingest_paths(), suite.target.collection, [])
    _print_report(report)


def print_run(run: SuiteRun) -> None:
    """A terminal table of a run, then its aggregate numbers and threshold failures."""
    table = Table("case", "result", "score", "output", "failed checks", title=f"{run.suite}: {run.target}")
    for c in run.cases:
        text = (c.output.text if c.output else "").replace("\n", " ")
        failed = [f"{a.type}: {a.detail}" for a in c.assertions if not a.passed]
        if c.error:
            failed.append(f"error: {c.error}")
        status = "[green]pass[/]" if c.passed else "[red]fail[/]"
        table.add_row(c.case_id, status, f"{c.score:.2f}", text[:80], "\n".join(failed))
    out.print(table)
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in sorted(run.metric_means().items()))
    verdict = "[green]PASS[/]" if run.passed else "[red]FAIL[/]"
    out.print(
        f"{verdict} pass rate {run.pass_rate:.0%}, mean score {run.mean_score:.3f}, {run.broken} broken, "
        f"{run.seconds:.1f}s" + (f"; {metrics}" if metrics else "")
    )
    for failure in run.failures:
        out.print(f"  [red]threshold:[/] {failure}")


def print_comparison(c: Comparison) -> None:
    """Per-case differences and the verdict."""
    table = Table("case", "A", "B", "B - A", title=f"A = {c.a}   B = {c.b}")
    for d in c.cases:
        color = "green" if d.diff > 0 else "red" if d.diff < 0 else "dim"
        table.add_row(d.case_id, f"{d.score_a:.2f}", f"{d.score_b:.2f}", f"[{color}]{d.diff:+.2f}[/]")
    out.print(table)
    color = {"better": "green", "worse": "red", "no_difference": "yellow"}[c.verdict]
    out.print(f"[bold {color}]{c.summary()}[/]")


def write_reports(
    run: SuiteRun,
    report: Path | None,
    json_path: Path | None,
    comparison: Comparison | None = None,
    other: SuiteRun | None = None,
) -> None:
    """Write the HTML and JSON reports that were asked for."""
    if report is not None:
        report.write_text(report_html(run, comparison, other), encoding="utf-8")
        out.print(f"wrote {report}")
    if json_path is not None:
        json_path.write_text(report_json(run, comparison, other), encoding="utf-8")
        out.print(f"wrote {json_path}")


async def warm_up_models(c: Container) -> None:
    """Load in-process models before the first case, so no case pays (or times out on) the load."""
    c.router  # noqa: B018 - builds every deployment's model
    for model in list(c.shared_models.values()):
        warm_up = getattr(model, "warm_up", None)
        if callable(warm_up):
            await asyncio.to_thread(warm_up)


async def _evaluate(
    c: Container, suite: Suite, variants: tuple[str | None, ...], concurrency: int | None
) -> list[SuiteRun]:
    deps, evaluator = c.eval_deps(), c.evaluator()
    await warm_up_models(c)
    runs: list[SuiteRun] = []
    try:
        with progress_bar() as bar:
            for variant in variants:
                target = build_target(suite, deps, variant)
                callback = bar_callback(bar, target.name, len(suite.cases))
                limit = concurrency or c.settings.prompts.eval_concurrency
                runs.append(await run_suite(suite, target, evaluator, limit, callback))
    finally:
        await c.aclose_clients()
    return runs


def eval_command(
    suite: Annotated[str, typer.Argument(help="Suite file (YAML), or a shipped suite's name: handbook.")],
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option("--compare", help="Two variants: prompt versions/labels (or model groups) A B."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write a self-contained HTML report.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Cases at once.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model group, or `fake`.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config file.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Data directory.")] = None,
) -> None:
    """Run an evaluation suite (or compare two prompt versions or models on it); exit 1 if it fails."""
    from groundwork.cli.main import _container, _fail

    try:
        c = _container(config, data_dir, model)
        loaded = load_suite(suite)
        ingest_for(c, loaded)
        variants: tuple[str | None, ...] = compare if compare is not None else (None,)
        runs = asyncio.run(_evaluate(c, loaded, variants, concurrency))
        comparison = None
        if compare is not None:
            p = c.settings.prompts
            comparison = compare_runs(runs[0], runs[1], p.bootstrap_resamples, p.confidence)
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    for run in runs:
        print_run(run)
    if comparison is not None:
        print_comparison(comparison)
    write_reports(runs[0], report, json_path, comparison, runs[1] if comparison else None)
    if not all(r.passed for r in runs):
        raise typer.Exit(1)
