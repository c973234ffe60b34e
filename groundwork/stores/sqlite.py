"""Embedded document store: one SQLite file holds documents, chunks, their vectors and an FTS5 index.

SQLite is the source of truth, vectors included, so a document is written in one transaction and a
crash at any point leaves either the old document or the new one. The faiss index
(:mod:`groundwork.stores.faiss_index`) is derived from these rows and rebuilt when its recorded
``generation`` differs from the database's.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from groundwork.errors import StorageError
from groundwork.stores.keyword_index import DEFAULT_HEADING_WEIGHT, KeywordEntry, TantivyKeywordIndex
from groundwork.stores.protocols import AllExcept, Allowed, ChunkFilter, FloatArray, IdArray
from groundwork.stores.sqlite_db import Migration, SQLiteDatabase, run_script
from groundwork.types import Chunk, Document

# The same split as FTS5's unicode61 tokenizer: runs of letters and digits in any script
# ("O'Brien" -> o, brien; "café" stays one token and matches "cafe" since diacritics are removed).
TOKEN = re.compile(r"[^\W_]+")
STOPWORDS = frozenset(
    (
        "a an and are as at be by can do does for from has have how i if in into is it its me my of on or "
        "our should so than that the their them then there these they this to was we what when where "
        "which who why will with would you your get got"
    ).split()
)


def _m1_schema(db: sqlite3.Connection) -> None:
    run_script(
        db,
        """
        CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            collection TEXT NOT NULL,
            source TEXT NOT NULL,
            title TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            media_type TEXT NOT NULL,
            chunk_count INTEGER NOT NULL,
            groups TEXT NOT NULL DEFAULT '[]',
            ingested_at REAL NOT NULL,
            UNIQUE (collection, source)
        );
        CREATE TABLE document_groups (
            document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            grp TEXT NOT NULL,
            PRIMARY KEY (document_id, grp)
        );
        CREATE TABLE chunks (
            rowid INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            collection TEXT NOT NULL,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            heading_path TEXT NOT NULL,
            start INTEGER NOT NULL,
            "end" INTEGER NOT NULL,
            vector BLOB NOT NULL
        );
        CREATE INDEX chunks_by_document ON chunks(document_id);
        CREATE INDEX chunks_by_collection ON chunks(collection);
        CREATE VIRTUAL TABLE chunks_fts USING fts5(text, headings, tokenize = 'porter unicode61');
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('generation', '0');
        """,
    )


def _m2_tags_and_mtime(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE documents ADD COLUMN tags TEXT NOT NULL DEFAULT '[]'")
    db.execute("ALTER TABLE documents ADD COLUMN modified_at REAL NOT NULL DEFAULT 0")
    db.execute(
        "CREATE TABLE document_tags (document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
        " tag TEXT NOT NULL, PRIMARY KEY (document_id, tag))"
    )
    db.execute("CREATE INDEX documents_by_source ON documents(collection, source)")


_DOC_COLUMNS = (
    "id, collection, source, title, content_hash, media_type, chunk_count, groups, ingested_at, tags,"
    " modified_at"
)


def _m3_keywords_to_tantivy(db: sqlite3.Connection) -> None:
    # Keyword search moved to the derived tantivy index (rebuilt from ``chunks`` when its generation is
    # stale, as it is after this migration).
    db.execute("DROP TABLE chunks_fts")


def _m4_value_indexes(db: sqlite3.Connection) -> None:
    db.execute("CREATE INDEX document_groups_by_group ON document_groups(grp)")
    db.execute("CREATE INDEX document_tags_by_tag ON document_tags(tag)")


MIGRATIONS: list[Migration] = [_m1_schema, _m2_tags_and_mtime, _m3_keywords_to_tantivy, _m4_value_indexes]
"""Ordered schema migrations; the number applied is recorded in ``PRAGMA user_version``."""


def fts_query(text: str) -> str | None:
    """An FTS5 query that ORs the text's content words, each quoted so nothing is read as syntax."""
    words = [w.lower() for w in TOKEN.findall(text)]
    unique = list(dict.fromkeys(w for w in words if w not in STOPWORDS))
    return " OR ".join(f'"{t}"' for t in unique) or None


class SQLiteDocumentStore:
    """The embedded :class:`~groundwork.stores.protocols.DocumentStore`."""

    def __init__(
        self, path: Path, keyword_dir: Path | None = None, heading_weight: int = DEFAULT_HEADING_WEIGHT
    ) -> None:
        self.path = Path(path)
        self._sqlite = SQLiteDatabase(self.path, MIGRATIONS, what="document store")
        self._lock = self._sqlite.lock
        self._db = self._sqlite.connection
        self._transaction = self._sqlite.transaction
        # allowed_chunk_ids' complements of the generation _complements_at, by (filter, COMPLEMENT_SHARE)
        self._complements: dict[tuple[ChunkFilter, float], AllExcept] = {}
        self._complements_at = -1
        self.keywords = TantivyKeywordIndex(
            keyword_dir or self.path.with_name(self.path.stem + ".keywords"), heading_weight
        )
        if self.keywords.generation != self.generation:
            with self._lock:
                self.keywords.rebuild(self._keyword_entries(), self.generation)

    def _keyword_entries(self, document_id: str | None = None) -> Iterator[KeywordEntry]:
        """Chunks as the keyword index holds them (every chunk, or one document's)."""
        where = "WHERE c.document_id = ?" if document_id is not None else ""
        cur = self._db.execute(
            "SELECT c.rowid, c.document_id, c.text, c.heading_path, d.title, d.collection, d.source,"
            " d.groups, d.tags, d.modified_at"
            f" FROM chunks c JOIN documents d ON d.id = c.document_id {where}",
            () if document_id is None else (document_id,),
        )
        while rows := cur.fetchmany(2048):
            for rowid, doc_id, text, headings, title, collection, source, groups, tags, mtime in rows:
                yield KeywordEntry(
                    id=int(rowid),
                    document_id=doc_id,
                    text=text,
                    headings=" ".join((title, *json.loads(headings))),
                    collection=collection,
                    source=source,
                    groups=tuple(json.loads(groups)),
                    tags=tuple(json.loads(tags)),
                    modified_at=float(mtime),
                )

    def flush(self) -> None:
        """Commit pending keyword-index writes (they are also committed by the next search)."""
        self.keywords.commit()

    def close(self) -> None:
        with self._lock:
            self.keywords.close()
            self._db.close()

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation(self._db)

    @staticmethod
    def _generation(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0])

    def _bump_generation(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    def _delete_chunks(self, db: sqlite3.Connection, document_id: str) -> IdArray:
        ids = [r[0] for r in db.execute("SELECT rowid FROM chunks WHERE document_id=?", (document_id,))]
        db.execute("DELETE FROM chunks WHERE document_id=?", (document_id,))
        return np.asarray(ids, dtype=np.int64)

    def write_document(
        self,
        document: Document,
        chunks: Sequence[Chunk],
        vectors: FloatArray,
        before_commit: Callable[[], None] | None = None,
    ) -> IdArray:
        """Replace ``document`` and its chunks in one transaction; returns the new chunks' ids.

        ``before_commit`` runs inside the transaction (tests use it to simulate a crash).
        """
        if len(chunks) != len(vectors):
            raise StorageError(f"{len(chunks)} chunks but {len(vectors)} vectors for {document.source}")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        try:
            return self._write(document, chunks, vecs, before_commit)
        except sqlite3.IntegrityError as exc:
            raise StorageError(f"cannot store {document.source} in {document.collection!r}: {exc}") from exc

    def _write(
        self,
        document: Document,
        chunks: Sequence[Chunk],
        vecs: FloatArray,
        before_commit: Callable[[], None] | None,
    ) -> IdArray:
        new_ids: list[int] = []
        with self._transaction() as db:
            self._delete_chunks(db, document.id)
            db.execute("DELETE FROM documents WHERE id=?", (document.id,))
            db.execute(
                "INSERT INTO documents (id, collection, source, title, content_hash, media_type, chunk_count,"
                " groups, ingested_at, tags, modified_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    document.id,
                    document.collection,
                    document.source,
                    document.title,
                    document.content_hash,
                    document.media_type,
                    len(chunks),
                    json.dumps(list(document.groups)),
                    document.ingested_at,
                    json.dumps(list(document.tags)),
                    document.modified_at,
                ),
            )
            db.executemany(
                "INSERT INTO document_groups VALUES (?,?)", [(document.id, g) for g in document.groups]
            )
            db.executemany(
                "INSERT INTO document_tags VALUES (?,?)", [(document.id, t) for t in document.tags]
            )
            for chunk, vec in zip(chunks, vecs, strict=True):
                cur = db.execute(
                    "INSERT INTO chunks (id, document_id, collection, ordinal, text, heading_path, start,"
                    ' "end",'
                    " vector) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        chunk.id,
                        document.id,
                        document.collection,
                        chunk.ordinal,
                        chunk.text,
                        json.dumps(list(chunk.heading_path)),
                        chunk.start,
                        chunk.end,
                        vec.tobytes(),
                    ),
                )
                new_ids.append(int(cur.lastrowid or 0))
            self._bump_generation(db)
            if before_commit is not None:
                before_commit()
            # still under the lock: the keyword index learns of writes in the order they committed
            self.keywords.replace_document(
                document.id, list(self._keyword_entries(document.id)), self._generation(db)
            )
        return np.asarray(new_ids, dtype=np.int64)

    def delete_document(self, document_id: str) -> IdArray:
        with self._transaction() as db:
            ids = self._delete_chunks(db, document_id)
            db.execute("DELETE FROM documents WHERE id=?", (document_id,))
            self._bump_generation(db)
            self.keywords.replace_document(document_id, [], self._generation(db))
        return ids

    @staticmethod
    def _document(row: sqlite3.Row | tuple[object, ...]) -> Document:
        return Document(
            id=str(row[0]),
            collection=str(row[1]),
            source=str(row[2]),
            title=str(row[3]),
            content_hash=str(row[4]),
            media_type=str(row[5]),
            chunk_count=int(str(row[6])),
            groups=tuple(json.loads(str(row[7]))),
            ingested_at=float(str(row[8])),
            tags=tuple(json.loads(str(row[9]))),
            modified_at=float(str(row[10])),
        )

    def get_document(self, document_id: str) -> Document | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE id=?", (document_id,)
            ).fetchone()
        return self._document(row) if row else None

    def find_document(self, collection: str, source: str) -> Document | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DOC_COLUMNS} FROM documents WHERE collection=? AND source=?", (collection, source)
            ).fetchone()
        return self._document(row) if row else None

    def list_documents(self, collection: str | None = None) -> list[Document]:
        sql, args = f"SELECT {_DOC_COLUMNS} FROM documents", tuple[str, ...]()
        if collection is not None:
            sql, args = sql + " WHERE collection=?", (collection,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY collection, source", args).fetchall()
        return [self._document(r) for r in rows]

    def collections(self) -> dict[str, int]:
        """Collection name -> number of documents."""
        with self._lock:
            rows = self._db.execute("SELECT collection, COUNT(*) FROM documents GROUP BY collection")
            return {str(c): int(n) for c, n in rows}

    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        if not len(ids):
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT c.rowid, c.id, c.document_id, c.collection, c.ordinal, c.text, c.heading_path,"
                f' c.start, c."end", d.source, d.title FROM chunks c JOIN documents d ON d.id = c.document_id'
                f" WHERE c.rowid IN ({marks})",
                [int(i) for i in ids],
            ).fetchall()
        return {
            int(r[0]): Chunk(
                id=r[1],
                document_id=r[2],
                collection=r[3],
                ordinal=r[4],
                text=r[5],
                heading_path=tuple(json.loads(r[6])),
                start=r[7],
                end=r[8],
                source=r[9],
                title=r[10],
            )
            for r in rows
        }

    @staticmethod
    def _documents_where(flt: ChunkFilter) -> tuple[str, list[object]]:
        """The condition on ``documents d`` that ``flt`` puts (every condition is per document)."""
        clauses: list[str] = []
        args: list[object] = []
        for table, column, values in (
            ("document_groups", "grp", flt.groups),
            ("document_tags", "tag", flt.tags),
        ):
            if values is not None:  # the document carries any of the values (an empty tuple admits nothing)
                marks = ",".join("?" * len(values)) or "NULL"
                clauses.append(f"d.id IN (SELECT document_id FROM {table} WHERE {column} IN ({marks}))")
                args.extend(values)
        if flt.collection is not None:
            # With group or tag values, start from the documents carrying them (unary + keeps the planner
            # off the collection's index: it walked all 10,000 documents of the collection for 100 ids).
            clauses.insert(0, f"{'+' if clauses else ''}d.collection = ?")
            args.insert(0, flt.collection)
        if flt.source_prefix is not None:
            # a prefix match that treats % and _ literally
            clauses.append("substr(d.source, 1, ?) = ?")
            args.extend([len(flt.source_prefix), flt.source_prefix])
        if flt.modified_after is not None:
            clauses.append("d.modified_at >= ?")
            args.append(flt.modified_after)
        if flt.modified_before is not None:
            clauses.append("d.modified_at < ?")
            args.append(flt.modified_before)
        return " AND ".join(clauses) or "1", args

    def chunk_ids_of(self, document_id: str) -> IdArray:
        """Ids of a document's chunks."""
        with self._lock:
            rows = self._db.execute("SELECT rowid FROM chunks WHERE document_id=?", (document_id,)).fetchall()
        return np.asarray([r[0] for r in rows], dtype=np.int64)

    COMPLEMENTS_KEPT = 64
    """Complements kept for the current generation (every write starts afresh): the same collection or
    groups ask again and again, and an unchanged store gives the same set."""
    COMPLEMENT_SHARE = 0.5
    """``allowed_chunk_ids`` gives the complement when the admitted documents hold more than this share of
    the chunks (1.0: never)."""

    def allowed_chunk_ids(self, flt: ChunkFilter) -> Allowed | None:
        """Ids a filter admits, or ``None`` when it admits every chunk.

        Every condition is per document, so the filter is resolved to documents first. When the admitted
        documents hold more than ``COMPLEMENT_SHARE`` of the chunks (by their ``chunk_count``), the
        answer is their complement, :class:`AllExcept` (the excluded ids, every chunk id up to the largest
        one now): a collection filter that admits 99% of 1M chunks otherwise built, passed and mapped a
        1M-id list and a 1M-entry faiss selector (163 ms against 4 ms unfiltered; ``benchmarks/RESULTS.md``).
        A complement is kept until the next write (the generation changes), so asking a collection
        again costs one read of the generation.
        Otherwise it is the admitted ids, ascending.
        """
        if flt.is_empty:
            return None
        if flt == ChunkFilter(collection=flt.collection) and set(self.collections()) <= {flt.collection}:
            return None  # the only collection: admitting every chunk needs no id list (measured 0.7 s at 1M)
        where, args = self._documents_where(flt)
        with self._lock:
            # One read transaction: the largest id, the counts and the excluded ids are of one snapshot.
            self._db.execute("BEGIN")
            try:
                generation = self._generation(self._db)
                if generation != self._complements_at:
                    self._complements, self._complements_at = {}, generation
                key = (flt, self.COMPLEMENT_SHARE)
                if (cached := self._complements.get(key)) is not None:
                    return cached
                upto, total, admitted = self._db.execute(
                    "SELECT (SELECT coalesce(max(rowid), 0) FROM chunks),"
                    " (SELECT coalesce(sum(chunk_count), 0) FROM documents),"
                    f" (SELECT coalesce(sum(d.chunk_count), 0) FROM documents d WHERE {where})",
                    args,
                ).fetchone()
                if admitted <= self.COMPLEMENT_SHARE * total:
                    return self._chunk_ids_in(f"SELECT d.id FROM documents d WHERE {where}", args)
                # IS NOT 1 rather than NOT: exactly the complement, whatever NULL a condition might meet
                excluded = self._chunk_ids_in(f"SELECT d.id FROM documents d WHERE ({where}) IS NOT 1", args)
            finally:
                self._db.execute("COMMIT")
        excluded.setflags(write=False)  # shared by every caller until the next write
        complement = AllExcept(excluded, int(upto), int(admitted))
        with self._lock:
            if self._complements_at == generation and len(self._complements) < self.COMPLEMENTS_KEPT:
                self._complements[key] = complement
        return complement

    def _chunk_ids_in(self, documents: str, args: list[object]) -> IdArray:
        """Ids of the chunks of the documents that the ``SELECT`` ``documents`` returns, ascending.

        A document's chunks are inserted together in one transaction, so their rowids (AUTOINCREMENT)
        are consecutive: SQLite answers with one row per document from ``chunks_by_document`` alone (the
        index holds the rowids), and numpy expands the ranges; a document whose ids are not one range is
        read id by id. Fetching every id as a Python int instead cost 52 ms for 10,000 ids at 1M chunks.
        The caller holds the lock.
        """
        rows = self._db.execute(
            "SELECT min(rowid), max(rowid), count(*), document_id FROM chunks"
            f" WHERE document_id IN ({documents}) GROUP BY document_id",
            args,
        ).fetchall()
        scattered = [self.chunk_ids_of(doc) for lo, hi, n, doc in rows if hi - lo + 1 != n]
        ranges = np.asarray([(lo, n) for lo, hi, n, _ in rows if hi - lo + 1 == n], dtype=np.int64)
        ranges = ranges.reshape(-1, 2)
        ranges = ranges[np.argsort(ranges[:, 0])]
        starts, lengths = ranges[:, 0], ranges[:, 1]
        offsets = np.cumsum(lengths) - lengths
        ids = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)
        return np.sort(np.concatenate([ids, *scattered])) if scattered else ids

    def keyword_search(
        self, query: str, k: int, flt: ChunkFilter, match: str | None = None
    ) -> list[tuple[int, float]]:
        match = match or fts_query(query)
        if match is None:
            return []
        documents = None
        if flt.source_prefix is not None:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id FROM documents WHERE substr(source, 1, ?) = ?",
                    (len(flt.source_prefix), flt.source_prefix),
                ).fetchall()
            documents = [r[0] for r in rows]
            flt = dataclasses.replace(flt, source_prefix=None)
        return self.keywords.search(match, k, flt, documents)

    def iter_vectors(self, batch: int = 4096) -> list[tuple[IdArray, FloatArray]]:
        out: list[tuple[IdArray, FloatArray]] = []
        with self._lock:
            cur = self._db.execute("SELECT rowid, vector FROM chunks ORDER BY rowid")
            while rows := cur.fetchmany(batch):
                ids = np.asarray([r[0] for r in rows], dtype=np.int64)
                vecs = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
                out.append((ids, vecs))
        return out
