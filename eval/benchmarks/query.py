"""Section `query`: in-process `Engine.ask` latency by stage, with a cold and a warm query
cache (and, on torch, another number of intra-op threads)."""

from __future__ import annotations

import os
from typing import Any

from .common import (
    Bench,
    backend,
    load_questions,
    percentiles,
    set_torch_threads,
    table,
    torch_threads,
)


def query(bench: Bench) -> None:
    from rag.config import Settings
    from rag.engine import Engine

    index = bench.ensure_bundled_index()
    from index import vectors

    engine = Engine.load(Settings(index_path=index))
    engine.search_threads = 1  # as the server does
    questions = load_questions()
    repeats = 2 if bench.quick else 5
    for q in questions[:5]:  # warm up torch and SQLite
        engine.ask(q)
    embedder = engine.embedder
    cache_size = embedder.cache_size
    is_torch = embedder.backend == "torch"
    threads = torch_threads() if is_torch else engine.settings.torch_threads
    out: dict[str, Any] = {"backend": embedder.backend, "torch_threads": threads}
    runs = [("cold_cache", 0, threads), ("warm_cache", cache_size, threads)]
    other = 1 if threads != 1 else os.cpu_count() or 2
    if is_torch:
        # how much torch's intra-op threads help (or, on a busy machine, hurt) one question
        runs.append((f"cold_cache_{other}_threads", 0, other))
    for label, size, n_threads in runs:
        if is_torch:
            set_torch_threads(n_threads)
        embedder.cache_size = size  # 0: every question is embedded again
        embedder.clear_cache()
        if size:
            for q in questions:
                engine.ask(q)
        samples: dict[str, list[float]] = {
            "embed": [],
            "search": [],
            "compose": [],
            "read": [],
            "total": [],
        }
        for _ in range(repeats):
            for q in questions:
                timings = engine.ask(q).timings_ms
                for key in samples:
                    samples[key].append(timings.get(key, float("nan")))
        out[label] = {k: percentiles(v) for k, v in samples.items()}
        out[label]["n"] = len(samples["total"])
        out[label]["torch_threads"] = n_threads
    if is_torch:
        set_torch_threads(threads)
    embedder.cache_size = cache_size
    engine.index.close()
    vectors.limit_threads_of_this_thread(os.cpu_count() or 1)
    bench.results["query_in_process"] = out
    rows = []
    for label, _, n_threads in runs:
        for stage in ("embed", "search", "compose", "total"):
            p = out[label][stage]
            rows.append([f"{label} {stage}", n_threads, p["p50"], p["p95"], p["p99"]])
    table(
        f"Query latency in-process, {backend()} backend, ms ({len(questions)} questions x "
        f"{repeats}, Engine.ask, hybrid retrieval)",
        ["stage", "model threads", "p50", "p95", "p99"],
        rows,
    )
