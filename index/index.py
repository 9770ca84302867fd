"""A loaded index generation (vectors + chunk store + manifest), and the atomic writer."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index import generations, vectors
from index.errors import IndexCorrupt, IndexMismatch, IndexNotFound
from index.lexical import LexicalIndex
from index.manifest import FORMAT_VERSION, MANIFEST_NAME, FileEntry, Manifest, read_manifest
from index.records import Chunk, Document
from index.store import ChunkStore, write_store

logger = logging.getLogger(__name__)

VECTORS_FILE = "vectors.faiss"
STORE_FILE = "store.sqlite"
LEXICAL_DIR = "bm25"


@dataclass(frozen=True, slots=True)
class Hit:
    chunk: Chunk
    score: float


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Index:
    """One generation of the index, loaded for reading. Never modified once loaded."""

    def __init__(
        self,
        path: Path,
        manifest: Manifest,
        faiss_index: faiss.Index,
        store: ChunkStore,
        lexical: LexicalIndex,
    ):
        self.path = path
        self.manifest = manifest
        self.faiss_index = faiss_index
        self.store = store
        self.lexical = lexical

    # loading
    @classmethod
    def load(
        cls,
        root: Path,
        *,
        model: str | None = None,
        dimension: int | None = None,
        verify: bool = True,
    ) -> Index:
        """Load the live generation under `root`. If it fails its checks, fall back to the
        newest older generation that passes, with a warning; raise if none does."""
        root = Path(root)
        live = generations.current(root)
        candidates = generations.list_generations(root)
        if live is None and not candidates:
            raise IndexNotFound(f"no index at {root}: build one with `rag index`")
        ordered = ([live] if live is not None else []) + [
            p for p in candidates if live is None or p.name != live.name
        ]
        first_error: IndexCorrupt | None = None
        for path in ordered:
            try:
                index = cls.load_generation(path, verify=verify)
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
    def load_generation(cls, path: Path, *, verify: bool = True) -> Index:
        if not path.is_dir():
            raise IndexCorrupt(f"index generation {path} is missing")
        manifest = read_manifest(path)
        if manifest.format_version != FORMAT_VERSION:
            raise IndexMismatch(
                f"index at {path} has format version {manifest.format_version}; this version "
                f"reads {FORMAT_VERSION}. Rebuild it with `rag index --rebuild`."
            )
        for name in (VECTORS_FILE, STORE_FILE):
            if name not in manifest.files:
                raise IndexCorrupt(f"the manifest of {path} does not list {name}")
        for name, entry in manifest.files.items():
            file = path / name
            if not file.is_file():
                raise IndexCorrupt(f"{file} is missing")
            if file.stat().st_size != entry.bytes:
                raise IndexCorrupt(
                    f"{file} has {file.stat().st_size} bytes, the manifest says {entry.bytes}"
                )
            if verify and sha256_file(file) != entry.sha256:
                raise IndexCorrupt(f"{file} does not match its checksum in the manifest")
        faiss_index = vectors.read(path / VECTORS_FILE, manifest.index_params)
        store = ChunkStore(path / STORE_FILE)
        n_chunks = store.count_chunks()
        if faiss_index.ntotal != n_chunks or n_chunks != manifest.n_chunks:
            raise IndexCorrupt(
                f"index at {path} holds {faiss_index.ntotal} vectors and {n_chunks} chunks "
                f"(manifest: {manifest.n_chunks}); they must be equal"
            )
        if faiss_index.d != manifest.dimension:
            raise IndexCorrupt(
                f"vector dimension {faiss_index.d} differs from the manifest's {manifest.dimension}"
            )
        lexical = LexicalIndex.load(path / LEXICAL_DIR)
        if len(lexical) != n_chunks:
            raise IndexCorrupt(
                f"the BM25 index of {path} holds {len(lexical)} chunks, not {n_chunks}"
            )
        return cls(path, manifest, faiss_index, store, lexical)

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
        return int(self.faiss_index.ntotal)

    def search(
        self, query_vectors: np.ndarray, k: int, allowed_vector_ids: Sequence[int] | None = None
    ) -> list[list[Hit]]:
        """Top-k chunks for each query vector, best first."""
        if len(self) == 0 or k <= 0:
            return [[] for _ in range(len(query_vectors))]
        allowed = None
        if allowed_vector_ids is not None:
            if len(allowed_vector_ids) == 0:
                return [[] for _ in range(len(query_vectors))]
            allowed = np.asarray(allowed_vector_ids, dtype=np.int64)
        scores, ids = vectors.search(self.faiss_index, query_vectors, k, allowed)
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
        ranked = self.lexical.search(query, k, allowed_vector_ids)
        chunks = self.store.chunks_by_vector_ids([vid for vid, _ in ranked])
        return [Hit(chunks[vid], score) for vid, score in ranked if vid in chunks]

    def dense_scores(self, query_vector: np.ndarray, chunks: Sequence[Chunk]) -> np.ndarray:
        """Exact inner products of `query_vector` with the stored vectors of `chunks`."""
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return self.vectors_for(chunks) @ np.asarray(query_vector, dtype=np.float32)

    def lexical_scores(self, query: str, chunks: Sequence[Chunk]) -> np.ndarray:
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return self.lexical.scores(query)[self.lexical.positions([c.vector_id for c in chunks])]

    def vectors_for(self, chunks: Sequence[Chunk]) -> np.ndarray:
        return vectors.reconstruct(self.faiss_index, [c.vector_id for c in chunks])

    def vectors_for_ids(self, vector_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        return vectors.reconstruct(self.faiss_index, vector_ids)

    def close(self) -> None:
        self.store.close()


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "faiss": faiss.__version__, "numpy": np.__version__}
    for dist in ("sentence-transformers", "torch", "tiktoken", "rag-cited"):
        with contextlib.suppress(PackageNotFoundError):
            out[dist] = version(dist)
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
) -> Index:
    """Write a new generation holding exactly `documents`/`chunks`/`embeddings` and make it live.

    `index_type` is "flat", "hnsw", "ivf" or "auto" (chosen by size, `vectors.choose`); the
    manifest records the concrete type and its parameters.

    The previous generation keeps serving until the pointer switches; a crash before
    then leaves it live and the partial write is cleaned on the next write.
    """
    if len(chunks) != len(embeddings):
        raise ValueError(f"{len(chunks)} chunks but {len(embeddings)} embeddings")
    root = Path(root)
    started = time.perf_counter()
    ids = np.array([c.vector_id for c in chunks], dtype=np.int64)
    if len(set(ids.tolist())) != len(ids):
        raise ValueError("duplicate chunk ids")
    dimension = int(embeddings.shape[1]) if embeddings.ndim == 2 else 0
    with generations.writer_lock(root):
        generations.clean_leftovers(root)
        number = generations.next_number(root)
        tmp = generations.new_tmp_dir(root)
        try:
            faiss_index = vectors.build(embeddings, ids, index_type)
            spec = vectors.describe(faiss_index)
            vectors.write(faiss_index, tmp / VECTORS_FILE)
            del faiss_index
            write_store(tmp / STORE_FILE, documents, chunks)
            LexicalIndex.build([c.text for c in chunks], ids).save(tmp / LEXICAL_DIR)
            files = {
                p.relative_to(tmp).as_posix(): FileEntry(
                    sha256=sha256_file(p), bytes=p.stat().st_size
                )
                for p in sorted(tmp.rglob("*"))
                if p.is_file()
            }
            manifest = Manifest(
                generation=number,
                model=model,
                dimension=dimension,
                index_type=spec.kind,
                index_params=spec.params,
                tokenizer=tokenizer,
                chunking=chunking,
                corpus_hash=corpus_hash,
                n_documents=len(documents),
                n_chunks=len(chunks),
                files=files,
                versions=library_versions(),
                build_seconds=build_seconds
                if build_seconds is not None
                else time.perf_counter() - started,
            )
            (tmp / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
            final = generations.commit(root, tmp, number)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        generations.prune(root, keep)
    logger.info(
        "wrote index generation %s (%d chunks, %s index %s)",
        final.name,
        len(chunks),
        spec.kind,
        spec.params,
    )
    return Index.load_generation(final, verify=False)
