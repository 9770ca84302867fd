"""The vector index and chunk store: build, persist, load, search."""

from index.backends import (
    STORE_KINDS,
    ChunkFilter,
    Entry,
    StoreConfig,
    StoreDescription,
    VectorStore,
    backend,
)
from index.errors import (
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    IndexStoreError,
    StoreUnavailable,
    UnknownChunk,
    UnknownDocument,
)
from index.index import Hit, Index, IndexWriter, entries_for, write_index
from index.records import Chunk, Document, chunk_id, content_hash
from index.store import DocumentSummary

__all__ = [
    "STORE_KINDS",
    "Chunk",
    "ChunkFilter",
    "Entry",
    "IndexWriter",
    "StoreConfig",
    "StoreDescription",
    "VectorStore",
    "backend",
    "entries_for",
    "Document",
    "DocumentSummary",
    "Hit",
    "Index",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "IndexStoreError",
    "StoreUnavailable",
    "UnknownChunk",
    "UnknownDocument",
    "chunk_id",
    "content_hash",
    "write_index",
]
