"""PostgreSQL + pgvector backends: the document store and the vector store of a scale-out deployment.

:func:`open_document_database` checks pgvector (>= 0.8), applies the document store's migrations (unless
told not to) and opens the connection pool; :class:`PostgresDocumentStore` and
:class:`PostgresVectorStore` share that database.
"""

from __future__ import annotations

from pgvector.psycopg import register_vector
from psycopg import sql

from groundwork.config import PostgresSettings
from groundwork.errors import StorageError
from groundwork.stores.postgres.db import Connection, Migration, PostgresDatabase, describe_dsn
from groundwork.stores.postgres.documents import PostgresDocumentStore
from groundwork.stores.postgres.filters import FilteredIds
from groundwork.stores.postgres.schema import SUBSYSTEM, check_shape, ensure_pgvector, migrations
from groundwork.stores.postgres.vectors import PostgresVectorStore

__all__ = [
    "FilteredIds",
    "Migration",
    "PostgresDatabase",
    "PostgresDocumentStore",
    "PostgresVectorStore",
    "describe_dsn",
    "open_document_database",
    "open_document_store",
    "open_stores",
    "vector_store_beside",
]


def _session_setup(settings: PostgresSettings) -> sql.Composed:
    return sql.SQL(
        "SELECT set_config('hnsw.ef_search', {ef}, false), set_config('hnsw.iterative_scan', 'relaxed_order',"
        " false), set_config('hnsw.max_scan_tuples', {scan}, false)"
    ).format(ef=sql.Literal(str(settings.ef_search)), scan=sql.Literal(str(settings.max_scan_tuples)))


def open_document_database(
    settings: PostgresSettings, dimensions: int, *, migrate: bool | None = None
) -> PostgresDatabase:
    """The document store's database: pgvector checked, schema migrated (or checked current), pool open.

    Raises :class:`~groundwork.errors.ServiceUnavailableError` when the server is unreachable or lacks
    pgvector, :class:`~groundwork.errors.StorageError` when the schema does not fit.
    """
    setup = _session_setup(settings)

    def prepare(conn: Connection) -> None:
        ensure_pgvector(conn, settings.dsn)

    def configure(conn: Connection) -> None:
        register_vector(conn)
        conn.execute(setup)
        conn.commit()

    db = PostgresDatabase(
        settings.dsn,
        migrations(dimensions, settings.text_search_config, settings.hnsw_m, settings.hnsw_ef_construction),
        subsystem=SUBSYSTEM,
        pool_min=settings.pool_min,
        pool_max=settings.pool_max,
        connect_timeout_s=settings.connect_timeout_s,
        migrate=settings.migrate_on_start if migrate is None else migrate,
        prepare=prepare,
        configure=configure,
    )
    return db


def open_document_store(settings: PostgresSettings, dimensions: int) -> PostgresDocumentStore:
    """The document store over a freshly opened database (see :func:`open_document_database`)."""
    db = open_document_database(settings, dimensions)
    try:
        with db.connection() as conn:
            text_config = check_shape(conn, dimensions, settings.dsn)
    except BaseException:
        db.close()
        raise
    return PostgresDocumentStore(db, dimensions, text_config)


def vector_store_beside(
    documents: object, settings: PostgresSettings, exact_search_below: int | None = None
) -> PostgresVectorStore:
    """The vector store over the database of ``documents`` (a :class:`PostgresDocumentStore`)."""
    if not isinstance(documents, PostgresDocumentStore):
        raise StorageError(
            f"the PostgreSQL vector store needs the PostgreSQL document store, not {type(documents).__name__}"
        )
    return PostgresVectorStore(
        documents.db,
        documents.dimensions,
        ef_search=settings.ef_search,
        exact_search_below=settings.exact_search_below if exact_search_below is None else exact_search_below,
    )


def open_stores(
    settings: PostgresSettings, dimensions: int, exact_search_below: int | None = None
) -> tuple[PostgresDocumentStore, PostgresVectorStore]:
    """The document and vector stores over one freshly opened database."""
    documents = open_document_store(settings, dimensions)
    return documents, vector_store_beside(documents, settings, exact_search_below)
