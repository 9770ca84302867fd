"""The FAISS side: build, persist and search the vector index.

Vectors carry stable 63-bit ids (IndexIDMap2), never positions, so deleting a
document cannot shift the ids of other chunks. Searches on a built index are
read-only; a change builds a new index and never touches the one readers use.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from index.errors import IndexCorrupt


def build(vectors: np.ndarray, ids: np.ndarray, index_type: str = "flat") -> faiss.Index:
    """An inner-product index over normalised `vectors` (n, d) with the given int64 `ids`."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {vectors.shape}")
    dim = vectors.shape[1]
    if index_type == "flat":
        inner: faiss.Index = faiss.IndexFlatIP(dim)
    else:
        raise ValueError(f"unknown index type {index_type!r}")
    index = faiss.IndexIDMap2(inner)
    if len(vectors):
        index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
    return index


def write(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def read(path: Path) -> faiss.Index:
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorrupt(f"vector file {path} is unreadable: {exc}") from exc


def ids_of(index: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def reconstruct(index: faiss.Index, ids: list[int]) -> np.ndarray:
    """The stored vectors for `ids` (used to reuse embeddings of unchanged documents)."""
    if not ids:
        return np.zeros((0, index.d), dtype=np.float32)
    return np.vstack([index.reconstruct(int(i)) for i in ids]).astype(np.float32)


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    allowed_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; ids of -1 mark empty slots. `allowed_ids` restricts the
    search to those vectors."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = max(1, min(k, index.ntotal)) if index.ntotal else 1
    if allowed_ids is None:
        return index.search(queries, k)
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_ids, dtype=np.int64))
    params = faiss.SearchParameters(sel=selector)
    return index.search(queries, k, params=params)
