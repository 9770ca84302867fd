"""Build or update an index from documents, embedding only what changed.

Documents are streamed: taken in batches of about `settings.ingest_batch_chunks` chunks,
each batch chunked, embedded and written (chunk store and vector store) before the next is
read, so a corpus is never held in memory whole. FAISS still holds all vectors in memory
(its index does); Milvus receives them batch by batch. Nothing is written before the first
change is found (the unchanged documents before it are written then, from the base), so an
unchanged folder leaves the index directory untouched.

An interrupted build of a Milvus generation resumes: the next build of the same generation
finds the chunks already in the collection (same id, same text hash) and does not embed
them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from index import (
    Chunk,
    Document,
    Index,
    IndexWriter,
    StoreConfig,
    backend,
    content_hash,
    entries_for,
    generations,
)
from index.backends.milvus import is_remote as is_remote_store
from index.generations import PointerWatch, generation_name
from index.generations import clean_leftovers_if_idle as clean_leftovers
from index.generations import file_lock as write_lock
from index.manifest import Manifest
from index.store import SCHEMA_VERSION
from index.testhooks import pause_point
from rag.config import Settings
from rag.embed.embedding import Embedder
from rag.ingest.documents import corpus_hash
from rag.models import BuildReport, IndexStats
from rag.text.chunking import chunk_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchDone:
    """Progress after one batch is written (passed to `build_index`'s `on_batch`)."""

    batch: int
    documents: int  # documents written so far
    chunks: int  # chunks read so far (written once anything has changed)
    embedded: int  # chunks embedded so far (by this run)
    skipped: int  # chunks found already written by an interrupted run


def chunking_settings(settings: Settings) -> dict[str, int | str]:
    return {"max_tokens": settings.chunk_tokens, "overlap": settings.chunk_overlap}


def reusable(base: Index | None, settings: Settings, embedder: Embedder) -> bool:
    """Whether `base`'s chunks and vectors can be reused for unchanged documents."""
    if base is None:
        return False
    m = base.manifest
    return (
        m.model == embedder.name
        and m.dimension == embedder.dimension
        and m.tokenizer == settings.tokenizer
        and m.chunking == chunking_settings(settings)
    )


def store_config(settings: Settings, base: Manifest | None = None) -> StoreConfig:
    """Where a new generation goes: the configured store, else the one of the generation
    `base` describes, else FAISS; at the configured address, else `base`'s, else the
    backend's default beside the index."""
    kind = settings.store or (base.store if base is not None else "faiss")
    uri = settings.milvus_uri
    if uri is None and base is not None and base.store == kind:
        uri = base.store_location.get("uri")
    return StoreConfig(
        kind=kind,
        index_type=settings.index_type,
        recall_target=settings.ann_recall_target,
        uri=backend(kind).location(uri, Path(settings.index_path)),
        collection=settings.milvus_collection,
    )


def load_index(settings: Settings, *, model: str | None = None) -> Index:
    """The live index at `settings.index_path`, with the configured Milvus address and
    BM25 source (the manifest says which store holds the vectors)."""
    return Index.load(
        settings.index_path,
        model=model,
        verify=settings.verify_checksums,
        store_uri=settings.milvus_uri,
        lexical_source=settings.lexical_source,
    )


def load_generation(settings: Settings, name: str) -> Index:
    """One generation of the index at `settings.index_path` by its directory name (a server
    following the live pointer loads the generation it names)."""
    return Index.load_generation(
        settings.index_path / name,
        verify=settings.verify_checksums,
        store_uri=settings.milvus_uri,
        lexical_source=settings.lexical_source,
    )


def build_index(
    settings: Settings,
    embedder: Embedder,
    documents: Iterable[Document],
    *,
    base: Index | None = None,
    replace_all: bool = True,
    delete_ids: Sequence[str] = (),
    on_batch: Callable[[BatchDone], None] | None = None,
    source: Path | None = None,
) -> tuple[Index, BuildReport]:
    """Write a new index generation.

    `replace_all`: the index will hold exactly `documents` (a folder sync; `documents` may
    be any iterable, read once). Otherwise `documents` are added to or replace those of
    `base`, and `delete_ids` are removed. Documents whose content hash is unchanged keep
    their stored chunks and vectors. `on_batch` is called after each batch is written.
    `source`: the folder `documents` come from, recorded in the manifest (an update through
    the API keeps the base's).
    """
    if source is not None:
        recorded: str | None = str(Path(source).resolve())
    else:
        recorded = base.manifest.source if base is not None else None
    started = time.perf_counter()
    base_hashes = base.store.document_hashes() if base is not None else {}
    can_reuse = reusable(base, settings, embedder)
    if not replace_all and can_reuse and base is not None and base.store.version == SCHEMA_VERSION:
        return _update(settings, embedder, base, base_hashes, documents, delete_ids, recorded)
    if not replace_all:
        documents = list(documents)
        stream: Iterable[Document] = _with_base(documents, base, delete_ids)
        if can_reuse and base is not None and not delete_ids:
            hashes = {**base_hashes, **{d.id: d.content_hash for d in documents}}
            wanted = content_hash(*sorted(f"{i}:{h}" for i, h in hashes.items()))
            if base.manifest.corpus_hash == wanted:
                return base, _up_to_date(settings, base, started)
    else:
        stream = documents
        if (
            isinstance(stream, Sequence)
            and can_reuse
            and base is not None
            and not delete_ids
            and base.manifest.corpus_hash == corpus_hash(_unique(stream))
        ):
            return base, _up_to_date(settings, base, started)

    config = store_config(settings, base.manifest if base is not None else None)
    seen: dict[str, str] = {}  # id -> content hash: enough for the corpus hash and removals
    added = changed = unchanged = 0
    n_chunks = embedded = skipped = 0
    # Unchanged documents read before the first change, text dropped (the base holds the
    # same): the new generation is opened, and they are written, only once something changed,
    # so an unchanged folder writes nothing at all.
    pending: list[Document] = []
    with contextlib.ExitStack() as stack:
        writer: IndexWriter | None = None

        def open_writer() -> tuple[IndexWriter, int]:
            """The new generation's writer, with the held-back documents written; and how
            many of their chunks an interrupted write of it already held."""
            opened = stack.enter_context(_index_writer(settings, embedder, config))
            if pending:
                assert base is not None
                return opened, _write_unchanged(opened, base, pending, settings.ingest_batch_chunks)
            return opened, 0

        for number, batch in enumerate(
            _batches(_unique(stream), settings, base if can_reuse else None, base_hashes),
            start=1,
        ):
            if writer is None and can_reuse and batch.unchanged == len(batch.documents):
                pending.extend(dataclasses.replace(d, text="") for d in batch.documents)
                present: set[int] = set()
                new: list[Chunk] = []
            else:
                if writer is None:
                    writer, already = open_writer()
                    skipped += already
                docs = {d.id: d for d in batch.documents}
                writer.add_documents(batch.documents, batch.kept + batch.new)
                present = writer.present(batch.kept + batch.new)
                kept = [c for c in batch.kept if c.vector_id not in present]
                new = [c for c in batch.new if c.vector_id not in present]
                if kept:
                    assert base is not None
                    writer.add_vectors(entries_for(kept, docs), base.vectors_for(kept))
                if new:
                    pause_point("embedding")
                    vectors = embedder.encode([c.text for c in new])
                    writer.add_vectors(entries_for(new, docs), vectors)
            for d in batch.documents:
                seen[d.id] = d.content_hash
            added += batch.added
            changed += batch.changed
            unchanged += batch.unchanged
            n_chunks += len(batch.kept) + len(batch.new)
            embedded += len(new)
            skipped += len(present)
            logger.info(
                "batch %d: %d documents, %d chunks read (%d embedded, %d already there)",
                number,
                len(seen),
                n_chunks,
                embedded,
                skipped,
            )
            if on_batch is not None:
                on_batch(BatchDone(number, len(seen), n_chunks, embedded, skipped))
        removed = sum(1 for doc_id in base_hashes if doc_id not in seen)
        final_hash = content_hash(*sorted(f"{i}:{h}" for i, h in seen.items()))
        if (
            writer is None
            and can_reuse
            and base is not None
            and not delete_ids
            and removed == added == changed == 0
            and base.manifest.corpus_hash == final_hash
        ):
            return base, _up_to_date(settings, base, started)
        if writer is None:  # only removals (or a first, empty index)
            writer, already = open_writer()
            skipped += already
        logger.info(
            "indexed %d documents: %d new, %d changed, %d unchanged, %d removed; "
            "embedded %d chunks, %d were already written",
            len(seen),
            added,
            changed,
            unchanged,
            removed,
            embedded,
            skipped,
        )
        index = writer.commit(
            corpus_hash=final_hash,
            build_seconds=time.perf_counter() - started,
            source=recorded,
        )
    report = BuildReport(
        path=str(settings.index_path),
        generation=index.generation,
        n_documents=len(seen),
        n_chunks=n_chunks,
        added=added,
        changed=changed,
        unchanged=unchanged,
        removed=removed,
        embedded_chunks=embedded,
        seconds=round(time.perf_counter() - started, 3),
        size_bytes=directory_size(index.path),
    )
    return index, report


def _update(
    settings: Settings,
    embedder: Embedder,
    base: Index,
    base_hashes: dict[str, str],
    documents: Iterable[Document],
    delete_ids: Sequence[str],
    source: str | None,
) -> tuple[Index, BuildReport]:
    """Add, replace and delete documents of `base` (built with these settings and model):
    its chunk store is copied and only the documents that change are written, its vectors
    are copied and only new chunks embedded."""
    started = time.perf_counter()
    incoming = {d.id: d for d in documents}  # the last one given wins, as in a folder
    deleted = set(delete_ids)
    new_docs = [
        d for i, d in incoming.items() if i not in deleted and base_hashes.get(i) != d.content_hash
    ]
    gone = sorted(
        {i for i in deleted if i in base_hashes} | {d.id for d in new_docs} & set(base_hashes)
    )
    hashes = {i: h for i, h in base_hashes.items() if i not in deleted}
    hashes.update((d.id, d.content_hash) for d in new_docs)
    final_hash = content_hash(*sorted(f"{i}:{h}" for i, h in hashes.items()))
    if not new_docs and not gone:
        return base, _up_to_date(settings, base, started)
    added = sum(1 for d in new_docs if d.id not in base_hashes)
    with _index_writer(settings, embedder, store_config(settings, base.manifest), base) as writer:
        writer.remove_documents(gone)
        skipped = writer.keep_base_vectors(settings.ingest_batch_chunks)
        chunks = [c for d in new_docs for c in _chunks(d, settings)]
        writer.add_documents(new_docs, chunks)
        present = writer.present(chunks)
        todo = [c for c in chunks if c.vector_id not in present]
        by_id = {d.id: d for d in new_docs}
        for start in range(0, len(todo), settings.ingest_batch_chunks):
            batch = todo[start : start + settings.ingest_batch_chunks]
            pause_point("embedding")
            writer.add_vectors(entries_for(batch, by_id), embedder.encode([c.text for c in batch]))
        skipped += len(present)
        logger.info(
            "updated the index: %d documents new, %d changed, %d removed; embedded %d chunks, "
            "%d were already written",
            added,
            len(new_docs) - added,
            len(gone) - (len(new_docs) - added),
            len(todo),
            skipped,
        )
        index = writer.commit(
            corpus_hash=final_hash, build_seconds=time.perf_counter() - started, source=source
        )
    report = BuildReport(
        path=str(settings.index_path),
        generation=index.generation,
        n_documents=index.manifest.n_documents,
        n_chunks=index.manifest.n_chunks,
        added=added,
        changed=len(new_docs) - added,
        unchanged=len(base_hashes) - len(gone),
        removed=len(gone) - (len(new_docs) - added),
        embedded_chunks=len(todo),
        seconds=round(time.perf_counter() - started, 3),
        size_bytes=directory_size(index.path),
    )
    return index, report


def _write_unchanged(
    writer: IndexWriter, base: Index, documents: list[Document], batch_chunks: int
) -> int:
    """Write unchanged documents held back until the first change (`documents` without their
    text): text, chunks and vectors from the base, about `batch_chunks` chunks at a time.
    Returns how many chunks an interrupted write of this generation already held."""
    skipped = 0
    docs: list[Document] = []
    chunks: list[Chunk] = []
    for n, held in enumerate(documents, start=1):
        docs.append(dataclasses.replace(held, text=base.store.get_document(held.id).text))
        chunks.extend(base.store.chunks_of(held.id))
        if len(chunks) >= batch_chunks or n == len(documents):
            writer.add_documents(docs, chunks)
            present = writer.present(chunks)
            todo = [c for c in chunks if c.vector_id not in present]
            if todo:
                by_id = {d.id: d for d in docs}
                writer.add_vectors(entries_for(todo, by_id), base.vectors_for(todo))
            skipped += len(present)
            docs, chunks = [], []
    documents.clear()
    return skipped


@dataclass
class _Batch:
    documents: list[Document]
    kept: list[Chunk]  # chunks of unchanged documents, vectors copied from the base
    new: list[Chunk]  # chunks to embed
    added: int = 0
    changed: int = 0
    unchanged: int = 0


def _batches(
    documents: Iterable[Document],
    settings: Settings,
    base: Index | None,
    base_hashes: dict[str, str],
) -> Iterator[_Batch]:
    """Documents grouped so that each batch holds about `ingest_batch_chunks` chunks, all
    chunks of a document in the same batch."""
    batch = _Batch([], [], [])
    for doc in documents:
        old_hash = base_hashes.get(doc.id)
        if base is not None and old_hash == doc.content_hash:
            batch.kept.extend(base.store.chunks_of(doc.id))
            batch.unchanged += 1
        else:
            batch.new.extend(_chunks(doc, settings))
            if old_hash is None:
                batch.added += 1
            else:
                batch.changed += 1
        batch.documents.append(doc)
        if len(batch.kept) + len(batch.new) >= settings.ingest_batch_chunks:
            yield batch
            batch = _Batch([], [], [])
    if batch.documents:
        yield batch


def _index_writer(
    settings: Settings, embedder: Embedder, config: StoreConfig, base: Index | None = None
) -> IndexWriter:
    """The writer of the next generation at `settings.index_path` (an update of `base`)."""
    return IndexWriter(
        settings.index_path,
        model=embedder.name,
        dimension=embedder.dimension,
        tokenizer=settings.tokenizer,
        chunking=chunking_settings(settings),
        store=config,
        keep=settings.keep_generations,
        base=base,
    )


def _chunks(doc: Document, settings: Settings) -> list[Chunk]:
    return chunk_text(
        doc.id,
        doc.text,
        max_tokens=settings.chunk_tokens,
        overlap=settings.chunk_overlap,
        encoding=settings.tokenizer,
        pages=doc.pages,
    )


def _unique(documents: Iterable[Document]) -> Iterator[Document]:
    """Each document id once (the last one given wins only in `_with_base`; here the first)."""
    seen: set[str] = set()
    for doc in documents:
        if doc.id in seen:
            logger.warning("skipping a second document with id %r", doc.id)
            continue
        seen.add(doc.id)
        yield doc


def _with_base(
    documents: Sequence[Document], base: Index | None, delete_ids: Sequence[str]
) -> list[Document] | Iterator[Document]:
    """The base's documents (minus replaced and deleted ones), then the incoming ones."""
    incoming = {d.id: d for d in documents}
    if base is None:
        return [d for i, d in incoming.items() if i not in delete_ids]
    deleted = set(delete_ids)

    def stream() -> Iterator[Document]:
        for summary in base.store.summaries():
            if summary.id not in incoming and summary.id not in deleted:
                yield base.store.get_document(summary.id)
        for doc_id, doc in incoming.items():
            if doc_id not in deleted:
                yield doc

    return stream()


def _up_to_date(settings: Settings, base: Index, started: float) -> BuildReport:
    logger.info("index is up to date (generation %d)", base.generation)
    # Nothing to write, but still clean what a crashed writer left (as a writer would).
    generations.clean_leftovers_if_idle(settings.index_path)
    return BuildReport(
        path=str(settings.index_path),
        generation=base.generation,
        n_documents=base.manifest.n_documents,
        n_chunks=base.manifest.n_chunks,
        added=0,
        changed=0,
        unchanged=base.manifest.n_documents,
        removed=0,
        embedded_chunks=0,
        seconds=round(time.perf_counter() - started, 3),
        size_bytes=directory_size(base.path),
    )


def directory_size(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def index_stats(index: Index) -> IndexStats:
    """What an index holds and how it was built, from its manifest (no model needed)."""
    m = index.manifest
    return IndexStats(
        path=str(index.path),
        generation=m.generation,
        model=m.model,
        dimension=m.dimension,
        index_type=m.index_type,
        tokenizer=m.tokenizer,
        chunking=m.chunking,
        n_documents=m.n_documents,
        n_chunks=m.n_chunks,
        created=m.created,
        build_seconds=m.build_seconds,
        size_bytes=directory_size(index.path),
        store=m.store,
        store_location=m.store_location,
    )


# also what the API needs of the index (api/ never imports index/): Document, Index,
# clean_leftovers, generation_name, is_remote_store, load_generation, PointerWatch, write_lock
__all__ = [
    "BatchDone",
    "Document",
    "PointerWatch",
    "Index",
    "build_index",
    "chunking_settings",
    "clean_leftovers",
    "directory_size",
    "generation_name",
    "index_stats",
    "is_remote_store",
    "load_generation",
    "load_index",
    "write_lock",
    "reusable",
    "store_config",
]
