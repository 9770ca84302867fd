"""Section `writes`: a one-document upsert and a delete on an index of SciFact documents,
with the live generation's BM25 terms reused and hidden."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .common import Bench, percentiles, scifact_documents, table


def writes(bench: Bench) -> None:
    """A one-document upsert and a delete on an index of N SciFact documents, timed
    with the BM25 terms of the live generation reused (now) and with them hidden (as
    every write did before terms were saved: the whole corpus analysed again)."""
    from index.lexical import TERMS_FILE
    from rag.config import Settings
    from rag.embed.embedding import Embedder
    from rag.engine import Engine
    from rag.indexing import build_index
    from rag.writer import Writer

    n = 1000 if bench.quick else 5000
    documents = scifact_documents(n + 10)
    settings = Settings(index_path=bench.workdir / f"writes-{n}" / "index")
    embedder = Embedder.from_settings(settings)
    t = time.perf_counter()
    build_index(settings, embedder, documents[:n])
    build_s = time.perf_counter() - t
    engine = Engine.load(settings, embedder=embedder)
    writer = Writer(engine)
    rows, out = [], {"documents": n, "chunks": engine.index.manifest.n_chunks}
    out["build_s"] = round(build_s, 1)
    for label, hide in (("terms reused", False), ("all analysed (before)", True)):
        upserts, deletes = [], []

        def timed(write: Callable[[], Any], hide: bool = hide) -> float:
            """ms of one write, the live generation's saved BM25 terms hidden if `hide`."""
            terms = engine.index.path / "bm25" / TERMS_FILE
            hidden = terms.with_suffix(".hidden")
            if hide:
                terms.rename(hidden)
            try:
                t = time.perf_counter()
                write()
                return (time.perf_counter() - t) * 1000
            finally:
                if hidden.exists():
                    hidden.rename(terms)

        for doc in documents[n : n + (3 if bench.quick else 5)]:
            upserts.append(timed(lambda doc=doc: writer.upsert([doc])))
            deletes.append(timed(lambda doc=doc: writer.delete(doc.id)))
        out[label] = {"upsert_ms": percentiles(upserts), "delete_ms": percentiles(deletes)}
        rows.append([label, round(float(np.median(upserts))), round(float(np.median(deletes)))])
        print(f"  {label}: upsert p50 {rows[-1][1]} ms, delete p50 {rows[-1][2]} ms")
    bench.results["writes"] = out
    bench.save()
    table(
        f"Writes on an index of {n:,} SciFact documents ({out['chunks']:,} chunks; "
        f"built in {out['build_s']} s): one document each, median of "
        f"{len(upserts)}",
        ["BM25 terms", "upsert ms", "delete ms"],
        rows,
    )
