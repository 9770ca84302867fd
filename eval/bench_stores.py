"""FAISS and Milvus side by side: store-writing time and /ask latency on one corpus.

Embedding dominates indexing and is identical for both stores, so the chunks and vectors
are taken from an existing (FAISS) index of the corpus, e.g. the SciFact evaluation index
`rag eval --beir` builds, and only the writing is timed, per store:

- `write`: a whole generation (chunk store, BM25, vectors, manifest), as `rag index` does
  after embedding;
- `vectors`: the vector store alone, fed in batches of 512 as streaming ingestion does
  (FAISS collects then builds the flat index and writes its file; Milvus upserts each
  batch, then flushes).

Then ~200 queries of the corpus are asked through `Engine.ask` (hybrid, k=5; the question
embeddings are computed once beforehand and served from the embedder's cache, so the
figures are retrieval + answer composition) and through a bare dense search (k=10).

    python eval/bench_stores.py --source .rag/eval/beir-scifact-<key> \\
        --queries data/scifact/queries.jsonl --out /tmp/bench-stores
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from index import Index, StoreConfig, entries_for, write_index
from index.backends.faiss import FaissBuilder
from index.backends.milvus import MilvusBuilder
from rag.config import Settings
from rag.embed.embedding import Embedder
from rag.engine import Engine

logger = logging.getLogger("bench_stores")
BATCH = 512


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="An index of the corpus.")
    parser.add_argument("--queries", type=Path, required=True, help="BEIR queries.jsonl")
    parser.add_argument("--n-queries", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-stores"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    source = Index.load(args.source, verify=False)
    m = source.manifest
    documents = [source.store.get_document(s.id) for s in source.store.summaries()]
    chunks = [c for _, c in source.store.iter_chunks()]
    vectors = source.vectors_for(chunks)
    logger.info("%d documents, %d chunks, %s", len(documents), len(chunks), vectors.shape)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    uri = str(args.out / "milvus.db")
    by_id = {d.id: d for d in documents}
    entries = entries_for(chunks, by_id)
    results: dict[str, dict] = {"n_documents": len(documents), "n_chunks": len(chunks)}

    for kind in ("faiss", "milvus"):
        # the vector store alone, batch by batch
        started = time.perf_counter()
        if kind == "faiss":
            builder = FaissBuilder(m.dimension, "flat")
            for i in range(0, len(chunks), BATCH):
                builder.add(entries[i : i + BATCH], vectors[i : i + BATCH])
            builder.build().write(args.out / "alone.faiss")
        else:
            builder = MilvusBuilder(uri, "alone", 1, model=m.model, dimension=m.dimension)
            builder.start()
            for i in range(0, len(chunks), BATCH):
                builder.add(entries[i : i + BATCH], vectors[i : i + BATCH])
            builder.finish(args.out, len(chunks), lambda: {c.vector_id for c in chunks})
        alone = time.perf_counter() - started
        # a whole generation
        started = time.perf_counter()
        write_index(
            args.out / kind,
            documents=documents,
            chunks=chunks,
            embeddings=vectors,
            model=m.model,
            tokenizer=m.tokenizer,
            chunking=m.chunking,
            corpus_hash=m.corpus_hash,
            store=StoreConfig(kind=kind, index_type="flat", uri=uri),
        )
        whole = time.perf_counter() - started
        results[kind] = {"vectors_s": round(alone, 2), "write_s": round(whole, 2)}
        logger.info("%s: vectors %.1fs, whole generation %.1fs", kind, alone, whole)

    queries = []
    with open(args.queries, encoding="utf-8") as f:
        for line in f:
            queries.append(json.loads(line)["text"])
            if len(queries) >= args.n_queries:
                break
    embedder = Embedder(m.model, threads=1)
    for q in queries:  # embedded once, then served from the cache for both stores
        embedder.encode_query(q)
    for kind in ("faiss", "milvus"):
        settings = Settings(index_path=args.out / kind)
        engine = Engine(settings, Index.load(settings.index_path, verify=False), embedder)
        for q in queries[:20]:  # warm-up
            engine.ask(q)
        ask_ms, dense_ms = [], []
        for q in queries:
            started = time.perf_counter()
            engine.ask(q)
            ask_ms.append((time.perf_counter() - started) * 1000)
            vector = embedder.encode_query(q)[None, :]
            started = time.perf_counter()
            engine.index.search(vector, 10)
            dense_ms.append((time.perf_counter() - started) * 1000)
        results[kind]["ask"] = percentiles(ask_ms)
        results[kind]["dense_search"] = percentiles(dense_ms)
        logger.info("%s: %s", kind, results[kind])
    print(json.dumps(results, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
