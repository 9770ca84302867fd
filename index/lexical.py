"""The BM25 side: a bm25s index over the same chunks as the vector index.

Persisted with bm25s's own format (numpy arrays without pickle, and JSON) plus the
vector id of each position, so lexical and dense hits name chunks the same way, and each
chunk's analysed terms with a hash of its text: the next generation's build analyses only
the chunks whose text it has not seen (analysis is most of a rebuild's time; an upsert of
one document re-analyses that document, not the corpus).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import bm25s
import numpy as np

from index.analysis import analyze
from index.errors import IndexCorrupt

logger = logging.getLogger(__name__)

IDS_FILE = "vector_ids.npy"
# each position's terms (ids into TERMS_VOCAB, from TERMS_INDPTR[i] to TERMS_INDPTR[i + 1]) and
# its text's hash: what a later build reuses instead of analysing the same text again
TERMS_FILE, TERMS_INDPTR, TERMS_VOCAB, TEXT_HASHES = (
    "terms.npy",
    "terms_indptr.npy",
    "terms_vocab.npy",
    "text_hashes.npy",
)
EMPTY = "\x00"  # an empty token list would be dropped by bm25s and shift positions


def text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


logging.getLogger("bm25s").setLevel(logging.WARNING)


class LexicalIndex:
    def __init__(
        self,
        retriever: bm25s.BM25 | None,
        vector_ids: np.ndarray,
        terms: tuple[list[list[str]], list[int]] | None = None,
    ):
        self.retriever = retriever
        self.vector_ids = vector_ids.astype(np.int64)
        self._terms = terms  # (terms, text hashes) by position, when built here: for save()
        self._order = np.argsort(self.vector_ids)
        self._sorted = self.vector_ids[self._order]

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        vector_ids: Sequence[int],
        known: Mapping[int, list[str]] | None = None,
    ) -> LexicalIndex:
        """BM25 over `texts`. `known`: terms of texts analysed before, by `text_hash` (a
        base generation's `saved_terms`); the others are analysed here."""
        ids = np.asarray(vector_ids, dtype=np.int64)
        if not len(texts):
            return cls(None, ids)
        known = known or {}
        hashes = [text_hash(t) for t in texts]
        tokens = [known.get(h) or analyze(t) or [EMPTY] for t, h in zip(texts, hashes, strict=True)]
        reused = sum(h in known for h in hashes)
        logger.info(
            "BM25 over %d chunks (%d analysed, %d reused)", len(texts), len(texts) - reused, reused
        )
        retriever = bm25s.BM25(k1=1.2, b=0.75)
        retriever.index(tokens, show_progress=False)
        return cls(retriever, ids, (tokens, hashes))

    def save(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / IDS_FILE, self.vector_ids, allow_pickle=False)
        if self.retriever is not None:
            self.retriever.save(str(directory), show_progress=False, allow_pickle=False)
        if self._terms is not None:
            tokens, hashes = self._terms
            vocab: dict[str, int] = {}
            flat = [vocab.setdefault(w, len(vocab)) for ts in tokens for w in ts]
            indptr = np.cumsum([0, *map(len, tokens)], dtype=np.int64)
            np.save(directory / TERMS_FILE, np.asarray(flat, dtype=np.int32), allow_pickle=False)
            np.save(directory / TERMS_INDPTR, indptr, allow_pickle=False)
            np.save(directory / TERMS_VOCAB, np.asarray(list(vocab), dtype=str), allow_pickle=False)
            np.save(
                directory / TEXT_HASHES, np.asarray(hashes, dtype=np.uint64), allow_pickle=False
            )
        return sorted(p for p in directory.iterdir() if p.is_file())

    @staticmethod
    def saved_terms(directory: Path) -> dict[int, list[str]]:
        """The analysed terms a generation's BM25 index saved, by text hash; empty when it
        saved none (built before they were saved) or they cannot be read: a cache, never
        needed for correctness."""
        try:
            terms = np.load(directory / TERMS_FILE, allow_pickle=False)
            indptr = np.load(directory / TERMS_INDPTR, allow_pickle=False)
            vocab = np.load(directory / TERMS_VOCAB, allow_pickle=False)
            hashes = np.load(directory / TEXT_HASHES, allow_pickle=False)
            words = vocab[terms].tolist()
        except (OSError, ValueError, IndexError) as exc:
            if not isinstance(exc, FileNotFoundError):
                logger.warning("ignoring the saved BM25 terms in %s: %s", directory, exc)
            return {}
        if len(indptr) != len(hashes) + 1 or indptr[-1] != len(words):
            logger.warning("ignoring the saved BM25 terms in %s: inconsistent", directory)
            return {}
        bounds = indptr.tolist()
        return {int(h): words[bounds[i] : bounds[i + 1]] for i, h in enumerate(hashes.tolist())}

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
            if i < len(counts) and term != EMPTY
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
