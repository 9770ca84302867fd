"""The FAISS implementation of the vector store: the default, embedded in the process.

A generation's FAISS index is a file of the generation (vectors.faiss). While a generation
is being written, `add` collects the vectors and `finish` builds the index in one go: HNSW
and IVF are built (and calibrated, see index/vectors.py) over all vectors at once. FAISS
holds every vector in memory anyway, so collecting them costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import faiss
import numpy as np

from index import vectors as faiss_vectors
from index.vector_store import ChunkFilter, Entry, StoreDescription

Resolver = Callable[[ChunkFilter], list[int]]


class FaissStore:
    kind = "faiss"

    def __init__(self, index: faiss.Index, resolve: Resolver | None = None):
        self.index = index
        self._resolve = resolve

    @classmethod
    def read(
        cls, path: Path, params: dict[str, int] | None = None, resolve: Resolver | None = None
    ) -> FaissStore:
        return cls(faiss_vectors.read(path, params), resolve)

    def write(self, path: Path) -> None:
        faiss_vectors.write(self.index, path)

    def add(self, entries: Sequence[Entry], vectors: np.ndarray) -> None:
        ids = np.array([e.chunk.vector_id for e in entries], dtype=np.int64)
        self.delete(ids)
        self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), ids)

    def delete(self, ids: Sequence[int]) -> None:
        if len(ids):
            self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64)))

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        where: ChunkFilter | None = None,
        allowed_ids: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        # FAISS keeps no metadata: a filter is resolved to ids by the chunk store.
        if allowed_ids is None and where is not None and not where.empty:
            if self._resolve is None:
                raise ValueError("this FAISS store cannot resolve metadata filters")
            allowed_ids = self._resolve(where)
        allowed = None if allowed_ids is None else np.asarray(allowed_ids, dtype=np.int64)
        return faiss_vectors.search(self.index, queries, k, allowed)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        return faiss_vectors.reconstruct(self.index, list(ids))

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        return self.vectors(ids) @ np.asarray(query, dtype=np.float32)

    def count(self) -> int:
        return int(self.index.ntotal)

    def check_available(self) -> None:
        """Always: the vectors are in this process."""

    def describe(self) -> StoreDescription:
        spec = faiss_vectors.describe(self.index)
        return StoreDescription(
            kind=self.kind,
            dimension=int(self.index.d),
            count=self.count(),
            index_type=spec.kind,
            index_params=dict(spec.params),
        )

    def close(self) -> None:
        pass


class FaissBuilder:
    """Collects a new generation's vectors; `finish` builds the FAISS index over them."""

    kind = "faiss"

    def __init__(
        self,
        dimension: int,
        index_type: str = "auto",
        recall_target: float = faiss_vectors.CALIBRATION_TARGET,
    ):
        self.dimension = dimension
        self.index_type = index_type
        self.recall_target = recall_target
        self._ids: list[np.ndarray] = []
        self._vectors: list[np.ndarray] = []

    def add(self, entries: Sequence[Entry], vectors: np.ndarray) -> None:
        if len(entries) != len(vectors):
            raise ValueError(f"{len(entries)} entries but {len(vectors)} vectors")
        self._ids.append(np.array([e.chunk.vector_id for e in entries], dtype=np.int64))
        self._vectors.append(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dimension))

    def present(self, ids: Sequence[int], hashes: Sequence[str]) -> set[int]:
        """Nothing survives an interrupted FAISS build: every chunk is embedded again."""
        return set()

    def finish(self) -> FaissStore:
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, dtype=np.int64)
        vecs = (
            np.vstack(self._vectors)
            if self._vectors
            else np.zeros((0, self.dimension), dtype=np.float32)
        )
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate chunk ids")
        self._ids, self._vectors = [], []
        return FaissStore(
            faiss_vectors.build(vecs, ids, self.index_type, recall_target=self.recall_target)
        )
