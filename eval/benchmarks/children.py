"""What eval/bench.py does as a child process (`--child index|load`): a fresh process, so
its imports, peak RSS and cold start are its own. Imports only `common`: the cold start's
figures count what the script itself imported before the app."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import BUNDLED_CORPUS, current_rss_mb, dir_size, peak_rss_mb, scifact_documents


def child_index(
    corpus: str, limit: int | None, index_path: Path, batch_size: int | None = None
) -> dict[str, Any]:
    """Build an index of `corpus` in this (fresh) process and measure it."""
    from rag.config import Settings
    from rag.embed.embedding import Embedder
    from rag.indexing import build_index
    from rag.ingest.documents import load_corpus

    t0 = time.perf_counter()
    settings = Settings(index_path=index_path)
    if batch_size:
        settings = settings.model_copy(update={"batch_size": batch_size})
    embedder = Embedder.from_settings(settings)
    model_seconds = time.perf_counter() - t0
    documents = load_corpus(BUNDLED_CORPUS) if corpus == "bundled" else scifact_documents(limit)
    rss_before = current_rss_mb()
    embed_seconds = 0.0
    encode = embedder.encode

    def timed_encode(texts: Sequence[str], **kw: Any) -> np.ndarray:
        nonlocal embed_seconds
        t = time.perf_counter()
        out = encode(texts, **kw)
        embed_seconds += time.perf_counter() - t
        return out

    embedder.encode = timed_encode  # type: ignore[method-assign]
    t = time.perf_counter()
    index, report = build_index(settings, embedder, documents)
    seconds = time.perf_counter() - t
    tokens = sum(chunk.n_tokens for _, chunk in index.store.iter_chunks())
    m = index.manifest
    return {
        "corpus": corpus,
        "backend": embedder.backend,
        "batch_size": embedder.batch_size,
        "documents": len(documents),
        "chunks": report.n_chunks,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "embed_seconds": round(embed_seconds, 2),
        "chunks_per_s": round(report.n_chunks / seconds, 1),
        "documents_per_s": round(len(documents) / seconds, 1),
        "tokens_per_s": round(tokens / seconds, 1),
        "model_load_seconds": round(model_seconds, 2),
        "rss_before_build_mb": round(rss_before, 1),
        "peak_rss_mb": peak_rss_mb(),
        "index_bytes": dir_size(index.path),
        "vectors_bytes": (index.path / "vectors.faiss").stat().st_size,
        "index_type": m.index_type,
        "index_params": m.index_params,
        "index_path": str(index_path),
    }


def child_load(index_path: Path, spawned_at: float) -> dict[str, Any]:
    """The parts of a cold start, in the order `rag serve` does them (app imports, then in the
    lifespan: index load, then model load, which imports the backend's framework: torch and
    sentence-transformers, or onnxruntime and tokenizers)."""
    entered = time.time()
    t = time.perf_counter()
    import api.main  # noqa: F401
    from index import Index
    from rag.config import Settings
    from rag.embed.embedding import Embedder

    imports = time.perf_counter() - t
    settings = Settings(index_path=index_path)
    t = time.perf_counter()
    index = Index.load(index_path)
    index_load = time.perf_counter() - t
    t = time.perf_counter()
    if settings.embedding_backend == "torch":
        import sentence_transformers  # noqa: F401
        import torch  # noqa: F401
    else:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    torch_import = time.perf_counter() - t
    t = time.perf_counter()
    embedder = Embedder.from_settings(settings, index.manifest.model, queries=True)
    model_load = time.perf_counter() - t
    t = time.perf_counter()
    embedder.encode_query("warm up")
    first_query = time.perf_counter() - t
    return {
        "interpreter_start": round(entered - spawned_at, 3),
        "app_imports": round(imports, 3),
        "index_load": round(index_load, 3),
        "framework_import": round(torch_import, 3),
        "model_load": round(model_load, 3),
        "first_query_embed": round(first_query, 3),
        "peak_rss_mb": peak_rss_mb(),
    }
