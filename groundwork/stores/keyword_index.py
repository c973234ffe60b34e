"""The embedded keyword index: BM25 over chunks with tantivy, derived from the SQLite store.

SQLite stays the source of truth. This index holds, per chunk, its text, its headings (title and heading
path) and the fields a :class:`~groundwork.stores.protocols.ChunkFilter` tests (collection, groups,
tags, modification time; a path prefix arrives resolved to document ids), so a filtered search runs
inside the index and fills its top k with admitted chunks. It records the store's ``generation`` it
reflects; an index whose generation differs (a crash between the SQLite commit and the index commit,
another version, a corrupt directory) is rebuilt from the store when opened.

Why not SQLite's FTS5: its ``bm25()`` scores every row matching an OR query before sorting, so a
query costs time in proportion to its matches: 15 ms at 100k chunks and 152 ms at 1M (p99 1.8 s),
against 0.2 ms and 1.3 ms here (``benchmarks/RESULTS.md``).

Queries use FTS5's syntax, which the retrieval code already writes: an OR of quoted words, a word
repeated to weigh more (see :func:`groundwork.rag.feedback.feedback_match`).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import Stemmer
import tantivy

from groundwork.config import RetrievalSettings
from groundwork.errors import StorageError
from groundwork.stores.protocols import ChunkFilter

SCHEMA_VERSION = "3"
# the setting's default, so a store opened without settings (a script, a test) reads the same index
DEFAULT_HEADING_WEIGHT: int = RetrievalSettings.model_fields["heading_weight"].default
_WORD = re.compile(r"[^\W_]+")
_PHRASE = re.compile(r'"([^"]*)"')


@dataclass(frozen=True, slots=True)
class KeywordEntry:
    """One chunk as the keyword index sees it."""

    id: int
    document_id: str
    text: str
    headings: str
    collection: str
    source: str
    groups: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    modified_at: float = 0.0


def _schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_integer_field("id", stored=False, indexed=True, fast=True)
    # One field for headings and text, the headings repeated ``heading_weight`` times: BM25F's field
    # weighting (weighted term frequencies and length, one saturation). Two tantivy fields, each with its
    # own BM25, lost 0.015 nDCG@10 on Cranfield; a headings field scored beside the body, boosted 0.25 to
    # 2, scored 0.4567 to 0.4402 against 0.4607 for heading weight 4 (benchmarks/RESULTS.md).
    b.add_text_field("body", stored=False, tokenizer_name="stems", index_option="freq")
    for name in ("document_id", "collection", "source", "groups", "tags"):
        b.add_text_field(name, stored=False, tokenizer_name="raw", index_option="basic")
    b.add_float_field("modified_at", stored=False, indexed=True, fast=True)
    return b.build()


class Analyzer:
    """Words as FTS5's ``porter unicode61`` tokenizer made them: runs of letters and digits, lower-cased,
    diacritics removed, Porter-stemmed (PyStemmer's C Porter, the algorithm FTS5 uses).

    The analysis runs here, not in tantivy, whose English stemmer is Porter2: with it Cranfield's
    nDCG@10 fell from 0.4447 to 0.4366.
    """

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("porter")

    def __call__(self, text: str) -> list[str]:
        words = [w.lower() for w in _WORD.findall(text) if len(w) <= 64]
        words = [w if w.isascii() else _fold(w) for w in words]
        return list(self._stemmer.stemWords(words))


def _fold(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def weighted_words(match: str) -> Counter[str]:
    """The quoted words of an FTS5 OR query, counted: ``'"a" OR "b" OR "a"'`` -> ``{a: 2, b: 1}``."""
    return Counter(p for p in _PHRASE.findall(match) if p.strip())


def _idf_ratio(n_docs: int, df: int) -> float:
    """FTS5's BM25 idf over tantivy's (Lucene's): boosting by it makes tantivy score as FTS5 did.

    FTS5 uses ``ln((N - n + 0.5) / (n + 0.5))`` (floored at 1e-6), Lucene ``ln(1 + (N - n + 0.5) /
    (n + 0.5))``, which weighs common words more; the fusion weights were tuned on FTS5's scores.
    """
    if df <= 0:
        return 1.0
    odds = max((n_docs - df + 0.5) / (df + 0.5), 0.0)  # deleted documents still count in df
    fts5 = math.log(odds) if odds > 1.0 else 1e-6
    return fts5 / max(math.log1p(odds), 1e-6)


class TantivyKeywordIndex:
    """BM25 keyword search with filters, in a directory of its own. Thread-safe.

    ``heading_weight``: a chunk's headings (document title and heading path) are indexed that many times
    before its text, so a query word found in them counts that many times (BM25F's field weight; 0 leaves
    them out). The weight is part of the index's version: opening it with another weight rebuilds it.
    """

    def __init__(self, directory: Path, heading_weight: int = DEFAULT_HEADING_WEIGHT) -> None:
        if heading_weight < 0:
            raise ValueError("heading_weight must be >= 0")
        self.directory = Path(directory)
        self.heading_weight = heading_weight
        # weight 1 keeps the plain version, so indexes written before the weight existed stay valid
        self._version = SCHEMA_VERSION if heading_weight == 1 else f"{SCHEMA_VERSION}h{heading_weight}"
        self._schema = _schema()
        self._analyze = Analyzer()
        self._lock = threading.RLock()
        self._writer: tantivy.IndexWriter | None = None
        self._pending_generation: int | None = None
        self.generation: int | None = None
        self._index = self._open()

    # -- opening and rebuilding -------------------------------------------------------------------

    def _open(self) -> tantivy.Index:
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=True)
        except (ValueError, OSError):  # corrupt or from another schema: start empty, rebuild later
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory.mkdir(parents=True)
            index = tantivy.Index(self._schema, path=str(self.directory), reuse=True)
        # the body holds analysed stems already: tantivy only splits it
        index.register_tokenizer("stems", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        self.generation = self._read_generation()
        return index

    def _read_generation(self) -> int | None:
        try:
            version, generation = (self.directory / "generation").read_text().split()
        except (OSError, ValueError):
            return None
        return int(generation) if version == self._version else None

    def _write_generation(self, generation: int) -> None:
        tmp = self.directory / "generation.tmp"
        tmp.write_text(f"{self._version} {generation}\n")
        os.replace(tmp, self.directory / "generation")
        self.generation = generation

    def rebuild(self, entries: Iterable[KeywordEntry], generation: int) -> int:
        """Replace the whole index with ``entries``; returns how many were indexed."""
        with self._lock:
            writer = self._writer_()
            writer.delete_all_documents()
            count = 0
            for entry in entries:
                writer.add_document(self._document(entry))
                count += 1
            self._pending_generation = generation
            self.commit()
            return count

    # -- writing ------------------------------------------------------------------------------------

    def _writer_(self) -> tantivy.IndexWriter:
        if self._writer is None:
            try:
                self._writer = self._index.writer(heap_size=64_000_000, num_threads=1)
            except ValueError as exc:
                raise StorageError(
                    f"the keyword index {self.directory} is being written by another process: {exc}"
                ) from exc
        return self._writer

    def _document(self, e: KeywordEntry) -> tantivy.Document:
        return tantivy.Document(
            id=e.id,
            document_id=e.document_id,
            body=" ".join(self._analyze("\n".join([*[e.headings] * self.heading_weight, e.text]))),
            collection=e.collection,
            source=e.source,
            groups=list(e.groups),
            tags=list(e.tags),
            modified_at=float(e.modified_at),
        )

    def replace_document(self, document_id: str, entries: Iterable[KeywordEntry], generation: int) -> None:
        """Drop a document's chunks and add ``entries`` (none: a delete); visible at the next search."""
        with self._lock:
            writer = self._writer_()
            writer.delete_documents_by_term("document_id", document_id)
            for entry in entries:
                writer.add_document(self._document(entry))
            self._pending_generation = generation

    def commit(self) -> None:
        """Make pending writes searchable and durable, and record their generation."""
        with self._lock:
            if self._writer is None:
                return
            writer, self._writer = self._writer, None
            try:
                writer.commit()
                writer.wait_merging_threads()  # also releases the directory's writer lock
            except ValueError as exc:
                raise StorageError(f"cannot commit the keyword index {self.directory}: {exc}") from exc
            if self._pending_generation is not None:
                self._write_generation(self._pending_generation)
                self._pending_generation = None
            self._index.reload()

    def close(self) -> None:
        self.commit()

    # -- searching ----------------------------------------------------------------------------------

    def _tokens(self, word: str) -> list[str]:
        return list(dict.fromkeys(self._analyze(word)))

    def _filter(self, flt: ChunkFilter, documents: Sequence[str] | None) -> list[tantivy.Query] | None:
        """Queries every admitted chunk matches; ``None`` when the filter admits nothing."""
        s = self._schema
        out: list[tantivy.Query] = []
        if flt.collection is not None:
            out.append(tantivy.Query.term_query(s, "collection", flt.collection))
        for field, values in (("groups", flt.groups), ("tags", flt.tags)):
            if values is not None:
                if not values:
                    return None
                out.append(tantivy.Query.term_set_query(s, field, list(values)))
        if flt.source_prefix is not None:
            raise ValueError("resolve source_prefix to document ids first (see SQLiteDocumentStore)")
        if documents is not None:
            if not documents:
                return None
            out.append(tantivy.Query.term_set_query(s, "document_id", list(documents)))
        if flt.modified_after is not None or flt.modified_before is not None:
            out.append(
                tantivy.Query.range_query(
                    s,
                    "modified_at",
                    tantivy.FieldType.Float,
                    flt.modified_after,
                    flt.modified_before,
                    include_lower=True,
                    include_upper=flt.modified_before is None,
                )
            )
        return [tantivy.Query.const_score_query(q, 0.0) for q in out]

    def search(
        self, match: str, k: int, flt: ChunkFilter, documents: Sequence[str] | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` best ``(chunk id, BM25 score)`` for an FTS5-style OR query, inside ``flt``.

        ``documents`` restricts the search to those document ids. A ``source_prefix`` must be resolved
        to them by the caller: a prefix as a tantivy regex fails past 1,000 automaton states (found by
        the API fuzzer with a long path).
        """
        with self._lock:
            if self._writer is not None:
                self.commit()
            searcher = self._index.searcher()
        filters = self._filter(flt, documents)
        if filters is None or k <= 0:
            return []
        should: list[tuple[tantivy.Occur, tantivy.Query]] = []
        for word, weight in weighted_words(match).items():
            for token in self._tokens(word):
                q = tantivy.Query.term_query(self._schema, "body", token)
                boost = weight * _idf_ratio(searcher.num_docs, searcher.doc_freq("body", token))
                should.append((tantivy.Occur.Should, tantivy.Query.boost_query(q, boost)))
        if not should:
            return []
        text_query = tantivy.Query.boolean_query(should)
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Must, text_query), *((tantivy.Occur.Must, f) for f in filters)]
        )
        hits = searcher.search(query, k, count=False).hits
        if not hits:
            return []
        ids = searcher.fast_field_values("id", [addr for _, addr in hits])
        return [(int(i), float(score)) for (score, _), i in zip(hits, ids, strict=True) if i is not None]
