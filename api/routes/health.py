"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from api.concurrency import run_in_thread
from api.deps import EngineDep, SettingsDep
from api.schemas import Health, Readiness, error_responses

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process answers. Says nothing about the index."""
    return Health()


@router.get("/ready", response_model=Readiness, responses=error_responses(503))
async def ready(engine: EngineDep, settings: SettingsDep) -> Readiness:
    """Readiness: the model and an index are loaded, and its vector store answers (a Milvus
    server is up, with the collection). 503, with what to do, when not."""
    index = engine.index  # one generation for the check and the description
    await run_in_thread(index.check_available)  # StoreUnavailable: 503 index_unavailable
    m = index.manifest
    return Readiness(
        generation=m.generation,
        documents=m.n_documents,
        chunks=m.n_chunks,
        model=m.model,
        retrieval_mode=settings.retrieval_mode,
        index_created=m.created,
        build_seconds=m.build_seconds,
        answer_mode="reader" if engine.reader is not None else "sentence",
        examples=engine.example_questions(),
    )
