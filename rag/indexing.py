"""Build or update an index from documents, embedding only what changed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from index import Chunk, Document, Index, write_index
from rag.chunking import chunk_text
from rag.config import Settings
from rag.documents import corpus_hash
from rag.embedding import Embedder
from rag.models import BuildReport

logger = logging.getLogger(__name__)


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


def build_index(
    settings: Settings,
    embedder: Embedder,
    documents: Sequence[Document],
    *,
    base: Index | None = None,
    replace_all: bool = True,
    delete_ids: Sequence[str] = (),
) -> tuple[Index, BuildReport]:
    """Write a new index generation.

    `replace_all`: the index will hold exactly `documents` (a folder sync). Otherwise
    `documents` are added to or replace those of `base`, and `delete_ids` are removed.
    Documents whose content hash is unchanged keep their stored chunks and vectors.
    """
    started = time.perf_counter()
    base_hashes = base.store.document_hashes() if base is not None else {}
    incoming = {d.id: d for d in documents}
    final: dict[str, Document] = {}
    if not replace_all and base is not None:
        for summary in base.store.summaries():
            if summary.id not in incoming and summary.id not in delete_ids:
                final[summary.id] = base.store.get_document(summary.id)
    final.update(incoming)
    for doc_id in delete_ids:
        final.pop(doc_id, None)

    can_reuse = reusable(base, settings, embedder)
    if (
        can_reuse
        and base is not None
        and not delete_ids
        and base.manifest.corpus_hash == corpus_hash(final.values())
    ):
        logger.info("index is up to date (generation %d)", base.generation)
        return base, BuildReport(
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
    kept_chunks: list[Chunk] = []
    new_chunks: list[Chunk] = []
    added = changed = unchanged = 0
    for doc in final.values():
        old_hash = base_hashes.get(doc.id)
        if can_reuse and old_hash == doc.content_hash:
            assert base is not None
            kept_chunks.extend(base.store.chunks_of(doc.id))
            unchanged += 1
            continue
        if old_hash is None:
            added += 1
        else:
            changed += 1
        new_chunks.extend(
            chunk_text(
                doc.id,
                doc.text,
                max_tokens=settings.chunk_tokens,
                overlap=settings.chunk_overlap,
                encoding=settings.tokenizer,
            )
        )
    removed = sum(1 for doc_id in base_hashes if doc_id not in final)

    logger.info(
        "indexing %d documents: %d new, %d changed, %d unchanged, %d removed; embedding %d chunks",
        len(final),
        added,
        changed,
        unchanged,
        removed,
        len(new_chunks),
    )
    new_vectors = embedder.encode([c.text for c in new_chunks])
    kept_vectors = (
        base.vectors_for(kept_chunks)
        if base is not None and kept_chunks
        else np.zeros((0, embedder.dimension), np.float32)
    )
    chunks = kept_chunks + new_chunks
    vectors = np.vstack([kept_vectors, new_vectors]) if chunks else kept_vectors
    docs = list(final.values())
    index = write_index(
        settings.index_path,
        documents=docs,
        chunks=chunks,
        embeddings=vectors,
        model=embedder.name,
        tokenizer=settings.tokenizer,
        chunking=chunking_settings(settings),
        corpus_hash=corpus_hash(docs),
        index_type=settings.index_type,
        keep=settings.keep_generations,
        build_seconds=time.perf_counter() - started,
    )
    report = BuildReport(
        path=str(settings.index_path),
        generation=index.generation,
        n_documents=len(docs),
        n_chunks=len(chunks),
        added=added,
        changed=changed,
        unchanged=unchanged,
        removed=removed,
        embedded_chunks=len(new_chunks),
        seconds=round(time.perf_counter() - started, 3),
        size_bytes=directory_size(index.path),
    )
    return index, report


def directory_size(path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
