"""The FAISS backend: the default, embedded in the process.

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
from index.backends.base import ChunkFilter, Entry, Resolver, StoreConfig, StoreDescription
from index.errors import IndexStoreError
from index.manifest import Manifest
from index.records import Chunk

VECTORS_FILE = "vectors.faiss"


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
        # FAISS keeps no metadata: a filter is resolved to ids by the chunk store, unless
        # the ids are given already.
        if allowed_ids is None and where is not None and not where.empty:
            if self._resolve is None:
                raise ValueError("this FAISS store cannot resolve metadata filters")
            allowed_ids = self._resolve(where)
        allowed = None if allowed_ids is None else np.asarray(allowed_ids, dtype=np.int64)
        return faiss_vectors.search(self.index, queries, k, allowed)

    def search_text(
        self,
        query: str,
        k: int,
        *,
        where: ChunkFilter | None = None,
        allowed_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        raise IndexStoreError("a FAISS store has no full-text search: BM25 is the local index")

    def text_scores(self, query: str, ids: Sequence[int]) -> np.ndarray:
        raise IndexStoreError("a FAISS store has no full-text search: BM25 is the local index")

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

    resumed = False  # nothing survives an interrupted FAISS build

    def start(self) -> None:
        """Nothing to create: the index is built in `finish`."""

    def present(self, chunks: Sequence[Chunk]) -> set[int]:
        """Nothing survives an interrupted FAISS build: every chunk is embedded again."""
        return set()

    def finish(
        self, directory: Path, n_chunks: int, wanted: Callable[[], set[int]]
    ) -> StoreDescription:
        store = self.build()
        if store.count() != n_chunks:
            raise ValueError(f"{n_chunks} chunks but {store.count()} vectors")
        store.write(directory / VECTORS_FILE)
        return store.describe()

    def done(self) -> None:
        """Nothing recorded: the index file is part of the generation."""

    def build(self) -> FaissStore:
        """The FAISS index over the vectors added so far."""
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


class FaissBackend:
    name = "faiss"
    files = (VECTORS_FILE,)

    def check_config(self, config: StoreConfig) -> None:
        """Anything: the index type is checked when the index is built (`vectors.choose`)."""

    def location(self, uri: str | None, index_root: Path) -> str | None:
        return None

    def shared_by_processes(self, uri: str | None) -> bool:
        return True  # each process reads the file into its own memory

    def open(
        self, path: Path, manifest: Manifest, resolve: Resolver, *, uri: str | None = None
    ) -> FaissStore:
        return FaissStore.read(path / VECTORS_FILE, manifest.index_params, resolve)

    def builder(
        self, root: Path, generation: int, config: StoreConfig, *, model: str, dimension: int
    ) -> FaissBuilder:
        return FaissBuilder(dimension, config.index_type, config.recall_target)

    def settle(self, root: Path, builder: object) -> None:
        """Nothing outside the index directory: its own leftovers go with the temporary
        directories (generations.clean_leftovers)."""

    def drop(self, manifest: Manifest, *, uri: str | None = None) -> None:
        """Nothing elsewhere: the file goes with the generation's directory."""


BACKEND = FaissBackend()
