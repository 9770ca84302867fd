"""Writes to a served index: each adds, replaces or deletes documents by writing a new
generation (only the changed documents are embedded), then makes it live in the engine that
serves it. The engine itself only reads.

One writer at a time per engine (a lock here); across processes the API also holds a file
lock beside the index (api/state.py).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from index import Document
from rag.engine import Engine
from rag.indexing import build_index
from rag.models import BuildReport


class Writer:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()

    def upsert(self, documents: Sequence[Document]) -> BuildReport:
        """Add or replace documents: a new generation is written, then swapped in."""
        return self._write(documents)

    def delete(self, doc_id: str) -> BuildReport:
        """Remove a document and its chunks (UnknownDocument when there is none)."""
        self.engine.index.store.get_summary(doc_id)  # raises UnknownDocument
        return self._write([], delete_ids=[doc_id])

    def _write(self, documents: Sequence[Document], delete_ids: Sequence[str] = ()) -> BuildReport:
        engine = self.engine
        with self._lock:
            index, report = build_index(
                engine.settings,
                engine.embedder,
                documents,
                base=engine.index,
                replace_all=False,
                delete_ids=delete_ids,
            )
            engine.swap_index(index)
            return report
