"""The chunk store: documents and chunks in one SQLite file, written once per generation.

A generation's store is never modified after it is written, so readers open it
read-only and immutable (no locks), one connection per thread.

Its schema version is SQLite's `user_version`: 0 is the first one; 2 added page numbers
(`documents.pages`, `chunks.page`). A reader reads every older version as it is (no page
numbers), so indexes built before stay readable, and refuses a newer one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from index.errors import IndexCorrupt, IndexMismatch, UnknownChunk, UnknownDocument
from index.records import Chunk, Document

SCHEMA = """
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    date TEXT,
    url TEXT,
    source TEXT,
    text TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    n_chunks INTEGER NOT NULL,
    pages TEXT  -- JSON list of each page's start offset in text; NULL when unpaged
);
CREATE TABLE chunks (
    vector_id INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(id),
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    page INTEGER
);
CREATE INDEX chunks_by_doc ON chunks(doc_id, ordinal);
CREATE INDEX documents_by_date ON documents(date);
"""

SCHEMA_VERSION = 2
PAGES_VERSION = 2  # the first version with page numbers

_CHUNK_COLUMNS = 'id, doc_id, ordinal, start, "end", text, n_tokens, page'
# what a store older than PAGES_VERSION has instead: no page column
_OLD_CHUNK_COLUMNS = 'id, doc_id, ordinal, start, "end", text, n_tokens, NULL'

# Chunks read by vector id, kept per store: a generation never changes, and every question
# reads its candidates (about a hundred) again. ~1 kB each.
CHUNK_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class DocumentSummary:
    id: str
    title: str
    date: str | None
    url: str | None
    source: str | None
    content_hash: str
    n_chunks: int


def write_store(path: Path, documents: Iterable[Document], chunks: Iterable[Chunk]) -> None:
    """Write a new store file. `chunks` must belong to `documents`."""
    writer = StoreWriter(path)
    try:
        writer.add(documents, chunks)
        writer.commit()
    finally:
        writer.close()


class StoreWriter:
    """Writes a new store file batch by batch (streaming ingestion); `commit` makes it whole.

    Each `add` must hold all chunks of its documents."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.executescript(SCHEMA)
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def copy_of(cls, base: Path, path: Path) -> StoreWriter:
        """A writer on a copy of the store file at `base` (SQLite's online backup: a
        consistent snapshot, page by page, nothing decoded), for an update that writes only
        what changes. The base must have this version's schema."""
        source = sqlite3.connect(f"file:{base}?mode=ro", uri=True)
        try:
            version = int(source.execute("PRAGMA user_version").fetchone()[0])
            if version != SCHEMA_VERSION:
                raise IndexMismatch(
                    f"the chunk store {base} has schema version {version}, not {SCHEMA_VERSION}"
                )
            target = sqlite3.connect(path)
            source.backup(target)
        finally:
            source.close()
        writer = cls.__new__(cls)
        writer.path, writer.conn = path, target
        return writer

    def remove(self, doc_ids: Iterable[str]) -> list[int]:
        """Remove documents and their chunks; returns the removed chunks' vector ids."""
        removed: list[int] = []
        for doc_id in doc_ids:
            rows = self.conn.execute("SELECT vector_id FROM chunks WHERE doc_id = ?", (doc_id,))
            removed.extend(int(r[0]) for r in rows)
            self.conn.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
            self.conn.execute("DELETE FROM documents WHERE id = ?", (doc_id,))
        return removed

    def add(self, documents: Iterable[Document], chunks: Iterable[Chunk]) -> None:
        chunks = list(chunks)
        counts: dict[str, int] = {}
        for c in chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        try:
            self.conn.executemany(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        d.id,
                        d.title,
                        d.date,
                        d.url,
                        d.source,
                        d.text,
                        d.content_hash,
                        counts.get(d.id, 0),
                        json.dumps(list(d.pages)) if d.pages else None,
                    )
                    for d in documents
                ),
            )
            self.conn.executemany(
                f"INSERT INTO chunks (vector_id, {_CHUNK_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        c.vector_id,
                        c.id,
                        c.doc_id,
                        c.ordinal,
                        c.start,
                        c.end,
                        c.text,
                        c.n_tokens,
                        c.page,
                    )
                    for c in chunks
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"duplicate document or chunk ids: {exc}") from exc

    def count_chunks(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM chunks").fetchone()[0])

    def count_documents(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM documents").fetchone()[0])

    def vector_ids(self) -> set[int]:
        return {row[0] for row in self.conn.execute("SELECT vector_id FROM chunks")}

    def entries(self, vector_ids: list[int]) -> list[tuple[Chunk, str, str | None]]:
        """(chunk, document title, document date) of chunks written so far, by vector id."""
        if not vector_ids:
            return []
        marks = ",".join("?" * len(vector_ids))
        rows = self.conn.execute(
            f'SELECT c.id, c.doc_id, c.ordinal, c.start, c."end", c.text, c.n_tokens, c.page, '
            f"d.title, d.date FROM chunks c JOIN documents d ON d.id = c.doc_id "
            f"WHERE c.vector_id IN ({marks})",
            [int(v) for v in vector_ids],
        ).fetchall()
        return [(Chunk(*row[:8]), row[8], row[9]) for row in rows]

    def texts(self) -> tuple[list[int], list[str]]:
        """(vector ids, texts) of every chunk, for the BM25 index."""
        rows = self.conn.execute("SELECT vector_id, text FROM chunks ORDER BY vector_id").fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


class _Connection(sqlite3.Connection):
    """A connection a weak reference can point at (sqlite3.Connection itself cannot)."""


def _close_all(connections: weakref.WeakSet[sqlite3.Connection]) -> None:
    for conn in list(connections):
        conn.close()


class ChunkStore:
    """Read-only access to a generation's store file.

    Each thread gets a connection of its own. They are all closed as soon as the store is
    dropped (a server moving to a new generation drops the old one when its last reader is
    done): left to themselves they would stay open until Python's cyclic garbage collector
    ran, since a sqlite3.Connection refers to itself through its statement cache, and a
    server writing often would hold tens of descriptors of deleted generations at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._opened: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        weakref.finalize(self, _close_all, self._opened)
        self._chunks: OrderedDict[int, Chunk] = OrderedDict()
        self._chunks_lock = threading.Lock()
        try:
            self._conn().execute("SELECT count(*) FROM chunks").fetchone()
            self.version = int(self._conn().execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise IndexCorrupt(f"chunk store {path} is unreadable: {exc}") from exc
        if self.version > SCHEMA_VERSION:
            raise IndexMismatch(
                f"chunk store {path} has schema version {self.version}; this version reads "
                f"up to {SCHEMA_VERSION}. Upgrade rag-cited or rebuild with `rag index --rebuild`."
            )
        self._paged = self.version >= PAGES_VERSION
        self._chunk_columns = _CHUNK_COLUMNS if self._paged else _OLD_CHUNK_COLUMNS

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, factory=_Connection)
            self._opened.add(conn)
            self._local.conn = conn
        return conn

    # counts
    def count_chunks(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM chunks").fetchone()[0])

    def count_documents(self) -> int:
        return int(self._conn().execute("SELECT count(*) FROM documents").fetchone()[0])

    # chunks
    def get_chunk(self, chunk_id: str) -> Chunk:
        row = (
            self._conn()
            .execute(f"SELECT {self._chunk_columns} FROM chunks WHERE id = ?", (chunk_id,))
            .fetchone()
        )
        if row is None:
            raise UnknownChunk(chunk_id)
        return Chunk(*row)

    def chunks_by_vector_ids(self, vector_ids: list[int]) -> dict[int, Chunk]:
        found: dict[int, Chunk] = {}
        missing: list[int] = []
        with self._chunks_lock:
            for v in vector_ids:
                chunk = self._chunks.get(int(v))
                if chunk is None:
                    missing.append(int(v))
                else:
                    found[int(v)] = chunk
                    self._chunks.move_to_end(int(v))
        if not missing:
            return found
        marks = ",".join("?" * len(missing))
        rows = (
            self._conn()
            .execute(
                f"SELECT vector_id, {self._chunk_columns} FROM chunks WHERE vector_id IN ({marks})",
                missing,
            )
            .fetchall()
        )
        read = {row[0]: Chunk(*row[1:]) for row in rows}
        with self._chunks_lock:
            self._chunks.update(read)
            while len(self._chunks) > CHUNK_CACHE_SIZE:
                self._chunks.popitem(last=False)
        found.update(read)
        return found

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        rows = (
            self._conn()
            .execute(
                f"SELECT {self._chunk_columns} FROM chunks WHERE doc_id = ? ORDER BY ordinal",
                (doc_id,),
            )
            .fetchall()
        )
        return [Chunk(*row) for row in rows]

    def neighbours(self, chunk: Chunk) -> tuple[str | None, str | None]:
        """Ids of the chunks before and after `chunk` in its document."""
        rows = (
            self._conn()
            .execute(
                "SELECT ordinal, id FROM chunks WHERE doc_id = ? AND ordinal IN (?, ?)",
                (chunk.doc_id, chunk.ordinal - 1, chunk.ordinal + 1),
            )
            .fetchall()
        )
        by_ordinal = dict(rows)
        return by_ordinal.get(chunk.ordinal - 1), by_ordinal.get(chunk.ordinal + 1)

    def iter_chunks(self) -> Iterator[tuple[int, Chunk]]:
        cursor = self._conn().execute(
            f"SELECT vector_id, {self._chunk_columns} FROM chunks ORDER BY doc_id, ordinal"
        )
        for row in cursor:
            yield row[0], Chunk(*row[1:])

    # documents
    def get_document(self, doc_id: str) -> Document:
        pages = "pages" if self._paged else "NULL"
        row = (
            self._conn()
            .execute(
                f"SELECT id, text, title, date, url, source, {pages} FROM documents WHERE id = ?",
                (doc_id,),
            )
            .fetchone()
        )
        if row is None:
            raise UnknownDocument(doc_id)
        return Document(*row[:6], pages=_pages(row[6]))

    def pages_of(self, doc_ids: list[str]) -> dict[str, tuple[int, ...]]:
        """Each paged document's page start offsets, by id (unpaged ones are left out)."""
        if not self._paged or not doc_ids:
            return {}
        rows = self._conn().execute(
            f"SELECT id, pages FROM documents WHERE pages IS NOT NULL AND id IN "
            f"({','.join('?' * len(doc_ids))})",
            doc_ids,
        )
        return {doc_id: _pages(pages) for doc_id, pages in rows}

    def get_summary(self, doc_id: str) -> DocumentSummary:
        rows = self.summaries(ids=[doc_id])
        if not rows:
            raise UnknownDocument(doc_id)
        return rows[0]

    def summaries(
        self, offset: int = 0, limit: int | None = None, ids: list[str] | None = None
    ) -> list[DocumentSummary]:
        sql = "SELECT id, title, date, url, source, content_hash, n_chunks FROM documents"
        params: list[object] = []
        if ids is not None:
            sql += f" WHERE id IN ({','.join('?' * len(ids))})"
            params.extend(ids)
        sql += " ORDER BY id LIMIT ? OFFSET ?"
        params.extend([-1 if limit is None else limit, offset])
        return [DocumentSummary(*row) for row in self._conn().execute(sql, params)]

    def document_hashes(self) -> dict[str, str]:
        return dict(self._conn().execute("SELECT id, content_hash FROM documents").fetchall())

    def vector_ids_where(
        self,
        doc_ids: list[str] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> list[int]:
        """Vector ids of the chunks whose document passes the filters (dates are ISO strings)."""
        clauses, params = [], []
        if doc_ids is not None:
            clauses.append(f"d.id IN ({','.join('?' * len(doc_ids))})")
            params.extend(doc_ids)
        if date_from is not None:
            clauses.append("d.date >= ?")
            params.append(date_from)
        if date_to is not None:
            clauses.append("d.date <= ?")
            params.append(date_to)
        where = " AND ".join(clauses) or "1"
        rows = (
            self._conn()
            .execute(
                "SELECT c.vector_id FROM chunks c JOIN documents d ON d.id = c.doc_id "
                f"WHERE {where}",
                params,
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _pages(value: str | None) -> tuple[int, ...] | None:
    return tuple(json.loads(value)) if value else None
