"""The vector store interface: where a generation's embeddings live and are searched.

Two implementations speak it: `FaissStore` (index/faiss_store.py, the default, embedded in
the process and saved as a file of the generation) and `MilvusStore`
(index/milvus_store.py, a collection in milvus-lite or a Milvus cluster). The rest of the
code (`Index`, retrieval, indexing) talks to this interface only.

Vectors are keyed by the chunk's stable 63-bit id (`Chunk.vector_id`), the same in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from index.records import Chunk

STORE_KINDS = ("faiss", "milvus")


@dataclass(frozen=True, slots=True)
class ChunkFilter:
    """Which chunks a search may return: by document id and by document date (ISO strings,
    inclusive). None means no restriction on that field."""

    doc_ids: Sequence[str] | None = None
    date_from: str | None = None
    date_to: str | None = None

    @property
    def empty(self) -> bool:
        return self.doc_ids is None and self.date_from is None and self.date_to is None


@dataclass(frozen=True, slots=True)
class Entry:
    """A chunk with the metadata a store may keep beside its vector (for filtering)."""

    chunk: Chunk
    title: str = ""
    date: str | None = None


@dataclass(frozen=True, slots=True)
class StoreDescription:
    """What a store holds and how it searches, as recorded in the manifest."""

    kind: str  # "faiss" or "milvus"
    dimension: int
    count: int
    model: str | None = None
    index_type: str = "flat"
    index_params: dict[str, int] = field(default_factory=dict)
    location: dict[str, str] = field(default_factory=dict)  # milvus: uri and collection
    full_text: bool = False  # whether the store itself can rank by BM25


class VectorStore(Protocol):
    kind: str

    def add(self, entries: Sequence[Entry], vectors: np.ndarray) -> None:
        """Add (or replace) the vectors of `entries`, keyed by their chunks' vector ids."""

    def delete(self, ids: Sequence[int]) -> None:
        """Remove the vectors with these ids (unknown ids are ignored)."""

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        where: ChunkFilter | None = None,
        allowed_ids: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query by inner product, best first; id -1 marks an empty
        slot. `where` filters on chunk metadata, `allowed_ids` on ids."""

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of `ids`, in that order (all must exist)."""

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Exact inner products of one query vector with the stored vectors of `ids`."""

    def count(self) -> int: ...

    def check_available(self) -> None:
        """Raise StoreUnavailable when the store cannot serve searches now (a Milvus server
        down, its collection missing); a cheap call, made by readiness probes."""

    def describe(self) -> StoreDescription: ...

    def close(self) -> None: ...
