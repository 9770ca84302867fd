"""The vector index and chunk store: build, persist, load, search."""

from index.errors import (
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    IndexStoreError,
    UnknownChunk,
    UnknownDocument,
)
from index.index import Hit, Index, write_index
from index.records import Chunk, Document, chunk_id, content_hash
from index.store import DocumentSummary

__all__ = [
    "Chunk",
    "Document",
    "DocumentSummary",
    "Hit",
    "Index",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "IndexStoreError",
    "UnknownChunk",
    "UnknownDocument",
    "chunk_id",
    "content_hash",
    "write_index",
]
