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
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


K1, B = 1.2, 0.75  # bm25s's method "lucene" with these
logging.getLogger("bm25s").setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class Terms:
    """Analysed terms of many texts, as ids: text i's terms are
    `vocab[ids[indptr[i]:indptr[i + 1]]]`, and `hashes[i]` is its `text_hash`. What a build
    saves beside its bm25s index, and what the next build reuses without analysing the same
    texts again (and without turning millions of ids into strings and back)."""

    ids: np.ndarray  # int32
    indptr: np.ndarray  # int64, len(hashes) + 1
    vocab: list[str]
    hashes: np.ndarray  # uint64

    def spans(self) -> dict[int, tuple[int, int]]:
        """Each text hash's (start, end) in `ids`."""
        bounds = self.indptr.tolist()
        return {h: (bounds[i], bounds[i + 1]) for i, h in enumerate(self.hashes.tolist())}


def bm25_scores(terms: Terms, k1: float = K1, b: float = B) -> dict[str, Any]:
    """bm25s's score matrix (method and idf "lucene", float32, CSC by term) for the texts of
    `terms`, in one vectorised pass: bm25s builds it looping over the texts in Python, a
    third of an upsert's time on 18k chunks. Every operation is the one bm25s does, in the
    same order and precision, so the scores are equal bit for bit (tests compare)."""
    n_docs, n_vocab = len(terms.indptr) - 1, len(terms.vocab)
    lengths = np.diff(terms.indptr)
    docs = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    pairs, counts = np.unique(docs * n_vocab + terms.ids, return_counts=True)
    rows, cols = (pairs // n_vocab).astype(np.int32), (pairs % n_vocab).astype(np.int32)
    df = np.bincount(cols, minlength=n_vocab)
    # bm25s: math.log per term, stored as float32 (np.log may differ in the last bit)
    idf = np.array(
        [math.log(1 + (n_docs - d + 0.5) / (d + 0.5)) if d else 0.0 for d in df.tolist()],
        dtype=np.float32,
    )
    tf = counts.astype(np.float32)
    tfc = tf / (k1 * ((1 - b) + b * lengths[rows] / lengths.mean()) + tf)
    scores = (idf[cols] * tfc).astype(np.float32)
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])  # each term's chunks, in term order
    order = np.argsort((cols.astype(np.int64) << 32) | rows.astype(np.int64))
    return {"data": scores[order], "indices": rows[order], "indptr": indptr, "num_docs": n_docs}


class _CountedBM25(bm25s.BM25):
    """bm25s, its score matrix made by `bm25_scores` from the term ids of `terms`."""

    def __init__(self, terms: Terms, **kwargs: Any):
        super().__init__(**kwargs)
        self.terms = terms

    def build_index_from_ids(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        assert self.method == "lucene" and self.idf_method == "lucene", "bm25_scores' variant"
        self.nonoccurrence_array = None  # as bm25s sets it for "lucene"
        return bm25_scores(self.terms, self.k1, self.b)


class LexicalIndex:
    def __init__(
        self,
        retriever: bm25s.BM25 | None,
        vector_ids: np.ndarray,
        terms: Terms | None = None,
    ):
        self.retriever = retriever
        self.vector_ids = vector_ids.astype(np.int64)
        self._terms = terms  # by position, when built here: for save()
        self._order = np.argsort(self.vector_ids)
        self._sorted = self.vector_ids[self._order]

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        vector_ids: Sequence[int],
        known: Terms | None = None,
    ) -> LexicalIndex:
        """BM25 over `texts`. `known`: terms of texts analysed before (a base generation's
        `saved_terms`), found by `text_hash`; the others are analysed here."""
        ids = np.asarray(vector_ids, dtype=np.int64)
        if not len(texts):
            return cls(None, ids)
        vocab: dict[str, int] = {w: i for i, w in enumerate(known.vocab)} if known else {}
        spans = known.spans() if known else {}
        known_ids = known.ids if known else np.zeros(0, dtype=np.int32)
        hashes = [text_hash(t) for t in texts]
        docs: list[np.ndarray] = []
        for text, h in zip(texts, hashes, strict=True):
            span = spans.get(h)
            if span is not None:
                docs.append(known_ids[span[0] : span[1]])
            else:
                words = analyze(text) or [EMPTY]
                docs.append(np.array([vocab.setdefault(w, len(vocab)) for w in words], np.int32))
        reused = sum(h in spans for h in hashes)
        logger.info(
            "BM25 over %d chunks (%d analysed, %d reused)", len(texts), len(texts) - reused, reused
        )
        # Only the terms these texts hold, numbered 0..n-1 (a reused vocabulary also has
        # the terms of texts since removed).
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        used, flat = np.unique(np.concatenate(docs), return_inverse=True)
        words = list(vocab)
        terms = Terms(
            ids=flat.astype(np.int32),
            indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            vocab=[words[u] for u in used.tolist()],
            hashes=np.asarray(hashes, dtype=np.uint64),
        )
        retriever = _CountedBM25(terms, k1=K1, b=B)
        retriever.index(([], {w: i for i, w in enumerate(terms.vocab)}), show_progress=False)
        return cls(retriever, ids, terms)

    def save(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / IDS_FILE, self.vector_ids, allow_pickle=False)
        if self.retriever is not None:
            self.retriever.save(str(directory), show_progress=False, allow_pickle=False)
        if (terms := self._terms) is not None:
            np.save(directory / TERMS_FILE, terms.ids, allow_pickle=False)
            np.save(directory / TERMS_INDPTR, terms.indptr, allow_pickle=False)
            np.save(directory / TERMS_VOCAB, np.asarray(terms.vocab, dtype=str), allow_pickle=False)
            np.save(directory / TEXT_HASHES, terms.hashes, allow_pickle=False)
        return sorted(p for p in directory.iterdir() if p.is_file())

    @staticmethod
    def saved_terms(directory: Path) -> Terms | None:
        """The analysed terms a generation's BM25 index saved; None when it saved none
        (built before they were saved) or they cannot be read: a cache, never needed for
        correctness."""
        try:
            ids = np.load(directory / TERMS_FILE, allow_pickle=False)
            indptr = np.load(directory / TERMS_INDPTR, allow_pickle=False)
            vocab = np.load(directory / TERMS_VOCAB, allow_pickle=False).tolist()
            hashes = np.load(directory / TEXT_HASHES, allow_pickle=False)
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                logger.warning("ignoring the saved BM25 terms in %s: %s", directory, exc)
            return None
        consistent = (
            ids.ndim == indptr.ndim == hashes.ndim == 1
            and len(indptr) == len(hashes) + 1
            and int(indptr[0]) == 0
            and int(indptr[-1]) == len(ids)
            and bool(np.all(np.diff(indptr) >= 0))
            and (not len(ids) or (int(ids.min()) >= 0 and int(ids.max()) < len(vocab)))
        )
        if not consistent:
            logger.warning("ignoring the saved BM25 terms in %s: inconsistent", directory)
            return None
        # numpy's fixed-width strings drop trailing NULs: EMPTY comes back as "", which no
        # analysed term is
        vocab = [w or EMPTY for w in vocab]
        return Terms(ids.astype(np.int32), indptr.astype(np.int64), vocab, hashes)

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
