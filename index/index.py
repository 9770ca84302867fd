"""A loaded index generation (vectors + chunk store + manifest), and the atomic writer."""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index import generations
from index.backends import (
    BACKENDS,
    Builder,
    ChunkFilter,
    Entry,
    Resolver,
    StoreConfig,
    VectorStore,
    backend,
)
from index.errors import IndexCorrupt, IndexMismatch, IndexNotFound
from index.lexical import LexicalIndex
from index.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    FileEntry,
    Manifest,
    check_files,
    read_manifest,
    sha256_file,
)
from index.records import Chunk, Document
from index.store import ChunkStore, StoreWriter
from index.testhooks import pause_point

logger = logging.getLogger(__name__)

STORE_FILE = "store.sqlite"
LEXICAL_DIR = "bm25"
LEXICAL_SOURCES = ("local", "store")


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float


class Index:
    """One generation of the index, loaded for reading. Never modified once loaded."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        vectors: VectorStore,
        store: ChunkStore,
        lexical: LexicalIndex,
        lexical_source: str = "local",
    ):
        self.path = path
        self.manifest = manifest
        self.vectors = vectors
        self.store = store
        self.lexical = lexical
        # "local": BM25 from the generation's bm25s index; "store": the vector store's own
        # full-text search (Milvus with a BM25 function).
        self.lexical_source = lexical_source

    @property
    def faiss_index(self) -> faiss.Index:
        """The FAISS index itself, for benchmarks and tests that look inside it."""
        index = getattr(self.vectors, "index", None)
        if not isinstance(index, faiss.Index):
            raise AttributeError(f"the vectors of {self.path} are in {self.vectors.kind}")
        return index

    # loading
    @classmethod
    def load(
        cls,
        root: Path,
        *,
        model: str | None = None,
        dimension: int | None = None,
        verify: bool = True,
        store_uri: str | None = None,
        lexical_source: str = "local",
    ) -> Index:
        """Load the live generation under `root`. If it fails its checks, fall back to the
        newest older generation that passes, with a warning; raise if none does."""
        root = Path(root)
        live = generations.current(root)
        candidates = generations.list_generations(root)
        if live is None and not candidates:
            raise IndexNotFound(f"no index at {root}: build one with `rag index`")
        live_number = generations.generation_number(live) if live is not None else None
        # the live one, then older ones newest first; newer ones (rolled back from) last
        ordered = ([live] if live is not None else []) + sorted(
            (p for p in candidates if live is None or p.name != live.name),
            key=lambda p: (
                live_number is not None and (generations.generation_number(p) or 0) > live_number
            ),
        )
        first_error: IndexCorrupt | None = None
        for path in ordered:
            try:
                index = cls.load_generation(
                    path, verify=verify, store_uri=store_uri, lexical_source=lexical_source
                )
            except IndexCorrupt as exc:
                first_error = first_error or exc
                logger.warning("index generation %s is unusable: %s", path.name, exc)
                continue
            if first_error is not None:
                logger.warning("serving the previous good generation %s", path.name)
            index.check_compatible(model=model, dimension=dimension)
            return index
        assert first_error is not None
        raise first_error

    @classmethod
    def load_generation(
        cls,
        path: Path,
        *,
        verify: bool = True,
        store_uri: str | None = None,
        lexical_source: str = "local",
    ) -> Index:
        """Load one generation. `store_uri` overrides the address of a vector store outside
        the index directory that its manifest recorded (the same cluster seen from another
        host)."""
        if not path.is_dir():
            raise IndexCorrupt(f"index generation {path} is missing")
        manifest = read_manifest(path)
        if manifest.format_version != FORMAT_VERSION:
            raise IndexMismatch(
                f"index at {path} has format version {manifest.format_version}; this version "
                f"reads {FORMAT_VERSION}. Rebuild it with `rag index --rebuild`."
            )
        if manifest.store not in BACKENDS:
            raise IndexCorrupt(f"the manifest of {path} names an unknown store {manifest.store!r}")
        if lexical_source not in LEXICAL_SOURCES:
            raise ValueError(f"unknown lexical source {lexical_source!r}: use {LEXICAL_SOURCES}")
        vectors_backend = backend(manifest.store)
        for name in (STORE_FILE, *vectors_backend.files):
            if name not in manifest.files:
                raise IndexCorrupt(f"the manifest of {path} does not list {name}")
        check_files(path, manifest, verify=verify)
        store = ChunkStore(path / STORE_FILE)
        n_chunks = store.count_chunks()
        vector_store = vectors_backend.open(path, manifest, resolver(store), uri=store_uri)
        n_vectors = vector_store.count()
        if n_vectors != n_chunks or n_chunks != manifest.n_chunks:
            raise IndexCorrupt(
                f"index at {path} holds {n_vectors} vectors and {n_chunks} chunks "
                f"(manifest: {manifest.n_chunks}); they must be equal"
            )
        dim = vector_store.describe().dimension
        if dim != manifest.dimension and n_chunks:
            raise IndexCorrupt(
                f"vector dimension {dim} differs from the manifest's {manifest.dimension}"
            )
        lexical = LexicalIndex.load(path / LEXICAL_DIR)
        if len(lexical) != n_chunks:
            raise IndexCorrupt(
                f"the BM25 index of {path} holds {len(lexical)} chunks, not {n_chunks}"
            )
        if lexical_source == "store" and not manifest.store_full_text:
            logger.warning(
                "the %s store of %s has no full-text search: BM25 stays local",
                manifest.store,
                path.name,
            )
            lexical_source = "local"
        return cls(path, manifest, vector_store, store, lexical, lexical_source)

    def check_compatible(self, *, model: str | None, dimension: int | None) -> None:
        m = self.manifest
        if model is not None and model != m.model:
            raise IndexMismatch(
                f"the index at {self.path.parent} was built with model {m.model!r} "
                f"(dimension {m.dimension}), but {model!r} is configured. Rebuild it with "
                f"`rag index --rebuild`, or configure the index's model (RAG_MODEL={m.model})."
            )
        if dimension is not None and dimension != m.dimension:
            raise IndexMismatch(
                f"the index at {self.path.parent} holds {m.dimension}-dimensional vectors; the "
                f"configured model makes {dimension}. Rebuild it with `rag index --rebuild`."
            )

    # reading
    @property
    def generation(self) -> int:
        return self.manifest.generation

    def __len__(self) -> int:
        return self.manifest.n_chunks

    def search(
        self,
        query_vectors: np.ndarray,
        k: int,
        allowed_vector_ids: Sequence[int] | None = None,
        *,
        where: ChunkFilter | None = None,
    ) -> list[list[Hit]]:
        """Top-k chunks for each query vector, best first. `where` filters on chunk
        metadata in the vector store (Milvus runs it in the database); for FAISS, and when
        only ids are given, `allowed_vector_ids` restricts the search."""
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(len(query_vectors))]
        allowed = None
        if allowed_vector_ids is not None:
            if len(allowed_vector_ids) == 0:
                return [[] for _ in range(len(query_vectors))]
            allowed = np.asarray(allowed_vector_ids, dtype=np.int64)
        if where is not None and where.empty:
            where = None
        scores, ids = self.vectors.search(query_vectors, k, where=where, allowed_ids=allowed)
        wanted = sorted({int(i) for i in ids.ravel() if i >= 0})
        chunks = self.store.chunks_by_vector_ids(wanted)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            results.append(
                [
                    Hit(chunks[int(i)], float(s))
                    for s, i in zip(row_scores, row_ids, strict=True)
                    if i >= 0 and int(i) in chunks
                ]
            )
        return results

    def search_lexical(
        self, query: str, k: int, allowed_vector_ids: Sequence[int] | None = None
    ) -> list[Hit]:
        """Top-k chunks by BM25, best first; only chunks sharing a term with the query."""
        if allowed_vector_ids is not None and len(allowed_vector_ids) == 0:
            return []
        if self.lexical_source == "store":
            ranked = self.vectors.search_text(query, k, allowed_ids=allowed_vector_ids)
        else:
            ranked = self.lexical.search(query, k, allowed_vector_ids)
        chunks = self.store.chunks_by_vector_ids([vid for vid, _ in ranked])
        return [Hit(chunks[vid], score) for vid, score in ranked if vid in chunks]

    def dense_scores(self, query_vector: np.ndarray, chunks: Sequence[Chunk]) -> np.ndarray:
        """Exact inner products of `query_vector` with the stored vectors of `chunks`."""
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return self.vectors.scores(query_vector, [c.vector_id for c in chunks])

    def lexical_scores(self, query: str, chunks: Sequence[Chunk]) -> np.ndarray:
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        if self.lexical_source == "store":
            return self.vectors.text_scores(query, [c.vector_id for c in chunks])
        return self.lexical.scores(query)[self.lexical.positions([c.vector_id for c in chunks])]

    def check_available(self) -> None:
        """Raise StoreUnavailable when the vector store cannot serve searches now."""
        self.vectors.check_available()

    def vectors_for(self, chunks: Sequence[Chunk]) -> np.ndarray:
        return self.vectors.vectors([c.vector_id for c in chunks])

    def vectors_for_ids(self, vector_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.vectors.vectors([int(i) for i in vector_ids])

    def close(self) -> None:
        self.store.close()
        self.vectors.close()


def resolver(store: ChunkStore) -> Resolver:
    """Metadata filters resolved to vector ids by the chunk store (for a backend that keeps
    no metadata itself)."""

    def resolve(where: ChunkFilter) -> list[int]:
        return store.vector_ids_where(
            doc_ids=None if where.doc_ids is None else list(where.doc_ids),
            date_from=where.date_from,
            date_to=where.date_to,
        )

    return resolve


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "faiss": faiss.__version__, "numpy": np.__version__}
    for dist in ("sentence-transformers", "torch", "tiktoken", "rag-cited"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
    return out


class IndexWriter:
    """Writes one new generation batch by batch, then makes it live (`commit`).

    Use as a context manager: the writer lock is held throughout; leaving without `commit`
    (an error, an interruption) removes the local partial write. The vectors go to the
    backend `store.kind` names (index/backends/). What a backend writes outside the index
    directory (a Milvus collection) is kept, so that the next write of the same generation
    resumes it (`present`); every backend settles such leftovers before a write starts.

        with IndexWriter(root, model=..., dimension=..., ...) as writer:
            for docs, chunks in batches:
                writer.add_documents(docs, chunks)
                todo = [c for c in chunks if c.vector_id not in writer.present(chunks)]
                writer.add_vectors(entries_of(todo), embed(todo))
            index = writer.commit(corpus_hash=...)
    """

    def __init__(
        self,
        root: Path,
        *,
        model: str,
        dimension: int,
        tokenizer: str,
        chunking: dict[str, Any],
        store: StoreConfig | None = None,
        keep: int = 3,
        base: Index | None = None,
    ):
        self.root = Path(root)
        # An update of `base`: its chunk store is copied, and only what changes is written
        # (`remove_documents`, `keep_base_vectors`, then `add_documents` as in a build).
        self.base = base
        self.model = model
        self.dimension = dimension
        self.tokenizer = tokenizer
        self.chunking = chunking
        self.config = store or StoreConfig()
        self.keep = keep
        self.started = time.perf_counter()
        self._stack = contextlib.ExitStack()
        self._tmp: Path | None = None
        self._sqlite: StoreWriter | None = None
        self._builder: Builder | None = None
        self.committed: Index | None = None

    def __enter__(self) -> IndexWriter:
        self._stack.enter_context(generations.writer_lock(self.root))
        try:
            generations.clean_leftovers(self.root)
            self.number = generations.next_number(self.root)
            builder = backend(self.config.kind).builder(
                self.root, self.number, self.config, model=self.model, dimension=self.dimension
            )
            for each in BACKENDS.values():
                each.settle(self.root, builder)
            self._tmp = generations.new_tmp_dir(self.root)
            if base := self.base:
                self._sqlite = StoreWriter.copy_of(base.store.path, self._tmp / STORE_FILE)
            else:
                self._sqlite = StoreWriter(self._tmp / STORE_FILE)
            builder.start()
            self._builder = builder
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._tmp is not None and self._tmp.exists():
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._stack.close()

    @property
    def builder(self) -> Builder:
        assert self._builder is not None, "use IndexWriter as a context manager"
        return self._builder

    @property
    def resumed(self) -> bool:
        return self.builder.resumed

    def present(self, chunks: Sequence[Chunk]) -> set[int]:
        """Vector ids of `chunks` already written with the same text by an interrupted write
        of this generation (a backend that keeps its vectors elsewhere): no need to embed."""
        return self.builder.present(chunks) if chunks else set()

    def remove_documents(self, doc_ids: Sequence[str]) -> int:
        """An update: remove documents of the base and their chunks; how many chunks went."""
        assert self._sqlite is not None and self.base is not None, "an update of a base"
        return len(self._sqlite.remove(doc_ids))

    def keep_base_vectors(self, batch: int = 1024) -> int:
        """An update: give the vectors the base holds for every chunk in the store now (call
        it after the removals, before new documents are added). Returns how many of them an
        interrupted write of this generation already held."""
        assert self._sqlite is not None and self.base is not None, "an update of a base"
        ids = sorted(self._sqlite.vector_ids())
        skipped = 0
        for start in range(0, len(ids), batch):
            entries = self.written_entries(ids[start : start + batch])
            present = self.present([e.chunk for e in entries])
            todo = [e for e in entries if e.chunk.vector_id not in present]
            if todo:
                vectors = self.base.vectors_for_ids([e.chunk.vector_id for e in todo])
                self.builder.add(todo, vectors)
            skipped += len(present)
        return skipped

    def add_documents(self, documents: Sequence[Document], chunks: Sequence[Chunk]) -> None:
        """Store `documents` and all their chunks (vectors come with `add_vectors`)."""
        assert self._sqlite is not None, "use IndexWriter as a context manager"
        self._sqlite.add(documents, chunks)

    def written_entries(self, vector_ids: Sequence[int]) -> list[Entry]:
        """Entries of chunks already given to `add_documents`, by vector id."""
        assert self._sqlite is not None
        return [Entry(c, t, d) for c, t, d in self._sqlite.entries(list(vector_ids))]

    def add_vectors(self, entries: Sequence[Entry], vectors: np.ndarray) -> None:
        if len(entries) != len(vectors):
            raise ValueError(f"{len(entries)} chunks but {len(vectors)} embeddings")
        if len(entries):
            self.builder.add(entries, np.asarray(vectors, dtype=np.float32))

    def commit(
        self, *, corpus_hash: str, build_seconds: float | None = None, source: str | None = None
    ) -> Index:
        """Finish the vectors, BM25 and manifest, and switch the pointer to the generation."""
        assert self._sqlite is not None and self._tmp is not None
        tmp, sqlite = self._tmp, self._sqlite
        sqlite.commit()
        n_chunks, n_documents = sqlite.count_chunks(), sqlite.count_documents()
        description = self.builder.finish(tmp, n_chunks, sqlite.vector_ids)
        index_type, index_params = description.index_type, description.index_params
        pause_point("store")
        ids, texts = sqlite.texts()
        # terms analysed before: the base's of an update, else the live generation's
        reuse = self.base.path if self.base is not None else generations.current(self.root)
        known = LexicalIndex.saved_terms(reuse / LEXICAL_DIR) if reuse is not None else None
        LexicalIndex.build(texts, ids, known).save(tmp / LEXICAL_DIR)
        del ids, texts, known
        sqlite.close()
        self._sqlite = None
        files = {
            p.relative_to(tmp).as_posix(): FileEntry(sha256=sha256_file(p), bytes=p.stat().st_size)
            for p in sorted(tmp.rglob("*"))
            if p.is_file()
        }
        manifest = Manifest(
            generation=self.number,
            model=self.model,
            dimension=self.dimension,
            index_type=index_type,
            index_params=index_params,
            tokenizer=self.tokenizer,
            chunking=self.chunking,
            corpus_hash=corpus_hash,
            n_documents=n_documents,
            n_chunks=n_chunks,
            files=files,
            versions=library_versions(),
            build_seconds=build_seconds
            if build_seconds is not None
            else time.perf_counter() - self.started,
            store=self.config.kind,
            store_location=description.location,
            store_full_text=description.full_text,
            source=source,
        )
        (tmp / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        final = generations.commit(self.root, tmp, self.number)
        self._tmp = None
        self.builder.done()
        generations.prune(self.root, self.keep, on_remove=self._drop_vectors_of)
        logger.info(
            "wrote index generation %s (%d chunks, %s store, %s index %s)",
            final.name,
            n_chunks,
            self.config.kind,
            index_type,
            index_params,
        )
        self.committed = Index.load_generation(final, verify=False, store_uri=self.config.uri)
        return self.committed

    def _drop_vectors_of(self, path: Path) -> None:
        """Before a pruned generation's files go: drop its vectors kept elsewhere, if any."""
        try:
            manifest = read_manifest(path)
        except IndexCorrupt:
            return
        if manifest.store in BACKENDS:
            uri = self.config.uri if manifest.store == self.config.kind else None
            backend(manifest.store).drop(manifest, uri=uri)


def entries_for(chunks: Sequence[Chunk], documents: dict[str, Document]) -> list[Entry]:
    """Chunks with their documents' title and date, for the vector store's metadata."""
    out = []
    for c in chunks:
        doc = documents.get(c.doc_id)
        out.append(Entry(c, doc.title if doc else "", doc.date if doc else None))
    return out


def write_index(
    root: Path,
    *,
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    embeddings: np.ndarray,
    model: str,
    tokenizer: str,
    chunking: dict[str, Any],
    corpus_hash: str,
    index_type: str = "auto",
    keep: int = 3,
    build_seconds: float | None = None,
    store: StoreConfig | None = None,
) -> Index:
    """Write a new generation holding exactly `documents`/`chunks`/`embeddings` and make it live.

    `index_type` is "flat", "hnsw", "ivf" or "auto" (chosen by size, `vectors.choose`); the
    manifest records the concrete type and its parameters. `store` says where the vectors go
    (default: FAISS, with `index_type`).

    The previous generation keeps serving until the pointer switches; a crash before
    then leaves it live and the partial write is cleaned on the next write.
    """
    if len(chunks) != len(embeddings):
        raise ValueError(f"{len(chunks)} chunks but {len(embeddings)} embeddings")
    ids = [c.vector_id for c in chunks]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate chunk ids")
    dimension = int(embeddings.shape[1]) if embeddings.ndim == 2 else 0
    if store is None:
        store = StoreConfig(index_type=index_type)
    with IndexWriter(
        root,
        model=model,
        dimension=dimension,
        tokenizer=tokenizer,
        chunking=chunking,
        store=store,
        keep=keep,
    ) as writer:
        writer.add_documents(documents, chunks)
        by_id = {d.id: d for d in documents}
        writer.add_vectors(entries_for(chunks, by_id), embeddings)
        return writer.commit(corpus_hash=corpus_hash, build_seconds=build_seconds)
