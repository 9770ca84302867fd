"""The BM25 side: a bm25s index over the same chunks as the vector index.

Persisted with bm25s's own format (numpy arrays without pickle, and JSON) plus the
vector id of each position, so lexical and dense hits name chunks the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from index.analysis import analyze
from index.errors import IndexCorrupt

logger = logging.getLogger(__name__)

IDS_FILE = "vector_ids.npy"
logging.getLogger("bm25s").setLevel(logging.WARNING)


class LexicalIndex:
    def __init__(self, retriever: bm25s.BM25 | None, vector_ids: np.ndarray):
        self.retriever = retriever
        self.vector_ids = vector_ids.astype(np.int64)
        self._order = np.argsort(self.vector_ids)
        self._sorted = self.vector_ids[self._order]

    @classmethod
    def build(cls, texts: Sequence[str], vector_ids: Sequence[int]) -> LexicalIndex:
        ids = np.asarray(vector_ids, dtype=np.int64)
        if not len(texts):
            return cls(None, ids)
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        # An empty token list would be dropped by bm25s and shift positions: keep a placeholder.
        tokens = [analyze(t) or ["\x00"] for t in texts]
        retriever.index(tokens, show_progress=False)
        return cls(retriever, ids)

    def save(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / IDS_FILE, self.vector_ids, allow_pickle=False)
        if self.retriever is not None:
            self.retriever.save(str(directory), show_progress=False, allow_pickle=False)
        return sorted(p for p in directory.iterdir() if p.is_file())

    @classmethod
    def load(cls, directory: Path) -> LexicalIndex:
        try:
            ids = np.load(directory / IDS_FILE, allow_pickle=False)
            retriever = None
            if len(ids):
                retriever = bm25s.BM25.load(str(directory), show_progress=False, allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"BM25 index in {directory} is unreadable: {exc}") from exc
        return cls(retriever, ids)

    def __len__(self) -> int:
        return len(self.vector_ids)

    def positions(self, vector_ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(vector_ids, dtype=np.int64)
        where = np.searchsorted(self._sorted, ids)
        where = np.clip(where, 0, max(len(self._sorted) - 1, 0))
        if len(ids) and not np.array_equal(self._sorted[where], ids):
            raise KeyError("vector id not in the BM25 index")
        return self._order[where]

    def document_frequencies(self) -> dict[str, int]:
        """Every indexed term with the number of chunks holding it."""
        if self.retriever is None:
            return {}
        counts = np.diff(np.asarray(self.retriever.scores["indptr"]))
        return {
            term: int(counts[i])
            for term, i in self.retriever.vocab_dict.items()
            if i < len(counts) and term != "\x00"
        }

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk, by position (zeros when no query term is indexed)."""
        terms = analyze(query)
        if self.retriever is None or not terms:
            return np.zeros(len(self.vector_ids), dtype=np.float32)
        return np.asarray(self.retriever.get_scores(terms), dtype=np.float32)

    def search(
        self, query: str, k: int, allowed_ids: Sequence[int] | None = None
    ) -> list[tuple[int, float]]:
        """Top-k (vector_id, score) with a positive score, best first."""
        scores = self.scores(query)
        if allowed_ids is not None:
            mask = np.zeros(len(scores), dtype=bool)
            mask[self.positions(allowed_ids)] = True
            scores = np.where(mask, scores, 0.0)
        k = min(k, len(scores))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.vector_ids[p]), float(scores[p])) for p in top if scores[p] > 0]

    def term_scores(self, term: str) -> np.ndarray:
        """BM25 score of every chunk, by position, for one analysed term alone (zeros when the
        term is not indexed). A query's score is the sum over its terms."""
        if self.retriever is None or term not in self.retriever.vocab_dict:
            return np.zeros(len(self.vector_ids), dtype=np.float32)
        return np.asarray(self.retriever.get_scores([term]), dtype=np.float32)

    def idf(self, term: str) -> float:
        """BM25's idf of an analysed term, log(1 + (N - df + 0.5) / (df + 0.5)); a term no
        chunk holds gets the highest (df 0)."""
        n = len(self.vector_ids)
        df = 0
        if self.retriever is not None and term in self.retriever.vocab_dict:
            indptr = self.retriever.scores["indptr"]
            t = self.retriever.vocab_dict[term]
            df = int(indptr[t + 1] - indptr[t])
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))
