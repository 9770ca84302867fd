"""Questions: answers with citations, and the ranked passages behind them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import Response
from pydantic import BaseModel

from api.concurrency import run_in_thread
from api.deps import EngineDep, ReadAccess
from api.schemas import error_responses
from rag.models import (
    EXAMPLE_DOC,
    EXAMPLE_QUESTION,
    AskRequest,
    AskResponse,
    ExplainRequest,
    ExplainResponse,
    SearchRequest,
    SearchResponse,
)

router = APIRouter(tags=["questions"], dependencies=[ReadAccess])

_ERRORS = error_responses(401, 403, 413, 422, 503)

_ASK_EXAMPLES = {
    "chirchik": {"summary": "A question", "value": {"question": EXAMPLE_QUESTION}},
    "filtered": {
        "summary": "Fewer passages, one document",
        "value": {"question": EXAMPLE_QUESTION, "k": 3, "filters": {"doc_ids": [EXAMPLE_DOC]}},
    },
    "dated": {
        "summary": "Only articles from a date range",
        "value": {
            "question": EXAMPLE_QUESTION,
            "filters": {"date_from": "2024-03-01", "date_to": "2024-03-31"},
        },
    },
}
_EXPLAIN_EXAMPLES = {
    "chirchik": {"summary": "A question", "value": {"question": EXAMPLE_QUESTION}},
    "gold": {
        "summary": "Where the expected document ranked",
        "value": {"question": EXAMPLE_QUESTION, "k": 3, "gold": EXAMPLE_DOC},
    },
}
_SEARCH_EXAMPLES = {
    "chirchik": {"summary": "A question", "value": {"question": EXAMPLE_QUESTION, "k": 3}},
    "query": {"summary": "Keywords, as `query`", "value": {"query": "rare metals", "k": 5}},
}


def json_response(model: BaseModel) -> Response:
    """`model` as JSON, serialised in the handler's worker thread. Returned as a Response, it
    is sent as it is: FastAPI would otherwise validate the engine's model again (in a second
    worker-thread hop) and then serialise it on the event loop. `response_model` still
    documents the body."""
    return Response(model.model_dump_json(), media_type="application/json")


@router.post("/ask", response_model=AskResponse, responses=_ERRORS)
async def ask(
    request: Annotated[AskRequest, Body(openapi_examples=_ASK_EXAMPLES)], engine: EngineDep
) -> Response:
    """Answer a question from the index, citing the exact passages (character offsets into
    GET /documents/{doc_id}'s text) the answer rests on. `answerable` is false, with no answer,
    when the evidence is too weak."""

    def answer() -> Response:
        return json_response(
            engine.ask(request.question, k=request.k, filters=request.filters, mode=request.mode)
        )

    return await run_in_thread(answer)


@router.post("/search", response_model=SearchResponse, responses=_ERRORS)
async def search(
    request: Annotated[SearchRequest, Body(openapi_examples=_SEARCH_EXAMPLES)], engine: EngineDep
) -> Response:
    """The ranked chunks retrieved for a query, with their scores, without composing an
    answer: the view for inspecting retrieval."""

    def found() -> Response:
        return json_response(
            engine.search(request.question, k=request.k, filters=request.filters, mode=request.mode)
        )

    return await run_in_thread(found)


@router.post(
    "/explain",
    response_model=ExplainResponse,
    responses=error_responses(401, 403, 404, 413, 422, 503),
)
def explain(
    request: Annotated[ExplainRequest, Body(openapi_examples=_EXPLAIN_EXAMPLES)],
    engine: EngineDep,
) -> ExplainResponse:
    """Why each passage was retrieved: its dense, BM25 and fused scores, its rank by each over
    every chunk, and the question terms it matches. With `gold` (a document or chunk id):
    the rank it actually came and which signal lost it; 404 when no such id is indexed."""
    return engine.explain(
        request.question, k=request.k, filters=request.filters, mode=request.mode, gold=request.gold
    )
