"""Retrieval for many questions at once, and document rankings from chunk rankings.

Every question is embedded in one `encode` call. Dense retrieval then searches FAISS with
all of them at once; other modes go through `Engine.retrieve` one question at a time, with
the precomputed vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.engine import Engine
from rag.evaluation.progress import track

logger = logging.getLogger(__name__)

# Chunk ids looked up in one SQLite statement stay well under its variable limit.
_MAX_IDS_PER_LOOKUP = 20_000


@dataclass(frozen=True, slots=True)
class ChunkHit:
    doc_id: str
    chunk_id: str
    score: float


class PrecomputedQueries:
    """An embedder that answers `encode_query` from vectors computed in one batch, and
    delegates everything else to the real one."""

    def __init__(self, embedder: Any, texts: Sequence[str], vectors: np.ndarray):
        self._embedder = embedder
        self._vectors = dict(zip(texts, vectors, strict=True))

    def encode_query(self, text: str) -> np.ndarray:
        vector = self._vectors.get(text)
        return vector if vector is not None else self._embedder.encode_query(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)


def engine_variant(engine: Engine, **updates: Any) -> Engine:
    """The same index and model with some settings changed (mode, k limit, threshold)."""
    if not updates:
        return engine
    keep_reader = (
        not {"answer_mode", "reader_path", "reader_threads", "reader_cache_windows"}
        & updates.keys()
    )
    return type(engine)(
        engine.settings.model_copy(update=updates),
        engine.index,
        engine.embedder,
        reader=engine.reader if keep_reader else True,
    )


def forget_cached_queries(engine: Engine) -> None:
    """Drop the embedder's cached query vectors, so that a run's latencies include embedding
    each question even when an earlier run (another mode) asked the same questions."""
    embedder = engine.embedder
    clear = getattr(embedder, "clear_cache", None)
    if callable(clear):
        clear()
        return
    cache = getattr(embedder, "_cache", None)  # Embedder keeps an LRU of query vectors
    lock = getattr(embedder, "_cache_lock", None)
    if cache is not None and lock is not None:
        with lock:
            cache.clear()


def rank_documents(hits: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """Documents ranked by their best chunk's score (ties: first seen first)."""
    best: dict[str, float] = {}
    for doc_id, score in hits:
        if doc_id not in best or score > best[doc_id]:
            best[doc_id] = score
    return sorted(best.items(), key=lambda item: -item[1])


def retrieve_chunks(
    engine: Engine,
    questions: Sequence[str],
    k: int,
    *,
    mode: str | None = None,
    progress: bool = False,
) -> list[list[ChunkHit]]:
    """The top-`k` chunks for each question, by `mode` (default: the engine's)."""
    mode = mode or engine.settings.retrieval_mode
    if not questions:
        return []
    if mode == "dense":
        return _dense_batch(engine, questions, k, progress=progress)
    if k > engine.settings.max_k:
        engine = engine_variant(engine, max_k=k)
    # Embed every question in one batch, then let the engine rank with those vectors.
    vectors = engine.embedder.encode_queries([q.strip() for q in questions], progress=progress)
    embedder = PrecomputedQueries(engine.embedder, [q.strip() for q in questions], vectors)
    engine = type(engine)(engine.settings, engine.index, embedder)
    out = []
    for q in track(questions, f"retrieve ({mode})", bar=progress):
        passages = engine.retrieve(q, k, mode=mode)
        out.append([ChunkHit(p.doc_id, p.chunk_id, p.score) for p in passages])
    return out


def _dense_batch(
    engine: Engine, questions: Sequence[str], k: int, *, progress: bool
) -> list[list[ChunkHit]]:
    index = engine.index
    vectors = engine.embedder.encode_queries([q.strip() for q in questions], progress=progress)
    step = max(1, _MAX_IDS_PER_LOOKUP // max(1, k))
    out: list[list[ChunkHit]] = []
    for i in range(0, len(questions), step):
        for hits in index.search(vectors[i : i + step], k):
            out.append([ChunkHit(h.chunk.doc_id, h.chunk.id, h.score) for h in hits])
    return out


def retrieve_documents(
    engine: Engine,
    questions: Sequence[str],
    n_docs: int,
    *,
    depth: int | None = None,
    mode: str | None = None,
    progress: bool = False,
) -> list[list[tuple[str, float]]]:
    """The top-`n_docs` documents for each question, each scored by its best chunk.

    `depth` chunks are retrieved first (default 2 * n_docs); questions whose chunks name fewer
    than `n_docs` documents are retrieved again with twice the depth until they fill up or
    the index is exhausted, so the ranking is exact: a document left out cannot have a chunk
    scoring above the deepest chunk retrieved.
    """
    depth = depth or 2 * n_docs
    total = len(engine.index)
    first = retrieve_chunks(engine, questions, depth, mode=mode, progress=progress)
    rankings = [rank_documents((h.doc_id, h.score) for h in hits) for hits in first]
    # How deep each question has been searched; fewer hits than asked: nothing left to find.
    retrieved = [depth if len(hits) >= depth else total for hits in first]
    while True:
        short = [i for i, r in enumerate(rankings) if len(r) < n_docs and retrieved[i] < total]
        if not short:
            break
        depth = min(2 * depth, total)
        logger.debug("retrieving %d chunks again for %d questions", depth, len(short))
        again = retrieve_chunks(engine, [questions[i] for i in short], depth, mode=mode)
        for i, hits in zip(short, again, strict=True):
            retrieved[i] = depth if len(hits) >= depth else total  # fewer: nothing left to find
            rankings[i] = rank_documents((h.doc_id, h.score) for h in hits)
    return [r[:n_docs] for r in rankings]
