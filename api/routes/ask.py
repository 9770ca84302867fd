"""Questions: answers with citations, and the ranked passages behind them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from api.concurrency import run_in_thread
from api.deps import EngineDep, ReadAccess
from api.errors import error_body
from api.schemas import GENERATOR_ERRORS, ErrorResponse, error_responses
from rag.answer.generator import GeneratorError
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
_ASK_ERRORS = {
    **_ERRORS,
    422: {
        "model": ErrorResponse,
        "description": "Invalid request: malformed JSON, missing or wrong fields, k out of "
        "range; or `generate: true` on a server with no generator configured "
        "(`generator_not_configured`).",
    },
    **GENERATOR_ERRORS,
}

_ASK_EXAMPLES = {
    "chirchik": {"summary": "A question", "value": {"question": EXAMPLE_QUESTION}},
    "filtered": {
        "summary": "Fewer passages, one document",
        "value": {"question": EXAMPLE_QUESTION, "k": 3, "filters": {"doc_ids": [EXAMPLE_DOC]}},
    },
    "generated": {
        "summary": "A generated answer, each sentence checked against its citations",
        "value": {"question": EXAMPLE_QUESTION, "generate": True},
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


@router.post("/ask", response_model=AskResponse, responses=_ASK_ERRORS)
async def ask(
    request: Annotated[AskRequest, Body(openapi_examples=_ASK_EXAMPLES)], engine: EngineDep
) -> Response:
    """Answer a question from the index, citing the exact passages (character offsets into
    GET /documents/{doc_id}'s text) the answer rests on. `answerable` is false, with no answer,
    when the evidence is too weak.

    With `generate: true` the configured generator writes the answer from numbered sentences
    of the best passages; every generated sentence is checked against the sentences it cites
    (`support`, `generation.sentences`), unsupported ones are dropped or marked
    (RAG_GENERATOR_UNSUPPORTED), and with none supported the extractive answer is given
    (`generation.status: fallback`). A generator that fails gives 502 or 504 with the
    extractive answer in `extractive`."""

    def answer() -> Response:
        return json_response(
            engine.ask(
                request.question,
                k=request.k,
                filters=request.filters,
                mode=request.mode,
                generate=request.generate,
            )
        )

    return await run_in_thread(answer)


_STREAM_DESCRIPTION = """Server-sent events: with `generate: true`, `delta` events (`{"text": ...}`)
as the generator writes, then one `answer` event with the whole `AskResponse`, every sentence
checked (the checks need the whole text, so they come at the end); a generator failure after
the stream started is an `error` event with the body a 502/504 would have. Without
`generate` (or when the extractive stage abstains): the `answer` event only."""


# One server-sent event; `data` is JSON (`delta`: {"text"}, `answer`: AskResponse, `error`:
# GeneratorErrorResponse).
_SSE_EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["delta", "answer", "error"]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}


@router.post(
    "/ask/stream",
    responses={
        **_ASK_ERRORS,
        200: {
            "content": {"text/event-stream": {"schema": _SSE_EVENT}},
            "description": _STREAM_DESCRIPTION,
        },
    },
    response_class=StreamingResponse,
)
async def ask_stream(
    request: Annotated[AskRequest, Body(openapi_examples=_ASK_EXAMPLES)], engine: EngineDep
) -> StreamingResponse:
    """POST /ask as server-sent events: the generated answer's text as it is written, then
    the checked answer (see the 200 response)."""

    def start():
        return engine.ask_stream(
            request.question,
            k=request.k,
            filters=request.filters,
            mode=request.mode,
            generate=request.generate,
        )

    response, deltas, finish = await run_in_thread(start)

    def events() -> Iterator[str]:
        if deltas is None or finish is None:
            yield _event("answer", response.model_dump_json())
            return
        text: list[str] = []
        try:
            for delta in deltas:
                text.append(delta)
                yield _event("delta", json.dumps({"text": delta}, ensure_ascii=False))
            yield _event("answer", finish("".join(text)).model_dump_json())
        except GeneratorError as exc:
            body = error_body(exc.code, exc.message)
            body["extractive"] = response.model_dump(mode="json")
            yield _event("error", json.dumps(body, ensure_ascii=False))

    # A sync iterator: Starlette runs each step in a worker thread.
    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


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
