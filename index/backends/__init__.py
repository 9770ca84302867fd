"""Vector-store backends: where a generation's embeddings live and are searched.

One file per backend, each a builder and a reader behind the `Backend` protocol (base.py):
faiss.py, the default, embedded in the process and saved as a file of each generation;
milvus.py, a collection per generation in milvus-lite or a Milvus cluster. The rest of the
code picks one with `backend(name)` and never branches on the name. Another backend
(pgvector, Qdrant) is one new file here and one entry in BACKENDS.
"""

from __future__ import annotations

from index.backends import faiss, milvus
from index.backends.base import (
    Backend,
    Builder,
    ChunkFilter,
    Entry,
    Resolver,
    StoreConfig,
    StoreDescription,
    VectorStore,
)

BACKENDS: dict[str, Backend] = {b.name: b for b in (faiss.BACKEND, milvus.BACKEND)}
STORE_KINDS = tuple(BACKENDS)


def backend(name: str) -> Backend:
    """The backend called `name`; ValueError for one this version does not have."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown vector store {name!r}: use one of {STORE_KINDS}") from None


__all__ = [
    "BACKENDS",
    "STORE_KINDS",
    "Backend",
    "Builder",
    "ChunkFilter",
    "Entry",
    "Resolver",
    "StoreConfig",
    "StoreDescription",
    "VectorStore",
    "backend",
]
