"""HTTP-only models: errors, document uploads, pages, health. The shared contract (questions,
answers, citations, documents) is in rag.models."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.models import AskResponse, BuildReport, DocumentInfo, Text

EXAMPLE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class ErrorDetail(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "code": "invalid_request",
                "message": "k: Input should be greater than or equal to 1",
                "details": [
                    {
                        "loc": ["body", "k"],
                        "msg": "Input should be greater than or equal to 1",
                        "type": "greater_than_equal",
                    }
                ],
            }
        }
    )

    code: str = Field(description="Stable machine-readable code, e.g. `unknown_document`.")
    message: str = Field(description="What went wrong and, where it helps, what to do.")
    details: list[dict] | None = Field(
        default=None, description="Per-field problems for `invalid_request` (loc, msg, type)."
    )


class ErrorResponse(BaseModel):
    """The one shape of every error response."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": {
                    "code": "unknown_document",
                    "message": "no document with id '../../etc/passwd'",
                }
            }
        }
    )

    error: ErrorDetail


class GeneratorErrorResponse(ErrorResponse):
    """A generated answer that failed (`generate: true`): the error, and the extractive
    answer the service gives without the generator."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": {
                    "code": "generator_timeout",
                    "message": "the generator did not answer within 20 s",
                },
                "extractive": AskResponse.model_config["json_schema_extra"]["example"],
            }
        }
    )

    extractive: AskResponse | None = Field(
        default=None, description="The answer without the generator (reader or sentence)."
    )


GENERATOR_ERRORS: dict[int | str, dict] = {
    502: {
        "model": GeneratorErrorResponse,
        "description": "`generate: true` and the generator is unreachable or its answer is not "
        "an OpenAI chat completion (`generator_unreachable`, `generator_bad_response`); the "
        "extractive answer is in `extractive`.",
    },
    504: {
        "model": GeneratorErrorResponse,
        "description": "`generate: true` and the generator did not answer within "
        "RAG_GENERATOR_TIMEOUT_SECONDS (`generator_timeout`); the extractive answer is in "
        "`extractive`. (A 504 `timeout` without it: the whole request ran over "
        "RAG_REQUEST_TIMEOUT_SECONDS.)",
    },
}


def error_responses(
    *codes: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries for the given error status codes; `descriptions` replaces
    the usual description of a code where a route gives it another meaning."""
    usual = {
        401: "No API key sent (writes, or reads when a read key is configured).",
        403: "Wrong API key, or writes disabled (no RAG_API_KEY).",
        404: "Unknown id.",
        413: "Body or question over its limit.",
        415: "Unsupported content type or file type.",
        422: "Invalid request: malformed JSON, missing or wrong fields, k out of range.",
        503: "No index loaded: build one with `rag index`.",
    }
    said = {**usual, **(descriptions or {})}
    return {c: {"model": ErrorResponse, "description": said[c]} for c in codes}


class DocumentIn(BaseModel):
    """A document to add, or to replace the one with the same id."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {
                "id": "tashkent-rare-metals",
                "title": "Tashkent hosts rare metals forum",
                "text": "Delegates in Tashkent discussed refining of lithium and gallium ...",
                "date": "2024-05-02",
                "url": "https://example.org/tashkent-rare-metals",
            }
        },
    )

    id: Text = Field(
        min_length=1,
        max_length=256,
        description="Document id: no '/', control characters, or surrounding spaces.",
    )
    title: Text | None = Field(default=None, max_length=1000)
    text: Text = Field(min_length=1, description="Article text; cleaned as `rag index` does.")
    date: Text | None = Field(
        default=None, max_length=100, description="Publication date, e.g. 2024-05-02."
    )
    url: Text | None = Field(default=None, max_length=2000)

    @field_validator("id")
    @classmethod
    def _id_is_addressable(cls, value: str) -> str:
        check_document_id(value)
        return value


class DocumentsIn(BaseModel):
    """POST /documents as JSON (or send files as multipart/form-data field `files`)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "example": {"documents": [DocumentIn.model_config["json_schema_extra"]["example"]]}
        },
    )

    documents: list[DocumentIn] = Field(
        min_length=1, description="At most RAG_MAX_DOCUMENTS_PER_REQUEST (100) documents."
    )


class PathIn(BaseModel):
    """POST /documents/from-path: a file or folder on the server, inside RAG_CORPUS_ROOTS."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"path": "/srv/corpus/2024/may"}}
    )

    path: Text = Field(
        min_length=1,
        max_length=4096,
        description="An absolute path, or one relative to the corpus roots (the first that "
        "holds it). It must lie inside a root once `..` and symlinks are resolved. A folder "
        "is read recursively, as `rag index` reads it.",
    )

    @field_validator("path")
    @classmethod
    def _no_control_characters(cls, value: str) -> str:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must not contain control characters")
        return value


class WriteResult(BaseModel):
    """The documents written or deleted, and the new index generation's build report."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "ids": ["tashkent-rare-metals"],
                "report": {
                    **BuildReport.model_config["json_schema_extra"]["example"],
                    "path": "gen-000002",  # over HTTP, no server paths
                },
            }
        }
    )

    ids: list[str]
    report: BuildReport


class DocumentPage(BaseModel):
    """One page of the indexed documents, ordered by id."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "total": 5,
                "offset": 0,
                "limit": 20,
                "documents": [DocumentInfo.model_config["json_schema_extra"]["example"]],
            }
        }
    )

    total: int = Field(description="Documents in the index.")
    offset: int
    limit: int
    documents: list[DocumentInfo]


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"status": "ok"}})

    status: str = "ok"


class Readiness(BaseModel):
    """The loaded index: what it holds and when it was built."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "status": "ready",
                "generation": 1,
                "documents": 5,
                "chunks": 28,
                "model": EXAMPLE_MODEL,
                "retrieval_mode": "hybrid",
                "index_created": "2024-06-20T10:52:14+00:00",
                "build_seconds": 2.5,
                "answer_mode": "reader",
                "examples": ["What minerals does the Chirchik center target?"],
            }
        }
    )

    status: str = "ready"
    generation: int
    documents: int
    chunks: int
    model: str
    retrieval_mode: str
    index_created: str = Field(description="When the live index generation was built (UTC).")
    build_seconds: float | None = None
    answer_mode: str = Field(
        default="sentence",
        description="How /ask finds answers: `reader` (the trained reader is loaded) or "
        "`sentence`.",
    )
    examples: list[str] = Field(
        default_factory=list,
        description="Example questions for the loaded index (the web page's 'Try:'): "
        "RAG_EXAMPLE_QUESTIONS, or the bundled corpus's when the index holds it; else none.",
    )


def check_document_id(value: str) -> None:
    """Raise ValueError unless `value` can be a document id: one URL path segment."""
    if not value or len(value) > 256:
        raise ValueError("must have 1 to 256 characters")
    if value != value.strip() or value in {".", ".."}:
        raise ValueError("must not be '.', '..' or have spaces around it")
    if "/" in value or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain '/' or control characters")
