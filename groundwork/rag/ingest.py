"""Ingestion: files -> parse -> chunk -> embed (batched) -> store, one transaction per document.

Incremental: a file whose bytes and groups are unchanged since the last run is skipped without
embedding; a changed file replaces its previous version; a file that disappeared from an ingested
folder is deleted from the collection. One failing file is reported with its reason and the rest land.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

import numpy as np

from groundwork.config import ChunkingSettings
from groundwork.errors import GroundworkError, IngestionError, InputError
from groundwork.models.base import EmbeddingModel
from groundwork.rag.chunking import chunk_document, embedding_text
from groundwork.rag.loaders import LOADERS, Loader, load_bytes
from groundwork.stores.protocols import DocumentStore, VectorStore
from groundwork.types import Chunk, Document

Progress = Callable[[str, int, int], None]
"""Called as ``progress(source, done, total)`` after each file."""


@dataclass
class IngestReport:
    """What an ingestion run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "added": len(self.added),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "deleted": len(self.deleted),
            "failed": [{"source": s, "reason": r} for s, r in self.failed],
            "chunks_written": self.chunks_written,
            "chunks_embedded": self.chunks_embedded,
            "seconds": round(self.seconds, 3),
        }


PREFETCH = 4
"""Files parsed ahead of the main thread."""

MIN_EMBED_CALL = 64
"""Fewest chunks in an embedding call (but the last): the embedder starts after a handful of files."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    document: Document
    chunks: list[Chunk]
    texts: list[str]
    replaces: bool


@dataclass(frozen=True, slots=True)
class _Meta:
    groups: tuple[str, ...]
    tags: tuple[str, ...]
    modified_at: float


def document_id(collection: str, source: str) -> str:
    """Stable id of the document at ``source`` in ``collection``."""
    return hashlib.sha256(f"{collection}\0{source}".encode()).hexdigest()[:20]


def discover(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """Expand folders into files (sorted, hidden files skipped). Returns ``(files, folders)``."""
    files: list[Path] = []
    folders: list[Path] = []
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            folders.append(path)
            files.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{raw}: no such file or folder")
    return list(dict.fromkeys(files)), folders


def _parsed(path: Path, future: Future[_Prepared | None], report: IngestReport) -> _Prepared | None:
    """The parsed file, or ``None`` after noting it in ``report`` as unchanged or failed."""
    try:
        prepared = future.result()
    except GroundworkError as exc:
        report.failed.append((str(path), exc.message))
    except OSError as exc:
        report.failed.append((str(path), f"cannot read the file: {exc.strerror or exc}"))
    except Exception as exc:  # a loader bug: this file fails, the others go on
        report.failed.append((str(path), f"{type(exc).__name__}: {exc}"))
    else:
        if prepared is None:
            report.unchanged.append(str(path))
        return prepared
    return None


class _EmbedCalls:
    """Schedules an ingestion's embedding calls: one runs in the ``ingest-embed`` thread while the
    calling thread parses on, and the documents of the call before are written meanwhile.

    A call starts as soon as the embedder is free (and :data:`MIN_EMBED_CALL` chunks are waiting) with
    every chunk collected since the last one, at most ``embed_batch`` (then collecting waits for the
    running call). Parsing is much faster than embedding, so calls grow by themselves to about
    ``embed_batch`` chunks; the embedder sorts each call by token count before batching, and larger
    calls pad less (PostgreSQL manual, 100 pages: 1.12x the real tokens with calls doubling from 64,
    1.04x in one call). An embedded call's documents are written once the next call is running, so
    writing never keeps the embedder waiting; at most three calls' documents are held in memory.
    """

    def __init__(self, ingestor: Ingestor, report: IngestReport, embedding: ThreadPoolExecutor) -> None:
        self.ingestor = ingestor
        self.report = report
        self.embedding = embedding
        self.collecting: list[_Prepared] = []
        self.collected_chunks = 0
        self.running: tuple[list[_Prepared], Future[np.ndarray]] | None = None
        self.finished: tuple[list[_Prepared], Future[np.ndarray]] | None = None

    def add(self, prepared: _Prepared) -> None:
        """Collect a parsed document; start, wait for or write calls as the embedder allows."""
        self.collecting.append(prepared)
        self.collected_chunks += len(prepared.chunks)
        self._advance(last=False)

    def finish(self) -> None:
        """Embed and write everything collected (blocks until done)."""
        while self.running is not None or self.collecting or self.finished is not None:
            self._advance(last=True)

    def _advance(self, last: bool) -> None:
        running = self.running
        if running is not None and (
            last or running[1].done() or self.collected_chunks >= self.ingestor.embed_batch
        ):
            futures_wait([running[1]])  # at once unless collecting is full (or at the end)
            self.finished, self.running = running, None
        if self.running is None and self.collecting and (last or self.collected_chunks >= MIN_EMBED_CALL):
            batch = self.collecting
            self.running = (batch, self.embedding.submit(self.ingestor._embed_batch, batch))
            self.collecting, self.collected_chunks = [], 0
        if self.finished is not None and (self.running is not None or last):
            finished, self.finished = self.finished, None
            self.ingestor._write_embedded(*finished, self.report)


P = ParamSpec("P")
R = TypeVar("R")


def _serialised(method: Callable[Concatenate[Ingestor, P], R]) -> Callable[Concatenate[Ingestor, P], R]:
    """One writer at a time: two ingests of one source could otherwise interleave their index updates."""

    def locked(self: Ingestor, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._write_lock:
            return method(self, *args, **kwargs)

    locked.__name__, locked.__doc__ = method.__name__, method.__doc__
    return locked


class Ingestor:
    """Writes documents into a document store and keeps the vector index in step."""

    def __init__(
        self,
        documents: DocumentStore,
        vectors: VectorStore,
        embedder: EmbeddingModel,
        chunking: ChunkingSettings,
        loaders: dict[str, Loader] | None = None,
        embed_batch: int = 2048,
        groups_for: Callable[[str, tuple[str, ...]], tuple[str, ...]] | None = None,
        on_report: Callable[[IngestReport], None] | None = None,
    ) -> None:
        self.embed_batch = embed_batch
        self.on_report = on_report  # metrics: documents written and failed, chunks written
        # (source, explicit groups) -> stored groups: defaults and per-folder rules (security policy)
        self.groups_for = groups_for or (lambda _source, groups: groups)
        self._write_lock = threading.RLock()  # see _serialised
        self.documents = documents
        self.vectors = vectors
        self.embedder = embedder
        self.chunking = chunking
        self.loaders = dict(LOADERS if loaders is None else loaders)

    def _flush(self) -> None:
        """Persist the derived indexes: the vector index, and the document store's own (the embedded
        keyword index commits lazily; committing here releases its writer for other processes)."""
        commit = getattr(self.documents, "flush", None)
        if callable(commit):
            commit()
        self.vectors.flush(self.documents.generation)

    @_serialised
    def ingest_paths(
        self,
        paths: Sequence[Path | str],
        collection: str = "default",
        groups: Sequence[str] = (),
        progress: Progress | None = None,
        tags: Sequence[str] = (),
    ) -> IngestReport:
        """Ingest files and folders into ``collection``; see the module docstring for the rules.

        Three stages overlap: a worker thread reads, parses and chunks files a few ahead; a second one
        embeds the chunks of several documents in one call (up to ``embed_batch``, see
        :class:`_EmbedCalls`); the calling thread collects the next call's documents meanwhile and
        writes each embedded document in its own transaction. At most ``PREFETCH`` parsed documents
        plus three calls' documents are held in memory, however large the corpus.
        """
        started = time.perf_counter()
        report = IngestReport()
        files, folders = discover(Path(p) for p in paths)
        seen = {str(f) for f in files}
        group_t, tag_t = tuple(sorted(set(groups))), tuple(sorted(set(tags)))

        def prepare(path: Path) -> _Prepared | None:
            meta = _Meta(self.groups_for(str(path), group_t), tag_t, path.stat().st_mtime)
            return self._prepare(path.read_bytes(), str(path), collection, meta)

        try:
            with (
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-parse") as pool,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-embed") as embedding,
            ):
                calls = _EmbedCalls(self, report, embedding)
                ahead: deque[tuple[Path, Future[_Prepared | None]]] = deque()
                queue = iter(files)
                for done in range(1, len(files) + 1):
                    while len(ahead) < PREFETCH and (nxt := next(queue, None)) is not None:
                        ahead.append((nxt, pool.submit(prepare, nxt)))
                    path, future = ahead.popleft()
                    prepared = _parsed(path, future, report)
                    if prepared is not None:
                        calls.add(prepared)
                    if progress is not None:
                        progress(str(path), done, len(files))
                calls.finish()
            for folder in folders:
                self._delete_missing(folder, collection, seen, report)
        finally:
            self._flush()
            report.seconds = time.perf_counter() - started
        if self.on_report is not None:
            self.on_report(report)
        return report

    @_serialised
    def ingest_bytes(
        self,
        data: bytes,
        source: str,
        collection: str = "default",
        groups: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> IngestReport:
        """Ingest one in-memory file (an upload); ``source`` names it and picks the loader."""
        started = time.perf_counter()
        report = IngestReport()
        try:
            group_t = self.groups_for(source, tuple(sorted(set(groups))))
            meta = _Meta(group_t, tuple(sorted(set(tags))), time.time())
            prepared = self._prepare(data, source, collection, meta)
            if prepared is None:
                report.unchanged.append(source)
            else:
                self._write_batch([prepared], report)
                if report.failed:
                    raise IngestionError(report.failed[0][1])
        finally:
            self._flush()
            report.seconds = time.perf_counter() - started
        if self.on_report is not None:
            self.on_report(report)
        return report

    @_serialised
    def delete(self, document_id: str) -> bool:
        """Delete one document; ``False`` if it did not exist."""
        if self.documents.get_document(document_id) is None:
            return False
        ids = self.documents.delete_document(document_id)
        self.vectors.delete(ids)
        self._flush()
        return True

    def _delete_missing(self, folder: Path, collection: str, seen: set[str], report: IngestReport) -> None:
        prefix = str(folder) + "/"
        for doc in self.documents.list_documents(collection):
            if doc.source.startswith(prefix) and doc.source not in seen:
                self.vectors.delete(self.documents.delete_document(doc.id))
                report.deleted.append(doc.source)

    def _prepare(self, data: bytes, source: str, collection: str, meta: _Meta) -> _Prepared | None:
        """Parse and chunk a file; ``None`` when the stored version is identical (nothing to embed)."""
        content_hash = hashlib.sha256(data).hexdigest()
        existing = self.documents.find_document(collection, source)
        if (
            existing is not None
            and existing.content_hash == content_hash
            and (existing.groups, existing.tags) == (meta.groups, meta.tags)
        ):
            return None
        parsed = load_bytes(data, source, self.loaders)
        spans = chunk_document(
            parsed, self.embedder.count_tokens, self.chunking.max_tokens, self.chunking.overlap_tokens
        )
        doc = Document(
            id=document_id(collection, source),
            collection=collection,
            source=source,
            title=parsed.title,
            content_hash=content_hash,
            media_type=parsed.media_type,
            chunk_count=len(spans),
            groups=meta.groups,
            ingested_at=time.time(),
            tags=meta.tags,
            modified_at=meta.modified_at,
        )
        chunks = [
            Chunk(
                id=f"{doc.id}-{content_hash[:8]}-{n}",
                document_id=doc.id,
                collection=collection,
                ordinal=n,
                text=parsed.text[s.start : s.end],
                heading_path=s.heading_path,
                start=s.start,
                end=s.end,
                source=source,
                title=parsed.title,
            )
            for n, s in enumerate(spans)
        ]
        texts = [embedding_text(c.title, c.heading_path, c.text) for c in chunks]
        return _Prepared(doc, chunks, texts, replaces=existing is not None)

    def _write_batch(self, batch: list[_Prepared], report: IngestReport) -> None:
        """Embed a batch of documents together, then write each in its own transaction."""
        if not batch:
            return
        try:
            vectors: np.ndarray | None = self._embed_batch(batch)
        except Exception:
            vectors = None
        self._write(batch, vectors, report)
        batch.clear()

    def _write_embedded(
        self, batch: list[_Prepared], vectors: Future[np.ndarray], report: IngestReport
    ) -> None:
        """Write a batch whose embedding call was started in the background."""
        try:
            done: np.ndarray | None = vectors.result()
        except Exception:
            done = None
        self._write(batch, done, report)

    def _write(self, batch: list[_Prepared], vectors: np.ndarray | None, report: IngestReport) -> None:
        """Write each document of a batch in its own transaction.

        ``vectors`` is ``None`` when the batch's shared embedding call failed: then each document is
        embedded alone, so a document that breaks the embedder fails by itself and the others land.
        """
        offset = 0
        for prepared in batch:
            n = len(prepared.texts)
            try:
                vecs = vectors[offset : offset + n] if vectors is not None else self._embed(prepared.texts)
                self._commit(prepared, vecs)
            except GroundworkError as exc:
                report.failed.append((prepared.document.source, exc.message))
            except Exception as exc:  # a bug or a model failure: this document fails, the store is unchanged
                source = prepared.document.source
                report.failed.append((source, f"{source}: {type(exc).__name__}: {exc}"))
            else:
                report.chunks_written += n
                report.chunks_embedded += n
                (report.updated if prepared.replaces else report.added).append(prepared.document.source)
            offset += n

    def _commit(self, prepared: _Prepared, vectors: np.ndarray) -> None:
        doc = prepared.document
        old_ids = self.documents.chunk_ids_of(doc.id) if prepared.replaces else np.asarray([], dtype=np.int64)
        new_ids = self.documents.write_document(doc, prepared.chunks, vectors)
        self.vectors.delete(old_ids)
        self.vectors.upsert(new_ids, vectors)

    def _embed_batch(self, batch: Sequence[_Prepared]) -> np.ndarray:
        return self._embed([t for p in batch for t in p.texts])

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``; a text repeated in the call (boilerplate) is embedded once."""
        if not texts:
            return np.zeros((0, self.embedder.dimensions), np.float32)
        distinct = list(dict.fromkeys(texts))
        if len(distinct) == len(texts):
            return self.embedder.embed(texts)
        row = {text: i for i, text in enumerate(distinct)}
        return self.embedder.embed(distinct)[[row[t] for t in texts]]
