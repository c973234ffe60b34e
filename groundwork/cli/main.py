"""The ``groundwork`` command line: thin over the Python API (:class:`groundwork.container.Container`)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from groundwork.cli.evals import eval_command
from groundwork.cli.keys import audit, audit_cli, keys_app
from groundwork.cli.migrate import migrate
from groundwork.cli.prompts import prompts_app
from groundwork.cli.traces import feedback_app, stats, traces_app
from groundwork.config import CONFIG_FILE_NAME, DEFAULT_CONFIG_YAML, Settings
from groundwork.container import Container
from groundwork.errors import GroundworkError
from groundwork.rag.answer import Answer
from groundwork.rag.ingest import IngestReport
from groundwork.rag.retrieval import Filters

app = typer.Typer(
    name="groundwork",
    help="Grounded answers with citations over your own documents, on embedded models by default.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
docs_app = typer.Typer(help="List and delete ingested documents.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")
app.add_typer(prompts_app, name="prompts")
app.command("eval")(eval_command)
app.command()(migrate)
app.add_typer(keys_app, name="keys")
app.command("audit")(audit)
app.add_typer(traces_app, name="traces")
app.add_typer(feedback_app, name="feedback")
app.command()(stats)

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help=f"Config file (default ./{CONFIG_FILE_NAME}).")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (overrides the config).")]
CollectionOpt = Annotated[str, typer.Option("--collection", help="Collection name.")]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Model group to answer with, or `fake` for the scripted fake.")
]


def _container(config: Path | None, data_dir: Path | None, model: str | None = None) -> Container:
    overrides: dict[str, Any] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = Settings.load(config, **overrides)
    if model == "fake":
        settings = Settings.load(
            config,
            **overrides,
            models={"default_group": "fake", "groups": {"fake": [{"provider": "fake", "model": "fake"}]}},
        )
    elif model is not None:
        settings = Settings.load(
            config, **overrides, models={**settings.models.model_dump(), "default_group": model}
        )
    return Container(settings)


def _fail(exc: GroundworkError) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc.message}  [dim]({exc.category}, id {exc.error_id})[/]")
    return typer.Exit(code=2 if exc.category in ("input", "config", "not_found") else 1)


@app.command()
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write groundwork.yaml.")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented groundwork.yaml and create the data directory."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONFIG_FILE_NAME
    if target.exists() and not force:
        err.print(f"[red]error:[/] {target} exists; pass --force to overwrite it")
        raise typer.Exit(2)
    target.write_text(DEFAULT_CONFIG_YAML, encoding="utf-8")
    (directory / ".groundwork").mkdir(exist_ok=True)
    out.print(f"wrote {target} and {directory / '.groundwork'}/")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _run_ingest(
    c: Container, paths: list[Path], collection: str, groups: list[str], tags: list[str] | None = None
) -> IngestReport:
    with Progress(
        TextColumn("[bold]ingesting[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("", total=None)

        def progress(source: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=Path(source).name)

        return c.ingestor.ingest_paths(paths, collection, groups, progress, tags or [])


def _print_report(report: IngestReport) -> None:
    out.print(
        f"[bold]{len(report.added)}[/] added, [bold]{len(report.updated)}[/] updated, "
        f"[bold]{len(report.unchanged)}[/] unchanged, [bold]{len(report.deleted)}[/] deleted, "
        f"[bold]{len(report.failed)}[/] failed; {report.chunks_written} chunks written, "
        f"{report.chunks_embedded} embedded in {report.seconds:.1f}s"
    )
    for source, reason in report.failed:
        out.print(f"  [red]failed[/] {source}: {reason}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    collection: CollectionOpt = "default",
    groups: Annotated[str, typer.Option("--groups", help="Comma-separated groups allowed to read.")] = "",
    tags: Annotated[str, typer.Option("--tags", help="Comma-separated tags to filter on later.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Ingest files and folders (.md .txt .html .pdf .docx): incremental, one transaction per document."""
    try:
        c = _container(config, data_dir)
        report = _run_ingest(c, paths, collection, _csv(groups), _csv(tags))
        audit_cli(c, "documents.ingest", collection, paths=[str(p) for p in paths], groups=_csv(groups))
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report)
    if report.failed and not (report.added or report.updated or report.unchanged):
        raise typer.Exit(1)


def _print_answer(answer: Answer, streamed: bool) -> None:
    if streamed:
        out.print()
    label = {
        "generated": "[green]Answer[/] (model answer, every sentence checked against its source)",
        "extractive": "[yellow]Answer[/] (quoted from the documents: the model's draft was not verified)",
        "no_answer": "[red]Answer[/]",
    }[answer.mode]
    out.print(label)
    out.print(answer.text, highlight=False)
    if answer.citations:
        out.print("\n[bold]Sources[/]")
    for c in answer.citations:
        heading = " > ".join(c.heading_path[1:] if c.heading_path[:1] == (c.title,) else c.heading_path)
        out.print(
            f"  [{c.number}] {c.title} — {heading or '(top)'}\n      {c.source}  chars {c.start}–{c.end}",
            highlight=False,
        )
    if answer.mode == "no_answer":
        out.print(f"[dim](best match similarity {answer.best_vector_score:.2f} is below the threshold)[/]")


def _ask(
    c: Container, question: str, collection: str, stream: bool, filters: Filters | None = None
) -> Answer:
    def on_token(piece: str) -> None:
        out.print(piece, end="", style="dim", highlight=False, markup=False)
        out.file.flush()

    if stream:
        out.print("[dim]draft:[/] ", end="")

    async def run() -> Answer:
        try:
            return await c.answerer.ask(
                question, collection, on_token=on_token if stream else None, filters=filters
            )
        finally:
            await c.aclose_clients()  # this event loop ends here: close its HTTP connections

    return asyncio.run(run())


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    collection: CollectionOpt = "default",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print answer, citations and timings as JSON.")
    ] = False,
    stream: Annotated[
        bool, typer.Option("--stream/--no-stream", help="Show the model's draft as it is written.")
    ] = True,
    path_prefix: Annotated[
        str | None, typer.Option("--path-prefix", help="Only documents whose path starts with this.")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="Only documents with this tag (repeatable).")
    ] = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Answer a question from a collection, with numbered citations."""
    if not question.strip():
        err.print("[red]error:[/] the question is empty")
        raise typer.Exit(2)
    try:
        c = _container(config, data_dir, model)
        if not c.documents.list_documents(collection):
            err.print(
                f"[red]error:[/] collection {collection!r} in {c.data_dir} has no documents; "
                "run `groundwork ingest PATH` first"
            )
            raise typer.Exit(2)
        filters = Filters(path_prefix=path_prefix, tags=tuple(tag) if tag else None)
        answer = _ask(c, question, collection, stream and not as_json, filters)
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(answer.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_answer(answer, stream)


@app.command()
def demo(
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where the demo store lives.")] = None,
    model: ModelOpt = None,
    config: ConfigOpt = None,
) -> None:
    """The main job on embedded defaults: ingest the sample handbook, answer three questions, cite."""
    from groundwork.samples import handbook_dir, questions_file

    try:
        base = _container(config, None, model).settings
        demo_dir = data_dir or base.data_dir / "demo"
        c = Container(base.model_copy(update={"data_dir": demo_dir, "model_cache_dir": base.models_dir}))
        out.print(f"[bold]Groundwork demo[/]: sample handbook -> {demo_dir}")
        _print_report(_run_ingest(c, [handbook_dir()], "default", []))
        questions = yaml.safe_load(questions_file().read_text(encoding="utf-8"))["answerable"]
        picked: dict[str, dict[str, str]] = {}
        for q in questions:  # one Markdown, one PDF and one DOCX document; the first of each in the file
            picked.setdefault(Path(q["document"]).suffix, q)
        for q in questions:  # ... unless the question list marks one as the demo's
            if q.get("demo"):
                picked[Path(q["document"]).suffix] = q
        right = 0
        for suffix in (".md", ".pdf", ".docx"):
            q = picked[suffix]
            out.rule(f"[bold]{q['question']}")
            answer = _ask(c, q["question"], "default", stream=True)
            _print_answer(answer, streamed=True)
            ok = any(Path(ci.source).name == q["document"] for ci in answer.citations)
            right += ok
            out.print(("[green]✓[/]" if ok else "[red]✗[/]") + f" expected source: {q['document']}")
        out.rule()
        out.print(f"{right}/3 answers cite the expected document.")
        c.close()
    except GroundworkError as exc:
        raise _fail(exc) from exc
    if right < 3:
        raise typer.Exit(1)


@docs_app.command("list")
def docs_list(
    collection: Annotated[str | None, typer.Option("--collection", help="Only this collection.")] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List ingested documents."""
    try:
        c = _container(config, data_dir)
        docs = c.documents.list_documents(collection)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    table = Table("id", "collection", "title", "chunks", "source")
    for d in docs:
        table.add_row(d.id, d.collection, d.title, str(d.chunk_count), d.source)
    out.print(table)


@docs_app.command("delete")
def docs_delete(
    document_id: Annotated[str, typer.Argument(help="Document id (see `groundwork docs list`).")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Delete one document and its chunks from every index."""
    try:
        c = _container(config, data_dir)
        if not c.ingestor.delete(document_id):
            err.print(f"[red]error:[/] no document with id {document_id!r}")
            raise typer.Exit(2)
        audit_cli(c, "documents.delete", document_id)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    out.print(f"deleted {document_id}")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    access_log: Annotated[bool, typer.Option("--access-log", help="Log every request.")] = False,
    model: ModelOpt = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Run the HTTP gateway: OpenAI-compatible /v1/chat/completions, /v1/embeddings, /v1/models."""
    import uvicorn

    from groundwork.api import create_app
    from groundwork.api.server import freeze_startup_heap, raise_gc_threshold, server_config

    try:
        c = _container(config, data_dir, model)
    except GroundworkError as exc:
        raise _fail(exc) from exc
    try:
        if c.observability is not None:
            c.observability.install_logging()  # JSON logs with request, trace and error ids
        uv_config = server_config(create_app(c), host, port, access_log=access_log)
        freeze_startup_heap()  # what start-up built lives as long as the process: out of the GC's walks
        raise_gc_threshold()  # fewer young collections, each walking the requests in flight
        uvicorn.Server(uv_config).run()
    finally:
        c.close()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
