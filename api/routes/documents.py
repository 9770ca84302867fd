"""Documents and chunks: read them, add or replace them, delete them."""

from __future__ import annotations

import email.message
from dataclasses import asdict
from pathlib import PurePath
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import EngineDep, ReadAccess, ServiceDep, SettingsDep, WriteAccess
from api.errors import InvalidDocuments, PayloadTooLarge, UnsupportedMediaType
from api.schemas import DocumentPage, DocumentsIn, PathIn, WriteResult, error_responses
from api.state import Service
from api.uploads import (
    UploadedFile,
    documents_from_files,
    documents_from_json,
    documents_from_path,
)
from rag.indexing import Document, generation_name
from rag.models import EXAMPLE_DOC, BuildReport, ChunkDetail, DocumentDetail, DocumentInfo

reads = APIRouter(tags=["documents"], dependencies=[ReadAccess])
writes = APIRouter(tags=["documents"], dependencies=[WriteAccess])

ChunkId = Annotated[str, Path(description="A chunk id.", examples=[f"{EXAMPLE_DOC}:3"])]
DocId = Annotated[str, Path(description="A document id.", examples=[EXAMPLE_DOC])]


_READ_ERRORS = error_responses(401, 403, 404, 422, 503)
MAX_OFFSET = 1_000_000_000  # SQLite's integers end at 2^63; a larger offset was a 500


@reads.get("/chunks/{chunk_id:path}", response_model=ChunkDetail, responses=_READ_ERRORS)
def get_chunk(chunk_id: ChunkId, engine: EngineDep) -> ChunkDetail:
    """A chunk: its document, its offsets in the document's text and its neighbours' ids."""
    return engine.chunk(chunk_id)


@reads.get("/documents", response_model=DocumentPage, responses=error_responses(401, 403, 422, 503))
def list_documents(
    engine: EngineDep,
    settings: SettingsDep,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Documents to skip (at most 10^9).")
    ] = 0,
    limit: Annotated[
        int | None, Query(ge=1, description="Page size, at most RAG_MAX_PAGE_SIZE (100).")
    ] = None,
) -> DocumentPage:
    """The indexed documents (id, title, date, chunk count), ordered by id, a page at a time."""
    if limit is None:
        limit = min(20, settings.max_page_size)
    if limit > settings.max_page_size:
        raise HTTPException(422, f"limit must be at most {settings.max_page_size}")
    store = engine.index.store  # one generation for both the page and the total
    return DocumentPage(
        total=store.count_documents(),
        offset=offset,
        limit=limit,
        documents=[
            DocumentInfo(**{**asdict(s), "source": public_source(s.source)})
            for s in store.summaries(offset=offset, limit=limit)
        ],
    )


@reads.get("/documents/{doc_id:path}", response_model=DocumentDetail, responses=_READ_ERRORS)
def get_document(doc_id: DocId, engine: EngineDep) -> DocumentDetail:
    """A document's metadata and its cleaned text: the text citations' offsets refer to."""
    detail = engine.document(doc_id)
    return detail.model_copy(update={"source": public_source(detail.source)})


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/DocumentsIn"},
                "examples": {
                    "one": {
                        "summary": "One article",
                        "value": DocumentsIn.model_config["json_schema_extra"]["example"],
                    }
                },
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Files: .txt .md .html .htm .jsonl (UTF-8, or "
                            "another encoding, detected), .pdf (with a text layer; citations "
                            "carry its pages) and .docx. A file's name without its suffix is "
                            "its document id; .jsonl lines carry their own ids. A file that "
                            "cannot be read is refused: 415 for its type, 422 for its content.",
                        }
                    },
                }
            },
        },
    }
}


@writes.post(
    "/documents",
    response_model=WriteResult,
    responses=error_responses(401, 403, 413, 415, 422, 503),
    openapi_extra=_UPLOAD_BODY,
)
async def add_documents(
    request: Request, service: ServiceDep, settings: SettingsDep
) -> WriteResult:
    """Add documents, or replace those with the same ids, as JSON or as uploaded files.

    A new index generation is built beside the live one and swapped in when complete:
    readers see the old index or the new one, and a failed write leaves the old one serving.
    Needs `Authorization: Bearer <RAG_API_KEY>`.
    """
    media_type = _media_type(request)
    limit = settings.max_documents_per_request
    if media_type == "application/json":
        try:
            payload = DocumentsIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(_with_body_loc(exc)) from None
        documents = await run_in_threadpool(documents_from_json, payload, max_documents=limit)
    elif media_type == "multipart/form-data":
        files = await _read_files(request, limit)
        documents = await run_in_threadpool(documents_from_files, files, max_documents=limit)
    else:
        raise UnsupportedMediaType(
            'send application/json ({"documents": [...]}) or multipart/form-data (files)'
        )
    return await run_in_threadpool(_upsert, service, documents)


def _upsert(service: Service, documents: list[Document]) -> WriteResult:
    report = service.write(lambda writer: writer.upsert(documents))
    return WriteResult(ids=[d.id for d in documents], report=public_report(report))


_FROM_PATH_ERRORS = error_responses(
    401,
    403,
    404,
    413,
    415,
    422,
    503,
    descriptions={
        403: "Wrong API key, writes disabled (no RAG_API_KEY), no RAG_CORPUS_ROOTS set "
        "(`corpus_roots_not_set`), or the path, resolved, is outside every corpus root "
        "(`path_outside_corpus_roots`).",
        404: "The path is inside a corpus root but does not exist (`path_not_found`).",
        413: "The path holds more than RAG_MAX_DOCUMENTS_PER_REQUEST documents.",
        415: "A single file of a type `rag index` does not read.",
        422: "Invalid body, a single file that cannot be read, or a folder with no documents.",
    },
)


@writes.post("/documents/from-path", response_model=WriteResult, responses=_FROM_PATH_ERRORS)
def add_documents_from_path(
    body: PathIn, service: ServiceDep, settings: SettingsDep
) -> WriteResult:
    """Add or replace the documents of a file or folder on the server, as `rag index` reads
    them and with the ids it gives them (relative to the corpus root that holds the path).

    Only paths inside RAG_CORPUS_ROOTS are read (none by default). A folder's files that
    cannot be read are skipped and listed in `report.skipped`. Written like POST /documents;
    needs `Authorization: Bearer <RAG_API_KEY>`.
    """
    documents, skipped = documents_from_path(
        body.path,
        settings.corpus_roots,
        max_documents=settings.max_documents_per_request,
        max_file_bytes=settings.max_file_bytes,
    )
    result = _upsert(service, documents)
    return result.model_copy(
        update={"report": result.report.model_copy(update={"skipped": skipped})}
    )


@writes.delete(
    "/documents/{doc_id:path}",
    response_model=WriteResult,
    responses=error_responses(401, 403, 404, 422, 503),
)
def delete_document(doc_id: DocId, service: ServiceDep) -> WriteResult:
    """Remove a document and its chunks (atomically, like additions)."""
    report = service.write(lambda writer: writer.delete(doc_id))
    return WriteResult(ids=[doc_id], report=public_report(report))


# No server paths in responses: a document's source relative to its corpus folder (indexes
# built before sources were stored that way hold absolute paths: their file name only), and
# a build report's location as the generation's directory name.
def public_source(source: str | None) -> str | None:
    if source is None or not PurePath(source).is_absolute():
        return source
    return PurePath(source).name


def public_report(report: BuildReport) -> BuildReport:
    return report.model_copy(update={"path": generation_name(report.generation)})


def _media_type(request: Request) -> str:
    message = email.message.Message()
    message["content-type"] = request.headers.get("content-type", "")
    return message.get_content_type() if request.headers.get("content-type") else ""


async def _read_files(request: Request, max_files: int) -> list[UploadedFile]:
    try:
        form = await request.form(max_files=max_files, max_fields=max_files + 10)
    except StarletteHTTPException as exc:  # Starlette's, which FastAPI's only subclasses
        if exc.status_code != 400:
            raise
        detail = str(exc.detail)
        if detail.startswith("Too many files"):
            raise PayloadTooLarge(
                f"more than {max_files} files; the limit is RAG_MAX_DOCUMENTS_PER_REQUEST"
            ) from None
        if detail.startswith(("Too many fields", "Part exceeded", "Field exceeded")):
            raise PayloadTooLarge(detail) from None
        raise InvalidDocuments(f"the multipart body is malformed: {detail}") from None
    try:
        files = []
        for value in form.getlist("files"):
            if not isinstance(value, UploadFile):
                raise HTTPException(422, "'files' must be file uploads")
            files.append(UploadedFile(filename=value.filename or "", content=await value.read()))
        return files
    finally:
        await form.close()


def _with_body_loc(exc: ValidationError) -> list[dict]:
    return [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
