"""What every vector-store backend speaks: a reader (`VectorStore`), a builder (`Builder`)
and the `Backend` that makes them, plus the shapes they pass around.

A backend keeps a generation's embeddings and searches them. The rest of index/ talks to
these protocols only and picks a backend by the name a manifest or a `StoreConfig` gives
(`index.backends.backend`). Vectors are keyed by the chunk's stable 63-bit id
(`Chunk.vector_id`), the same in every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from index.manifest import Manifest
from index.records import Chunk
from index.vectors import CALIBRATION_TARGET


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


# Resolves a metadata filter to the vector ids it allows (the chunk store does it, for a
# backend that keeps no metadata of its own).
Resolver = Callable[[ChunkFilter], list[int]]


@dataclass(frozen=True, slots=True)
class Entry:
    """A chunk with the metadata a store may keep beside its vector (for filtering)."""

    chunk: Chunk
    title: str = ""
    date: str | None = None


@dataclass(frozen=True, slots=True)
class StoreDescription:
    """What a store holds and how it searches, as recorded in the manifest."""

    kind: str  # the backend's name
    dimension: int
    count: int
    model: str | None = None
    index_type: str = "flat"
    index_params: dict[str, int] = field(default_factory=dict)
    location: dict[str, str] = field(default_factory=dict)  # where a server keeps it
    full_text: bool = False  # whether the store itself can rank by BM25


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where a new generation's vectors go: backend `kind`, its index type, and for a
    backend outside the index directory its address (`uri`) and the base name of what it
    writes there (`collection`)."""

    kind: str = "faiss"
    index_type: str = "auto"
    recall_target: float = CALIBRATION_TARGET  # of an approximate index (efSearch, nprobe)
    uri: str | None = None
    collection: str = "rag_chunks"

    def __post_init__(self) -> None:
        from index.backends import backend

        backend(self.kind).check_config(self)


class VectorStore(Protocol):
    """One generation's vectors, opened for reading (and, while building, for writing)."""

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
        slot. `where` filters on chunk metadata, `allowed_ids` on ids; given both, each
        allows what the other does (the store uses whichever it filters on faster)."""

    def search_text(
        self,
        query: str,
        k: int,
        *,
        where: ChunkFilter | None = None,
        allowed_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-k (id, BM25 score) by the store's own full-text search, best first; only
        where `describe().full_text`."""

    def text_scores(self, query: str, ids: Sequence[int]) -> np.ndarray:
        """The store's BM25 scores of `ids` (0 for no shared term); only where full_text."""

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of `ids`, in that order (all must exist)."""

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Exact inner products of one query vector with the stored vectors of `ids`."""

    def count(self) -> int: ...

    def check_available(self) -> None:
        """Raise StoreUnavailable when the store cannot serve searches now (a server down,
        its collection missing); a cheap call, made by readiness probes."""

    def describe(self) -> StoreDescription: ...

    def close(self) -> None: ...


class Builder(Protocol):
    """Writes one new generation's vectors. Made by `Backend.builder`, started once
    interrupted writes are settled, finished by the index writer's commit."""

    resumed: bool  # continues an interrupted write of the same generation

    def start(self) -> None:
        """Begin writing (create what the generation's vectors go into)."""

    def add(self, entries: Sequence[Entry], vectors: np.ndarray) -> None: ...

    def present(self, chunks: Sequence[Chunk]) -> set[int]:
        """Vector ids of `chunks` an interrupted write already stored with the same text:
        they need no embedding."""

    def finish(
        self, directory: Path, n_chunks: int, wanted: Callable[[], set[int]]
    ) -> StoreDescription:
        """Complete the vectors of a generation of `n_chunks` chunks (the vector ids
        `wanted()` returns), writing any files of the backend into `directory`, the
        generation being written."""

    def done(self) -> None:
        """The generation is live: forget whatever recorded the write as unfinished."""


class Backend(Protocol):
    name: str
    files: tuple[str, ...]  # files of its own in a generation's directory

    def check_config(self, config: StoreConfig) -> None:
        """Raise ValueError for a configuration this backend cannot write."""

    def location(self, uri: str | None, index_root: Path) -> str | None:
        """The address new generations use: `uri` as given, normalised, or this backend's
        default for an index at `index_root` (None: the vectors are files of a generation)."""

    def shared_by_processes(self, uri: str | None) -> bool:
        """Whether several processes may open the store at `uri` at once."""

    def open(
        self, path: Path, manifest: Manifest, resolve: Resolver, *, uri: str | None = None
    ) -> VectorStore:
        """The vectors of the generation at `path`, checked against its manifest. `uri`
        overrides the address the manifest recorded (the same server seen from elsewhere)."""

    def builder(
        self, root: Path, generation: int, config: StoreConfig, *, model: str, dimension: int
    ) -> Builder: ...

    def settle(self, root: Path, builder: Builder) -> None:
        """Before `builder` starts: clean up what interrupted writes of this backend left
        outside the index directory at `root`, except what `builder` resumes."""

    def drop(self, manifest: Manifest, *, uri: str | None = None) -> None:
        """Before a pruned generation's files go: remove its vectors kept elsewhere."""
