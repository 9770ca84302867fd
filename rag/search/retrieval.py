"""Ranking: dense, BM25, or both fused.

`fuse` is pure. Hybrid retrieval takes the union of the dense and BM25 top lists, scores
every candidate exactly on both signals (so a chunk missing from one list is not treated
as scoring zero there), and ranks by a convex combination of the min-max normalised
scores, or by reciprocal rank fusion.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import numpy as np

from index import Chunk, ChunkFilter, Index
from index.analysis import STOP_WORDS, analyze, stem, words
from rag.models import Passage
from rag.text.terms import deletion_index, deletions

MODES = ("dense", "bm25", "hybrid")
FUSIONS = ("convex", "rrf")


def _ranks(scores: np.ndarray) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.ones_like(x) * (1.0 if hi > 0 else 0.0)


def fuse(
    dense: np.ndarray,
    bm25: np.ndarray,
    *,
    method: str = "convex",
    dense_weight: float = 0.5,
    rrf_k: int = 60,
) -> np.ndarray:
    """Fused scores of candidates given their dense and BM25 scores."""
    if method not in FUSIONS:
        raise ValueError(f"unknown fusion {method!r}: use one of {FUSIONS}")
    if len(dense) == 0:
        return np.zeros(0, dtype=np.float32)
    if method == "rrf":
        return dense_weight / (rrf_k + _ranks(dense)) + (1 - dense_weight) / (rrf_k + _ranks(bm25))
    if method == "convex":
        return dense_weight * _minmax(dense) + (1 - dense_weight) * _minmax(bm25)
    raise ValueError(f"unknown fusion {method!r}: use one of {FUSIONS}")


def rank_chunks(
    index: Index,
    question: str,
    query_vector: np.ndarray,
    k: int,
    *,
    mode: str = "hybrid",
    allowed_ids: Sequence[int] | None = None,
    where: ChunkFilter | None = None,
    depth: int = 50,
    fusion: str = "convex",
    dense_weight: float = 0.5,
) -> list[Passage]:
    """The top-k chunks for a question by `mode`, as passages carrying both signals' scores
    and ranks (1-based among the candidates) beside the mode's own score.

    `allowed_ids` restricts both signals; `where`, the same filter as metadata, lets a
    vector store that keeps metadata (Milvus) filter the dense search in the database."""
    pool = max(k, depth) if mode == "hybrid" else k
    candidates: dict[int, Chunk] = {}
    if mode in ("dense", "hybrid"):
        for hit in index.search(query_vector[None, :], pool, allowed_ids, where=where)[0]:
            candidates[hit.chunk.vector_id] = hit.chunk
    lexical_query = question
    if mode in ("bm25", "hybrid"):
        lexical_query = corrected_query(index, question)
        for hit in index.search_lexical(lexical_query, pool, allowed_ids):
            candidates.setdefault(hit.chunk.vector_id, hit.chunk)
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r}: use one of {MODES}")
    chunks = list(candidates.values())
    if not chunks:
        return []
    dense = index.dense_scores(query_vector, chunks)
    lexical = index.lexical_scores(lexical_query, chunks)
    if mode == "dense":
        score = dense
    elif mode == "bm25":
        score = lexical
    else:
        score = fuse(dense, lexical, method=fusion, dense_weight=dense_weight)
    dense_ranks, bm25_ranks = _ranks(dense), _ranks(lexical)
    order = np.argsort(-score, kind="stable")[:k]
    doc_ids = sorted({chunks[i].doc_id for i in order})
    summaries = {s.id: s for s in index.store.summaries(ids=doc_ids)}
    return [
        Passage(
            rank=rank,
            chunk_id=chunks[i].id,
            doc_id=chunks[i].doc_id,
            title=summaries[chunks[i].doc_id].title,
            date=summaries[chunks[i].doc_id].date,
            start=chunks[i].start,
            end=chunks[i].end,
            page=chunks[i].page,
            text=chunks[i].text,
            score=round(float(score[i]), 6),
            dense_score=round(float(dense[i]), 6),
            bm25_score=round(float(lexical[i]), 6),
            dense_rank=int(dense_ranks[i]),
            bm25_rank=int(bm25_ranks[i]),
        )
        for rank, i in enumerate(order, start=1)
    ]


# typo-tolerant lexical queries

MIN_CORRECTED_LENGTH = 7  # shorter stems are too often real words one edit from another


class Vocabulary:
    """The BM25 index's terms, for finding the indexed term one edit away from a misspelt
    query word (symmetric deletes: a word and a term match when deleting at most one
    character from each makes them equal, which covers one insertion, deletion or
    substitution)."""

    def __init__(self, frequencies: dict[str, int]):
        self.frequencies = frequencies
        self._deletes: dict[str, frozenset[str]] | None = None
        self._lock = threading.Lock()

    def _index(self) -> dict[str, frozenset[str]]:
        with self._lock:
            if self._deletes is None:
                self._deletes = deletion_index(self.frequencies, MIN_CORRECTED_LENGTH - 1)
            return self._deletes

    def correct(self, term: str) -> str | None:
        """The most frequent indexed term one edit from `term`, or None when `term` is
        indexed, short, or has no such neighbour."""
        if term in self.frequencies or len(term) < MIN_CORRECTED_LENGTH:
            return None
        deletes = self._index()
        found = {t for variant in deletions(term) for t in deletes.get(variant, ())}
        found |= {v for v in deletions(term) if v in self.frequencies}
        if not found:
            return None
        return max(sorted(found), key=lambda t: self.frequencies[t])


_vocabularies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_vocabularies_lock = threading.Lock()


def vocabulary(index: Index) -> Vocabulary:
    """The vocabulary of an index's BM25 side, built once per loaded index."""
    with _vocabularies_lock:
        vocab = _vocabularies.get(index.lexical)
        if vocab is None:
            vocab = _vocabularies[index.lexical] = Vocabulary(index.lexical.document_frequencies())
        return vocab


def corrected_query(index: Index, question: str) -> str:
    """The question with, for each word the BM25 index does not know, the indexed term one
    edit away appended ("Chirchk" -> also "chirchik"): BM25 alone fails on typos."""
    vocab = vocabulary(index)
    if not vocab.frequencies:
        return question
    extra = []
    for word in words(question):
        if word in STOP_WORDS:
            continue
        fixed = vocab.correct(stem(word))
        # the appended term must analyse to itself to reach the index unchanged
        if fixed is not None and fixed not in extra and analyze(fixed) == [fixed]:
            extra.append(fixed)
    return f"{question} {' '.join(extra)}" if extra else question
