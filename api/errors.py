"""Errors as HTTP responses: every error is `{"error": {"code", "message", "details"?}}`.

The core raises its own exceptions (rag.errors); this module maps them to status codes.
`ApiError` subclasses are the API's own refusals (authentication, limits, readiness).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag import errors as core
from rag.answer.generator import GeneratorError, GeneratorNotConfigured, GeneratorTimeout
from rag.indexing import is_remote_store

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    502: "bad_gateway",
    503: "unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """A refusal with its own status and code; the message is safe to show to clients."""

    status_code = 400
    code = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAuthenticated(ApiError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidDocuments(ApiError):
    status_code = 422
    code = "invalid_documents"


class IndexNotLoaded(ApiError):
    status_code = 503
    code = "index_not_loaded"
    headers = {"Retry-After": "10"}


def without_paths(message: str, *places: str | Path | None) -> str:
    """`message` with the server's own paths (the index directory, a milvus-lite file) said
    as `<index>`: clients need what went wrong, not where the server keeps its files."""
    names: set[str] = set()
    for place in places:
        if place is None or str(place) in ("", "."):
            continue
        names.add(str(place))
        if not is_remote_store(str(place)):
            names.add(str(Path(place).expanduser().resolve()))
    for name in sorted(names, key=len, reverse=True):  # the longest (absolute) first
        message = message.replace(name, "<index>")
    return message


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = error_body(code, message, details)
    return JSONResponse(body, status_code=status_code, headers=headers)


def _shorten(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic's errors without their inputs (which can be huge or secret) or contexts."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e["type"]}
        for e in errors[:20]
    ]


def validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors[:5]:
        if e.get("type") == "json_invalid":
            reason = (e.get("ctx") or {}).get("error", "invalid JSON")
            position = e["loc"][-1] if e.get("loc") else None
            where = f" (at character {position})" if isinstance(position, int) else ""
            parts.append(f"the body is not valid JSON: {reason}{where}")
            continue
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more")
    return "; ".join(parts) or "invalid request"


async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return error_response(exc.status_code, exc.code, exc.message, headers=exc.headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    return error_response(
        422, "invalid_request", validation_message(errors), validation_details(errors)
    )


# FastAPI's answer to a JSON body that json.loads fails on with something other than a
# JSONDecodeError (bytes that are not UTF-8, nesting too deep): a 400 unlike every other
# malformed body, which is a 422.
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        return error_response(
            422, "invalid_request", "the body is not valid JSON: it is not UTF-8 text, or too deep"
        )
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.url.path!r}: see /docs for the API"
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def _question_too_long(request: Request, exc: core.QuestionTooLong) -> JSONResponse:
    return error_response(413, "question_too_long", str(exc))


async def _invalid_parameter(request: Request, exc: core.InvalidParameter) -> JSONResponse:
    return error_response(422, "invalid_request", str(exc))


async def _invalid_question(request: Request, exc: core.InvalidQuestion) -> JSONResponse:
    return error_response(422, "invalid_question", str(exc))


async def _unknown_chunk(request: Request, exc: core.UnknownChunk) -> JSONResponse:
    return error_response(404, "unknown_chunk", f"no chunk with id {_shorten(exc.args[0])}")


async def _unknown_document(request: Request, exc: core.UnknownDocument) -> JSONResponse:
    return error_response(404, "unknown_document", f"no document with id {_shorten(exc.args[0])}")


# A vector store that is down may be back soon: clients are told when to try again, and a
# generation that could not load for it is loaded again after as long (api/state.py).
STORE_RETRY_SECONDS = 5
_STORE_RETRY_AFTER = {"Retry-After": str(STORE_RETRY_SECONDS)}


async def _index_error(request: Request, exc: core.IndexStoreError) -> JSONResponse:
    logger.error("index error on %s %s: %s", request.method, request.url.path, exc)
    settings = request.app.state.settings
    message = without_paths(str(exc), settings.index_path, settings.milvus_uri)
    headers = _STORE_RETRY_AFTER if isinstance(exc, core.StoreUnavailable) else None
    return error_response(503, "index_unavailable", message, headers=headers)


async def _corpus_error(request: Request, exc: ValueError) -> JSONResponse:
    return error_response(422, "invalid_documents", str(exc))


# A path the server will not read is forbidden (403) whether or not it exists, so a refusal
# tells nothing about the server's files; only inside a corpus root is a missing one a 404.
_CORPUS_PATH_STATUS: dict[type[core.CorpusPathError], tuple[int, str]] = {
    core.NoCorpusRoots: (403, "corpus_roots_not_set"),
    core.OutsideCorpusRoots: (403, "path_outside_corpus_roots"),
    core.CorpusPathNotFound: (404, "path_not_found"),
}


async def _corpus_path_error(request: Request, exc: core.CorpusPathError) -> JSONResponse:
    status, code = _CORPUS_PATH_STATUS.get(type(exc), (403, "forbidden"))
    return error_response(status, code, str(exc))


async def _model_not_available(request: Request, exc: core.ModelNotAvailable) -> JSONResponse:
    return error_response(503, "model_not_available", str(exc))


# A generator that cannot be reached or answers badly is the upstream's failure (502), a slow
# one a timeout (504); neither is the service's (500). `generate` on a server without a
# generator is a request this server does not take: 422, like an unknown retrieval mode.
_GENERATOR_STATUS = {
    GeneratorNotConfigured: 422,
    GeneratorTimeout: 504,
}


async def _generator_error(request: Request, exc: GeneratorError) -> JSONResponse:
    """The generator's failure, with the extractive answer it was to replace offered."""
    status = next((s for t, s in _GENERATOR_STATUS.items() if isinstance(exc, t)), 502)
    body = error_body(exc.code, exc.message)
    if exc.extractive is not None:
        body["extractive"] = exc.extractive.model_dump(mode="json")
    return JSONResponse(body, status_code=status)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Starlette's ServerErrorMiddleware re-raises after this, so the server logs the traceback.
    logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return error_response(500, "internal_error", "unexpected server error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(core.QuestionTooLong, _question_too_long)
    app.add_exception_handler(core.InvalidParameter, _invalid_parameter)
    app.add_exception_handler(core.InvalidQuestion, _invalid_question)
    app.add_exception_handler(core.UnknownChunk, _unknown_chunk)
    app.add_exception_handler(core.UnknownDocument, _unknown_document)
    app.add_exception_handler(core.IndexStoreError, _index_error)
    app.add_exception_handler(core.EmptyCorpus, _corpus_error)
    app.add_exception_handler(core.CorpusError, _corpus_error)
    app.add_exception_handler(core.CorpusPathError, _corpus_path_error)
    app.add_exception_handler(core.ModelNotAvailable, _model_not_available)
    app.add_exception_handler(GeneratorError, _generator_error)
    app.add_exception_handler(Exception, _unexpected)
