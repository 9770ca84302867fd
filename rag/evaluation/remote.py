"""The bundled evaluation against a running service: every question goes to its `/ask` over
HTTP (and to `/search` for the retrieval metrics), so a deployment is checked, not only the
library. Latency is the client's: from sending the request to having the whole response."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from rag import metrics as m
from rag.evaluation.bundled import (
    RETRIEVAL_DEPTH,
    Prediction,
    group_predictions,
    misses,
    prediction,
    recall_curve,
    score_predictions,
)
from rag.evaluation.data import EvalDataError, QAItem, load_bundled
from rag.evaluation.progress import track
from rag.evaluation.report import EvalReport, RunResult
from rag.models import AskResponse, Citation


class ServiceError(RuntimeError):
    """The service could not be reached or refused a request; the message says which."""


def _post(client: httpx.Client, path: str, body: dict) -> dict:
    try:
        response = client.post(path, json=body)
    except httpx.HTTPError as exc:
        raise ServiceError(f"cannot reach {client.base_url}{path}: {exc}") from exc
    if response.status_code != 200:
        raise ServiceError(
            f"{client.base_url}{path} answered {response.status_code}: {response.text[:300]}"
        )
    return response.json()


def _get(client: httpx.Client, path: str) -> dict:
    try:
        response = client.get(path)
    except httpx.HTTPError as exc:
        raise ServiceError(f"cannot reach {client.base_url}{path}: {exc}") from exc
    if response.status_code != 200:
        raise ServiceError(
            f"{client.base_url}{path} answered {response.status_code}: {response.text[:300]}"
        )
    return response.json()


def predict_remote(
    client: httpx.Client,
    items: Sequence[QAItem],
    *,
    mode: str | None = None,
    k: int | None = None,
    progress: bool = False,
) -> list[Prediction]:
    """As `bundled.predict`, through the service's /search and /ask."""
    texts: dict[str, str] = {}

    def valid(c: Citation) -> bool:
        if c.doc_id not in texts:
            texts[c.doc_id] = _get(client, f"/documents/{c.doc_id}")["text"]
        return texts[c.doc_id][c.start : c.end] == c.quote

    extra = {key: v for key, v in (("mode", mode), ("k", k)) if v is not None}
    out = []
    for item in track(list(items), "ask (service)", bar=progress):
        # /ask first: asked after /search, it would find the question's vector in the
        # server's query cache and its latency would leave out the embedding.
        started = time.perf_counter()
        r = _post(client, "/ask", {"question": item.question, **extra})
        latency = (time.perf_counter() - started) * 1000
        search = _post(
            client, "/search", {"question": item.question, "k": RETRIEVAL_DEPTH, "mode": mode}
        )
        out.append(
            prediction(
                item,
                AskResponse.model_validate(r),
                retrieved_doc_ids=m.distinct(p["doc_id"] for p in search["passages"]),
                valid=valid,
                latency_ms=latency,
            )
        )
    return out


def evaluate_url(
    url: str,
    path: Path,
    *,
    split: str = "all",
    mode: str | None = None,
    k: int | None = None,
    verbose: bool = False,
    progress: bool = False,
    timeout: float = 60.0,
) -> tuple[EvalReport, dict[str, list[Prediction]]]:
    """The bundled-format question set at `path`, asked of the service at `url`."""
    items = load_bundled(path)
    chosen = [it for it in items if split == "all" or it.split == split]
    if not chosen:
        raise EvalDataError(f"{path} has no questions in split {split!r}")
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as client:
        ready = _get(client, "/ready")
        started = time.perf_counter()
        predictions = predict_remote(client, chosen, mode=mode, k=k, progress=progress)
    groups = group_predictions(predictions, split)
    primary = next(iter(groups.values()))
    run = RunResult(
        mode=mode or str(ready.get("retrieval_mode", "service")),
        metrics={name: score_predictions(group) for name, group in groups.items()},
        recall_curve=recall_curve(primary),
        misses=misses(primary) if verbose else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    report = EvalReport(
        kind="bundled",
        dataset=str(path),
        split=split,
        primary_group=split,
        n_questions=len(chosen),
        index_path=url,
        index_built=False,
        index_seconds=0.0,
        n_documents=int(ready.get("documents", 0)),
        n_chunks=int(ready.get("chunks", 0)),
        model=str(ready.get("model", "")),
        chunking={},
        k=k,
        runs=[run],
    )
    return report, {run.mode: predictions}
