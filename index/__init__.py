"""The vector index and chunk store: build, persist, load, search."""

from index.errors import (
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    IndexStoreError,
    StoreUnavailable,
    UnknownChunk,
    UnknownDocument,
)
from index.index import Hit, Index, IndexWriter, StoreConfig, entries_for, write_index
from index.records import Chunk, Document, chunk_id, content_hash
from index.store import DocumentSummary
from index.vector_store import STORE_KINDS, ChunkFilter, Entry, StoreDescription, VectorStore

__all__ = [
    "STORE_KINDS",
    "Chunk",
    "ChunkFilter",
    "Entry",
    "IndexWriter",
    "StoreConfig",
    "StoreDescription",
    "VectorStore",
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
