"""Indexes built for evaluation, cached under a name that hashes everything they depend on
(corpus, model, tokenizer, chunk settings), so a changed setting never reuses a stale index
and an unchanged one is never rebuilt."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from index import Document, Index, IndexCorrupt, IndexMismatch, IndexNotFound, content_hash
from rag.config import Settings
from rag.embed.embedding import Embedder
from rag.evaluation.options import DEFAULT_CACHE_DIR
from rag.indexing import chunking_settings, reusable
from rag.ingest.documents import corpus_hash

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PreparedIndex:
    settings: Settings  # with index_path pointing at the index
    built: bool  # False when an existing index was reused
    seconds: float  # time spent building (0 when reused)
    n_documents: int
    n_chunks: int


def index_key(settings: Settings, model: str, documents: Sequence[Document]) -> str:
    """12 hex digits naming an index of `documents` built with `model` and `settings`."""
    recipe = json.dumps(
        {
            "corpus": corpus_hash(documents),
            "model": model,
            "tokenizer": settings.tokenizer,
            "chunking": chunking_settings(settings),
        },
        sort_keys=True,
    )
    return content_hash(recipe)[:12]


def prepare_index(
    settings: Settings,
    embedder: Embedder,
    documents: Sequence[Document],
    *,
    name: str,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> PreparedIndex:
    """An index of exactly `documents` at `cache_dir/<name>-<key>`: reused when one is there
    and matches, else built (reusing whatever vectors an older generation there holds)."""
    from rag.indexing import build_index

    path = Path(cache_dir) / f"{name}-{index_key(settings, embedder.name, documents)}"
    target = settings.model_copy(update={"index_path": path})
    wanted_hash = corpus_hash(documents)
    base = None
    try:
        base = Index.load(path, verify=settings.verify_checksums)
    except IndexNotFound:
        pass
    except (IndexCorrupt, IndexMismatch) as exc:
        logger.warning("rebuilding the evaluation index at %s: %s", path, exc)
    if (
        base is not None
        and base.manifest.corpus_hash == wanted_hash
        and reusable(base, settings, embedder)
    ):
        logger.info("reusing the evaluation index at %s", path)
        m = base.manifest
        return PreparedIndex(target, False, 0.0, m.n_documents, m.n_chunks)
    logger.info("building an evaluation index of %d documents at %s", len(documents), path)
    started = time.perf_counter()
    index, report = build_index(target, embedder, documents, base=base, replace_all=True)
    return PreparedIndex(
        target, True, round(time.perf_counter() - started, 1), report.n_documents, report.n_chunks
    )
