"""Collections over HTTP: upload, list and delete documents; list collections.

``POST /v1/collections/{collection}/documents`` takes either

* ``multipart/form-data``: one or more ``file`` parts (the file name picks the loader by its suffix:
  ``.md .markdown .txt .text .html .htm .pdf .docx``) and an optional ``groups`` field,
  comma-separated; or
* ``application/json``: ``{"documents": [{"name": "x.md", "text": "...", "groups": []}]}``, text
  documents whose name has a text suffix (none: ``.txt`` is added).

A document's source is its file name (directories stripped), so uploading the same name again updates
that document (or leaves it unchanged when the bytes and groups are the same). Each file is ingested in
a worker thread, in its own transaction: a corrupt or unsupported file is reported as ``failed`` with
the reason, stores nothing, and the others still land. The answer lists every file with its status
(``added``, ``updated``, ``unchanged``, ``failed``) and document id; the status code is 201 when a
document was added, 200 otherwise, and 422 (the error body, plus the list) when every file failed.

Size: a file may have up to 20 MiB, and the whole upload body up to the app's ``max_upload_bytes``
(64 MiB by default, :data:`groundwork.api.middleware.MAX_UPLOAD_BYTES`; other routes keep the smaller
``max_body_bytes``); larger bodies get a 413 before they are read.

Writes (uploads and deletes) are serialised per app, so two uploads of the same file cannot interleave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from groundwork.api.context import principal_of
from groundwork.api.errors import (
    REQUEST_ID_KEY,
    RequestValidationFailed,
    error_payload,
    internal_error,
    logger,
)
from groundwork.api.routing import raw_router
from groundwork.api.schemas import COLLECTION_RULE, DocumentsUpload, check_collection, parse_body
from groundwork.api.state import ApiState
from groundwork.container import Container
from groundwork.errors import GroundworkError, IngestionError, InputError, NotFoundError
from groundwork.rag.ingest import document_id
from groundwork.rag.loaders import LOADERS
from groundwork.security.permissions import can_read
from groundwork.types import Document, Principal

MAX_FILE_BYTES = 20 * 1024 * 1024
"""The largest file accepted in an upload (the request body limit applies too; see the module docs)."""

MAX_FILES = 100
"""The most files one upload request may carry."""

BINARY_SUFFIXES = frozenset({".pdf", ".docx"})
"""Suffixes whose loaders read binary files: not accepted as the ``name`` of a JSON text document."""


class UnsupportedMediaTypeError(InputError):
    """The upload body is neither ``multipart/form-data`` nor JSON."""

    @property
    def http_status(self) -> int:
        return 415


@dataclass(frozen=True, slots=True)
class Upload:
    """One file of an upload request, before ingestion. ``problem`` rejects it without parsing."""

    name: str
    data: bytes
    groups: tuple[str, ...]
    problem: str | None = None


def path_collection(request: Request) -> str:
    """The ``{collection}`` of the path, validated (400 naming the rule otherwise)."""
    try:
        return check_collection(str(request.path_params["collection"]))
    except ValueError as exc:
        raise RequestValidationFailed(f"collection: {exc}", param="collection") from None


def _groups(raw: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted({g.strip() for g in raw if g.strip()}))


def _file_name(raw: str) -> str:
    return PurePosixPath(raw.replace("\\", "/")).name.strip()


async def _multipart_uploads(request: Request) -> list[Upload]:
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=10)
    except StarletteHTTPException as exc:  # the multipart parser's own errors
        raise RequestValidationFailed(f"the multipart body cannot be read: {exc.detail}") from None
    try:
        unknown = sorted(set(form.keys()) - {"file", "groups"})
        if unknown:
            raise RequestValidationFailed(
                f"unknown form field {unknown[0]!r}: send files as `file` parts and `groups` as text",
                param=unknown[0],
            )
        raw_groups = form.get("groups")
        if isinstance(raw_groups, UploadFile):
            raise RequestValidationFailed("groups: send comma-separated group names as text", param="groups")
        groups = _groups((raw_groups or "").split(","))
        files = form.getlist("file")
        if not files:
            raise RequestValidationFailed(
                "no `file` part: send one or more files as `file` parts", param="file"
            )
        uploads = []
        for item in files:
            if not isinstance(item, UploadFile):
                raise RequestValidationFailed("file: each `file` part must be a file", param="file")
            name = _file_name(item.filename or "")
            if not name:
                uploads.append(Upload("(no name)", b"", groups, "the file part has no file name"))
            elif item.size is not None and item.size > MAX_FILE_BYTES:
                uploads.append(Upload(name, b"", groups, f"{name}: larger than {MAX_FILE_BYTES} bytes"))
            else:
                uploads.append(Upload(name, await item.read(), groups))
        return uploads
    finally:
        await form.close()


def _json_uploads(body: DocumentsUpload) -> list[Upload]:
    uploads = []
    for doc in body.documents:
        name = _file_name(doc.name)
        problem = None
        if not name:
            name, problem = doc.name, f"{doc.name!r} is not a file name"
        elif not PurePosixPath(name).suffix:
            name += ".txt"
        elif PurePosixPath(name).suffix.lower() in BINARY_SUFFIXES:
            problem = (
                f"{name}: a JSON document is text; upload {PurePosixPath(name).suffix} files as multipart"
            )
        data = doc.text.encode()
        if problem is None and len(data) > MAX_FILE_BYTES:
            problem = f"{name}: larger than {MAX_FILE_BYTES} bytes"
        uploads.append(Upload(name, data, _groups(doc.groups), problem))
    return uploads


async def read_uploads(request: Request) -> list[Upload]:
    """The files of an upload request, multipart or JSON."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _multipart_uploads(request)
    if media_type in ("", "application/json") or media_type.endswith("+json"):
        return _json_uploads(parse_body(DocumentsUpload, await request.body()))
    raise UnsupportedMediaTypeError(
        f"unsupported content type {media_type!r}: send multipart/form-data with `file` parts "
        "(suffixes: " + ", ".join(sorted(LOADERS)) + ') or application/json {"documents": [...]}'
    )


def ingest_upload(
    container: Container, collection: str, upload: Upload, request_id: str, principal: Principal | None = None
) -> dict[str, Any]:
    """Ingest one file and describe the outcome. Blocking (parses and embeds): run it in a thread.

    A ``principal`` who may not read the stored document of the same name may not replace it.
    """
    entry: dict[str, Any] = {"name": upload.name, "document_id": document_id(collection, upload.name)}
    if upload.problem is not None:
        return {**entry, "status": "failed", "reason": upload.problem, "chunks": 0}
    existing = container.documents.get_document(entry["document_id"]) if principal else None
    if principal is not None and existing is not None and not can_read(principal, existing.groups):
        reason = f"{upload.name}: permission denied (choose another name)"
        return {**entry, "status": "failed", "reason": reason, "chunks": 0}
    try:
        report = container.ingestor.ingest_bytes(upload.data, upload.name, collection, upload.groups)
    except Exception as exc:
        error = exc if isinstance(exc, GroundworkError) else internal_error(exc, request_id)
        return {**entry, "status": "failed", "reason": error.message, "error_id": error.error_id, "chunks": 0}
    status = "added" if report.added else "updated" if report.updated else "unchanged"
    return {**entry, "status": status, "chunks": report.chunks_written}


def _document_json(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "source": doc.source,
        "title": doc.title,
        "chunk_count": doc.chunk_count,
        "groups": list(doc.groups),
        "media_type": doc.media_type,
        "ingested_at": doc.ingested_at,
    }


def _json(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _upload_response(collection: str, results: list[dict[str, Any]], request_id: str) -> Response:
    counts = {s: sum(r["status"] == s for r in results) for s in ("added", "updated", "unchanged", "failed")}
    if counts["failed"] == len(results):
        reasons = "; ".join(r["reason"] for r in results[:5])
        error = IngestionError(f"no document was ingested: {reasons}")
        logger.info("request %s: upload failed: %s %s", request_id, error.error_id, error.message)
        body = orjson.loads(error_payload(error, param="file"))
        return _json({**body, "collection": collection, "documents": results}, 422)
    status = 201 if counts["added"] else 200
    return _json({"collection": collection, **counts, "documents": results}, status)


def _path_params(*names: str) -> list[dict[str, Any]]:
    described = {"collection": COLLECTION_RULE, "doc_id": "A document id (from the upload or the listing)."}
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}, "description": described[n]}
        for n in names
    ]


_UPLOAD_BODY = {
    "parameters": _path_params("collection"),
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "groups": {"type": "string", "description": "Comma-separated group names."},
                    },
                    "required": ["file"],
                }
            },
            "application/json": {"schema": {"$ref": "#/components/schemas/DocumentsUpload"}},
        },
    },
}


def documents_router(state: ApiState) -> APIRouter:
    """The collection routes over ``state``'s container."""
    router = raw_router(tags=["rag"])
    container = state.container
    writes = asyncio.Lock()

    @router.post("/v1/collections/{collection}/documents", openapi_extra=_UPLOAD_BODY)
    async def upload_documents(request: Request) -> Response:
        """Upload files (multipart) or text documents (JSON) into a collection; see the module docs."""
        collection = path_collection(request)
        uploads = await read_uploads(request)
        rid = str(request.scope.get(REQUEST_ID_KEY, ""))
        results = []
        async with writes:
            for upload in uploads:
                results.append(
                    await asyncio.to_thread(
                        ingest_upload, container, collection, upload, rid, principal_of(request)
                    )
                )
        return _upload_response(collection, results, rid)

    @router.get(
        "/v1/collections/{collection}/documents", openapi_extra={"parameters": _path_params("collection")}
    )
    async def list_documents(request: Request) -> Response:
        """The documents of a collection (an empty list for a collection without documents)."""
        collection = path_collection(request)
        docs = await asyncio.to_thread(container.documents.list_documents, collection)
        principal = principal_of(request)
        readable = [_document_json(d) for d in docs if can_read(principal, d.groups)]
        return _json({"collection": collection, "documents": readable})

    @router.delete(
        "/v1/collections/{collection}/documents/{doc_id}",
        openapi_extra={"parameters": _path_params("collection", "doc_id")},
    )
    async def delete_document(request: Request) -> Response:
        """Delete a document and its chunks (404 when it is not in this collection)."""
        collection = path_collection(request)
        doc_id = str(request.path_params["doc_id"])
        principal = principal_of(request)

        def delete() -> bool:  # a document the caller may not read is "not found", like a missing one
            doc = container.documents.get_document(doc_id)
            if doc is None or doc.collection != collection or not can_read(principal, doc.groups):
                return False
            return container.ingestor.delete(doc_id)

        async with writes:
            deleted = await asyncio.to_thread(delete)
        if not deleted:
            raise NotFoundError(f"no document {doc_id!r} in collection {collection!r}")
        return _json({"id": doc_id, "collection": collection, "deleted": True})

    @router.get("/v1/collections")
    async def list_collections(request: Request) -> Response:
        """Every collection with its number of documents (those the caller may read)."""
        principal = principal_of(request)

        def readable_counts() -> dict[str, int]:
            if principal.is_admin:
                return container.documents.collections()
            counts: dict[str, int] = {}
            for d in container.documents.list_documents(None):
                if can_read(principal, d.groups):
                    counts[d.collection] = counts.get(d.collection, 0) + 1
            return counts

        counts = await asyncio.to_thread(readable_counts)
        data = [{"name": name, "documents": n} for name, n in sorted(counts.items())]
        return _json({"collections": data})

    return router
