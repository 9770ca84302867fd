"""The HTTP API: `create_app()` assembles it; the lifespan loads the model and the index once.

Run it with `rag serve`, or `uvicorn api.main:create_app --factory`. Settings come from
RAG_* environment variables (rag.config.Settings), so every worker gets the same ones.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.observability import (
    Metrics,
    RequestObservability,
    configure_logging,
    worker_started,
    worker_stopping,
)
from api.observability import router as metrics_router
from api.ratelimit import RateLimit, RequestTimeout, document_limits
from api.routes import ask, docs, documents, health, web
from api.schemas import DocumentsIn
from api.state import Service
from rag.config import Settings
from rag.embed.embedding import Embedder

logger = logging.getLogger(__name__)

DESCRIPTION = """
Answers questions from a folder of articles, citing the exact passages: every citation's
`quote` is `text[start:end]` of its document (`GET /documents/{doc_id}`).

Errors are JSON: `{"error": {"code": ..., "message": ...}}`. Writes need
`Authorization: Bearer <RAG_API_KEY>`; reads need a key only when RAG_READ_API_KEY is set.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    settings: Settings = app.state.settings
    configure_logging(settings.log_json)
    logger.info(
        "starting: index %s; writes %s; reads %s; server-side paths %s",
        settings.index_path,
        "need the API key" if settings.api_key else "disabled (no RAG_API_KEY)",
        "need a key" if settings.read_api_key else "open",
        ", ".join(map(str, settings.corpus_roots)) or "none (no RAG_CORPUS_ROOTS)",
    )
    for root in settings.corpus_roots:
        if not root.expanduser().is_dir():
            logger.warning(
                "corpus root %s is not a folder (yet): nothing under it can be read", root
            )
    if settings.embedding_backend == "torch":  # the ONNX backends never import torch
        await anyio.to_thread.run_sync(_limit_torch_threads, settings.torch_threads)
    worker_started()
    await anyio.to_thread.run_sync(service.start)
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(service.close)
        worker_stopping()


def create_app(settings: Settings | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    """The app; `embedder`: an already loaded model to serve with instead of loading one."""
    settings = settings or Settings()
    app = FastAPI(
        title="rag-cited",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by routes/docs.py, from local files
        redoc_url=None,
        openapi_tags=[
            {"name": "questions", "description": "Answers with citations, and retrieval."},
            {"name": "documents", "description": "The indexed documents and their chunks."},
            {"name": "health", "description": "Liveness and readiness probes."},
        ],
    )
    app.state.settings = settings
    app.state.service = Service(settings, embedder=embedder)
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        max_body_bytes=settings.max_body_bytes,
        route_limits={("POST", "/documents"): settings.max_upload_bytes},
    )
    # Added last, run first: request id, access log and metrics; then the rate; then the time.
    app.add_middleware(RequestTimeout, seconds=settings.request_timeout_seconds)
    app.add_middleware(
        RateLimit,
        per_minute=settings.rate_limit_per_minute,
        burst=settings.rate_limit_burst,
        shared_dir=settings.run_dir,
    )
    app.state.metrics = Metrics(app.state.service)
    app.add_middleware(RequestObservability, metrics=app.state.metrics, routes=lambda: app.routes)
    app.include_router(ask.router)
    app.include_router(documents.reads)
    app.include_router(documents.writes)
    app.include_router(health.router)
    app.include_router(metrics_router)
    web.install(app)  # the page at / and its files under /static
    docs.install(app)  # /docs with Swagger UI's files from the package
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """The generated schema, plus the models of the hand-described POST /documents body."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        models = DocumentsIn.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(models.pop("$defs", {}))
        components["DocumentsIn"] = models
        app.openapi_schema = document_limits(schema)
    return app.openapi_schema


def _limit_torch_threads(n: int) -> None:
    """Concurrent requests each run the model; torch's own thread pool on top of that
    oversubscribes the CPUs (a query took 1 s instead of 50 ms on 2 busy cores)."""
    import torch

    torch.set_num_threads(n)


def _version() -> str:
    try:
        return version("rag-cited")
    except PackageNotFoundError:
        return "0"
