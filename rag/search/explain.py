"""Why a chunk was retrieved, and why an expected one was not.

Every chunk searched is scored exactly on both signals (dense: inner product with its stored
vector; BM25: bm25s over all chunks), so a chunk's rank by each signal is known however
deep it lies. The mode's own candidate pool is rebuilt as `rag.search.retrieval.rank_chunks`
builds it (hybrid: each signal's top max(k, depth), fused with `fuse`); its ranking is
what a chunk's `rank` refers to. `diagnose` is pure: ranks in, what lost the chunk out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from index import Chunk, Index, UnknownChunk, UnknownDocument
from index.analysis import analyze
from rag.config import Settings
from rag.models import ExplainedChunk, GoldExplanation, Passage
from rag.search.retrieval import fuse

logger = logging.getLogger(__name__)

_BATCH = 65_536  # vectors reconstructed at a time


def competition_ranks(scores: np.ndarray) -> np.ndarray:
    """1 + the number of strictly higher scores: tied scores share a rank."""
    ordered = np.sort(-np.asarray(scores, dtype=np.float64))
    return np.searchsorted(ordered, -np.asarray(scores, dtype=np.float64), side="left") + 1


def matched_terms(query_terms: Sequence[str], text: str) -> list[str]:
    """The query's terms (distinct, in query order) that the text contains."""
    present = set(analyze(text))
    return [t for t in dict.fromkeys(query_terms) if t in present]


def diagnose(
    *,
    mode: str,
    k: int,
    pool: int,
    rank: int | None,
    dense_rank: int,
    bm25_rank: int,
    bm25_score: float,
) -> tuple[list[str], str]:
    """What lost a chunk (`[]` when its rank is within k) and a sentence saying so."""
    ranks = f"dense rank {dense_rank}, BM25 rank {bm25_rank}" + (
        " (no term in common)" if bm25_score <= 0 else ""
    )
    if rank is not None and rank <= k:
        return [], f"retrieved at rank {rank} ({ranks})"
    if mode == "dense":
        return ["dense"], f"dense rank {dense_rank} is below k = {k}"
    if mode == "bm25":
        why = "it shares no term with the question" if bm25_score <= 0 else f"k = {k}"
        return ["bm25"], f"BM25 rank {bm25_rank} is below {why}"
    if rank is None:
        return (
            ["dense", "bm25"],
            f"not a candidate: neither signal ranked it in its top {pool} ({ranks})",
        )
    lost = [name for name, r in (("dense", dense_rank), ("bm25", bm25_rank)) if r > k]
    return lost or ["fusion"], f"a candidate, but fused rank {rank} is below k = {k} ({ranks})"


@dataclass(frozen=True, slots=True)
class Rankings:
    """Every searched chunk's scores and ranks, by BM25 position."""

    vector_ids: np.ndarray
    dense: np.ndarray
    bm25: np.ndarray
    dense_rank: np.ndarray
    bm25_rank: np.ndarray
    searched: np.ndarray  # bool mask: allowed by the filters
    mode_rank: dict[int, int]  # position -> rank among the mode's candidates
    mode_score: dict[int, float]
    term_bm25: dict[str, np.ndarray]  # each query term's BM25 scores alone, by position


def rank_everything(
    index: Index,
    question: str,
    query_vector: np.ndarray,
    *,
    k: int,
    mode: str,
    settings: Settings,
    allowed_ids: Sequence[int] | None = None,
) -> Rankings:
    lexical = index.lexical
    ids = lexical.vector_ids
    bm25 = lexical.scores(question).astype(np.float64)
    vector = np.asarray(query_vector, dtype=np.float32)
    dense = np.concatenate(
        [
            index.vectors_for_ids(ids[i : i + _BATCH]) @ vector
            for i in range(0, max(len(ids), 1), _BATCH)
        ]
    ).astype(np.float64)[: len(ids)]
    searched = np.ones(len(ids), dtype=bool)
    if allowed_ids is not None:
        searched[:] = False
        if len(allowed_ids):
            searched[lexical.positions(allowed_ids)] = True
    masked_dense = np.where(searched, dense, -np.inf)
    masked_bm25 = np.where(searched, bm25, -np.inf)
    dense_rank, bm25_rank = competition_ranks(masked_dense), competition_ranks(masked_bm25)

    # Dense and BM25 rank everything (a deeper k would reach any chunk); hybrid fuses a pool.
    pool = max(k, settings.fusion_depth) if mode == "hybrid" else len(ids)
    by_dense = [int(p) for p in np.argsort(-masked_dense, kind="stable")[:pool] if searched[p]]
    by_bm25 = [
        int(p)
        for p in np.argsort(-masked_bm25, kind="stable")[:pool]
        if searched[p] and bm25[p] > 0
    ]
    if mode == "dense":
        candidates, score = by_dense, dense[by_dense]
    elif mode == "bm25":
        candidates, score = by_bm25, bm25[by_bm25]
    else:
        candidates = list(dict.fromkeys(by_dense + by_bm25))
        score = fuse(  # in float32, as retrieval fuses, so near ties break the same way
            dense[candidates].astype(np.float32),
            bm25[candidates].astype(np.float32),
            method=settings.fusion,
            dense_weight=settings.dense_weight,
        )
    order = np.argsort(-np.asarray(score), kind="stable")
    mode_rank = {candidates[i]: r for r, i in enumerate(order, start=1)}
    mode_score = {candidates[i]: float(score[i]) for i in range(len(candidates))}
    terms = {t: lexical.term_scores(t) for t in dict.fromkeys(analyze(question))}
    return Rankings(ids, dense, bm25, dense_rank, bm25_rank, searched, mode_rank, mode_score, terms)


def explain_chunk(
    chunk: Chunk,
    title: str,
    rankings: Rankings,
    position: int,
    query_terms: Sequence[str],
    *,
    k: int,
    rank: int | None = None,
    score: float | None = None,
) -> ExplainedChunk:
    """`rank` and `score`, when given, are the real retrieval's (they override the rebuilt
    pool's, which agree with them for an exact index)."""
    rank = rank if rank is not None else rankings.mode_rank.get(position)
    if score is None:
        score = rankings.mode_score.get(position)
    matched = matched_terms(query_terms, chunk.text)
    counts = Counter(query_terms)
    term_scores = {t: round(counts[t] * float(rankings.term_bm25[t][position]), 6) for t in matched}
    return ExplainedChunk(
        rank=rank,
        chunk_id=chunk.id,
        doc_id=chunk.doc_id,
        title=title,
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
        retrieved=rank is not None and rank <= k,
        candidate=rank is not None,
        score=round(score, 6) if score is not None else None,
        dense_score=round(float(rankings.dense[position]), 6),
        dense_rank=int(rankings.dense_rank[position]),
        bm25_score=round(float(rankings.bm25[position]), 6),
        bm25_rank=int(rankings.bm25_rank[position]),
        matched_terms=matched,
        term_scores=term_scores,
    )


def gold_chunks(index: Index, gold: str) -> tuple[str, list[Chunk]]:
    """('chunk', [it]) for a chunk id, ('document', its chunks) for a document id."""
    try:
        return "chunk", [index.store.get_chunk(gold)]
    except UnknownChunk:
        pass
    index.store.get_summary(gold)  # raises UnknownDocument
    chunks = index.store.chunks_of(gold)
    if not chunks:
        raise UnknownDocument(gold)
    return "document", chunks


def explain_gold(
    index: Index,
    gold: str,
    rankings: Rankings,
    query_terms: Sequence[str],
    *,
    mode: str,
    k: int,
    pool: int,
) -> GoldExplanation:
    kind, chunks = gold_chunks(index, gold)
    positions = index.lexical.positions([c.vector_id for c in chunks])

    def best_first(item: tuple[Chunk, int]) -> tuple[float, int]:
        p = item[1]
        r = rankings.mode_rank.get(p)
        return (
            r if r is not None else np.inf,
            int(min(rankings.dense_rank[p], rankings.bm25_rank[p])),
        )

    chunk, position = min(zip(chunks, (int(p) for p in positions), strict=True), key=best_first)
    title = index.store.get_summary(chunk.doc_id).title
    explained = explain_chunk(chunk, title, rankings, position, query_terms, k=k)
    doc_rank = None
    if explained.rank is not None:
        ranked = sorted(rankings.mode_rank, key=rankings.mode_rank.__getitem__)
        vids = [int(rankings.vector_ids[p]) for p in ranked]
        by_vid = index.store.chunks_by_vector_ids(vids)
        docs = list(dict.fromkeys(by_vid[v].doc_id for v in vids if v in by_vid))
        doc_rank = docs.index(chunk.doc_id) + 1 if chunk.doc_id in docs else None
    if not rankings.searched[position]:
        lost, reason = ["filters"], "excluded by the request's filters"
    else:
        lost, reason = diagnose(
            mode=mode,
            k=k,
            pool=pool,
            rank=explained.rank,
            dense_rank=explained.dense_rank,
            bm25_rank=explained.bm25_rank,
            bm25_score=explained.bm25_score,
        )
        if kind == "document":
            reason += f" (its best chunk, {chunk.id})"
    return GoldExplanation(
        id=gold,
        kind=kind,
        retrieved=explained.retrieved,
        rank=explained.rank,
        doc_rank=doc_rank,
        lost_by=lost,
        reason=reason,
        chunk=explained,
    )


def explain_passages(
    index: Index,
    passages: Sequence[Passage],
    rankings: Rankings,
    query_terms: Sequence[str],
    *,
    k: int,
) -> list[ExplainedChunk]:
    """The retrieved passages, with their ranks in every ranking."""
    if not passages:
        return []
    chunks = index.store.chunks_by_vector_ids([_vector_id(p.chunk_id) for p in passages])
    positions = index.lexical.positions([_vector_id(p.chunk_id) for p in passages])
    out = []
    for p, position in zip(passages, positions, strict=True):
        rebuilt = rankings.mode_rank.get(int(position))
        if rebuilt != p.rank:
            logger.debug("rebuilt rank %s of %s differs from retrieval's %d", rebuilt, p, p.rank)
        out.append(
            explain_chunk(
                chunks[_vector_id(p.chunk_id)],
                p.title,
                rankings,
                int(position),
                query_terms,
                k=k,
                rank=p.rank,
                score=p.score,
            )
        )
    return out


def _vector_id(chunk_id: str) -> int:
    from index.records import vector_id

    return vector_id(chunk_id)


__all__ = [
    "Rankings",
    "competition_ranks",
    "diagnose",
    "explain_gold",
    "explain_passages",
    "matched_terms",
    "rank_everything",
]
