"""Sections `scaling` (flat, HNSW and IVF on synthetic vectors by size) and `tuning` (the
HNSW/IVF parameter sweep behind index/vectors.py), and the synthetic vectors they use."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .common import SCIFACT, Bench, current_rss_mb, percentiles, table

DIM = 384


def synthetic(
    n: int, seed: int = 0, dim: int = DIM, clusters: int | None = None, chunk: int = 100_000
) -> np.ndarray:
    """`n` normalised vectors shaped like sentence embeddings rather than uniform noise:
    a mixture of Gaussian clusters (one per 20 vectors: a bigger corpus has more topics, not
    denser ones) in a 64-d latent space, projected to `dim` and blurred with isotropic noise.
    Uniform random vectors in 384-d have no neighbours worth the name (every point is nearly
    equidistant) and make every ANN index look broken. At 18k vectors these give top-1/10/100
    similarities of 0.57/0.46/0.31 and an HNSW recall curve close to that of the SciFact
    chunks embedded with MiniLM (0.68/0.52/0.40), and a harder IVF one."""
    rng = np.random.default_rng(seed)
    latent = 64
    clusters = clusters or max(50, n // 20)
    centers = rng.standard_normal((clusters, latent), dtype=np.float32)
    projection = rng.standard_normal((latent, dim), dtype=np.float32) / np.sqrt(latent)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = rng.integers(0, clusters, m)
        points = centers[z] + rng.standard_normal((m, latent), dtype=np.float32)
        x = points @ projection + 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x
    return out


def synthetic_split(n: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Database and held-out queries from the same distribution."""
    x = synthetic(n + n_queries, seed, clusters=max(50, n // 20))
    return x[:n], x[n:]


def stable_ids(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    ids = np.unique(rng.integers(1, 2**63 - 1, size=int(n * 1.01) + 16, dtype=np.int64))
    return rng.permutation(ids)[:n]


def exact_neighbours(xb: np.ndarray, xq: np.ndarray, k: int = 10) -> np.ndarray:
    import faiss

    flat = faiss.IndexFlatIP(xb.shape[1])
    flat.add(xb)
    return flat.search(xq, k)[1]


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    hits = sum(
        len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)
    )
    return round(hits / (k * len(truth)), 4)


def single_query_search(
    index: Any, queries: np.ndarray, k: int = 10
) -> tuple[np.ndarray, list[float], float]:
    """One query at a time through `index.vectors.search`: the labels, the wall-clock
    latency of each query and the mean CPU time of this thread per query (ms). FAISS runs a
    single query on one thread, so the CPU time is close to the latency on an idle core,
    whatever else the machine runs. (The thread clock ticks in 4 ms steps here, so only its
    mean over many queries means anything.)"""
    from index import vectors

    labels = np.empty((len(queries), k), dtype=np.int64)
    wall = []
    vectors.limit_threads_of_this_thread(1)  # as the server searches (Settings.search_threads)
    cpu = time.thread_time()
    try:
        for i, q in enumerate(queries):
            t = time.perf_counter()
            _, found = vectors.search(index, q[None, :], k)
            wall.append((time.perf_counter() - t) * 1000)
            labels[i] = found[0]
    finally:
        vectors.limit_threads_of_this_thread(os.cpu_count() or 1)  # builds use every core
    cpu_ms = (time.thread_time() - cpu) * 1000 / max(1, len(queries))
    return labels, wall, round(cpu_ms, 3)


def index_bytes(index: Any) -> int:
    import faiss

    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(index, f.name)
        return os.path.getsize(f.name)


def scale_one(n: int, n_queries: int) -> list[dict[str, Any]]:
    from index import vectors

    xb, xq = synthetic_split(n, n_queries)
    ids = stable_ids(n)
    truth_pos = exact_neighbours(xb, xq)
    truth = ids[truth_pos]
    out = []
    for kind in ("flat", "hnsw", "ivf"):
        rss = current_rss_mb()
        t = time.perf_counter()
        index = vectors.build(xb, ids, kind)
        build_s = time.perf_counter() - t
        rss_delta = current_rss_mb() - rss
        labels, times, cpu = single_query_search(index, xq)
        spec = vectors.describe(index)
        out.append(
            {
                "n": n,
                "type": kind,
                "params": ", ".join(f"{k}={v}" for k, v in spec.params.items()) or "-",
                "build_s": round(build_s, 2),
                "memory_mb": round(index_bytes(index) / 2**20, 1),
                "rss_delta_mb": round(rss_delta, 1),
                "latency_ms": percentiles(times, (50, 95, 99)),
                "cpu_ms_mean": cpu,
                "recall@10": recall_at(labels, truth),
            }
        )
        del index
    return out


def sweep(xb: np.ndarray, xq: np.ndarray, *, quick: bool) -> dict[str, Any]:
    """Recall@10 and single-query latency of HNSW (M, efConstruction, efSearch) and IVF
    (nlist, nprobe) on one data set: the measurements behind the defaults in index/vectors.py."""
    import faiss

    from index import vectors

    ids = stable_ids(len(xb))
    truth = ids[exact_neighbours(xb, xq)]
    rows = []

    def measure(
        index: Any,
        label: str,
        build: str,
        build_s: float,
        search: str,
        set_param: Callable[[], None],
    ) -> None:
        set_param()
        labels, times, cpu = single_query_search(index, xq)
        rows.append(
            {
                "type": label,
                "build": build,
                "search": search,
                "build_s": round(build_s, 2),
                "latency_ms": percentiles(times, (50, 99)),
                "cpu_ms_mean": cpu,
                "recall@10": recall_at(labels, truth),
            }
        )
        print(
            f"  {label} {build} (built in {build_s:.1f} s) {search}: "
            f"recall@10 {rows[-1]['recall@10']}, "
            f"p50 {rows[-1]['latency_ms']['p50']} ms (cpu {rows[-1]['cpu_ms_mean']} ms)",
            flush=True,
        )

    t = time.perf_counter()
    flat = vectors.build(xb, ids, "flat")
    measure(flat, "flat", "-", time.perf_counter() - t, "-", lambda: None)
    del flat
    hnsw_builds = (
        [(16, 40), (32, 40), (32, 80)]
        if quick
        else [(16, 40), (16, 80), (32, 40), (32, 80), (32, 200), (48, 80)]
    )
    for m, ef_c in hnsw_builds:
        t = time.perf_counter()
        index = vectors.build(xb, ids, "hnsw", {"M": m, "efConstruction": ef_c, "efSearch": 64})
        build_s = time.perf_counter() - t
        inner = vectors.inner_index(index)
        for ef in (16, 32, 64, 128, 256, 512):

            def set_ef(ef: int = ef, inner: Any = inner) -> None:
                inner.hnsw.efSearch = ef

            measure(index, "hnsw", f"M={m}, efC={ef_c}", build_s, f"efSearch={ef}", set_ef)
        del index
    nlist = vectors.ivf_lists(len(xb))
    t = time.perf_counter()
    index = vectors.build(xb, ids, "ivf", {"nprobe": 1})
    build_s = time.perf_counter() - t
    inner = vectors.inner_index(index)
    for nprobe in (4, 16, 32, 64, 128, 256, 512):

        def set_nprobe(p: int = nprobe) -> None:
            inner.nprobe = p

        measure(index, "ivf", f"nlist={nlist}", build_s, f"nprobe={nprobe}", set_nprobe)
    del index
    faiss.omp_set_num_threads(faiss.omp_get_max_threads())
    return {"n": len(xb), "queries": len(xq), "rows": rows}


def scifact_vectors(index_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The chunk vectors of a SciFact index and the SciFact queries, embedded."""
    from index import Index
    from index import vectors as vec
    from rag.embed.embedding import Embedder

    index = Index.load(index_path, verify=False)
    xb = vec.reconstruct(index.faiss_index, vec.ids_of(index.faiss_index))
    with open(SCIFACT / "queries.jsonl", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f if line.strip()]
    xq = Embedder(index.manifest.model).encode(queries)
    index.close()
    return xb, xq


def scaling(bench: Bench) -> None:
    sizes = [10_000, 100_000] if bench.quick else [10_000, 100_000, 1_000_000]
    if bench.options.sizes:
        sizes = [int(s) for s in bench.options.sizes.split(",")]
    n_queries = 300 if bench.quick else 1000
    out = []
    rows = []
    for n in sizes:
        for r in scale_one(n, n_queries):
            out.append(r)
            rows.append(
                [
                    f"{n:,}",
                    r["type"],
                    r["params"],
                    r["build_s"],
                    r["memory_mb"],
                    r["latency_ms"]["p50"],
                    r["latency_ms"]["p99"],
                    r["cpu_ms_mean"],
                    r["recall@10"],
                ]
            )
            print(
                f"  {n:,} {r['type']}: build {r['build_s']} s, p50 "
                f"{r['latency_ms']['p50']} ms (cpu {r['cpu_ms_mean']} ms), "
                f"recall@10 {r['recall@10']}",
                flush=True,
            )
        bench.results["scaling"] = out
        bench.save()
    table(
        f"Vector search on synthetic data ({DIM}-d, normalised, seed 0; single-query "
        f"latency over {n_queries} queries: wall-clock percentiles and mean CPU time; "
        "recall@10 against exact)",
        [
            "vectors",
            "index",
            "params",
            "build s",
            "memory MB",
            "p50 ms",
            "p99 ms",
            "cpu ms",
            "recall@10",
        ],
        rows,
    )


def tuning(bench: Bench) -> None:
    n = 20_000 if bench.quick else 100_000
    out = {"synthetic": sweep(*synthetic_split(n, 1000), quick=bench.quick)}
    scifact = bench.workdir / "scifact" / "index"
    if (scifact / "CURRENT").exists() and (SCIFACT / "queries.jsonl").exists():
        out["scifact"] = sweep(*scifact_vectors(scifact), quick=bench.quick)
    bench.results["tuning"] = out
    for name, res in out.items():
        rows = [
            [
                r["type"],
                r["build"],
                r["search"],
                r["build_s"],
                r["latency_ms"]["p50"],
                r["cpu_ms_mean"],
                r["recall@10"],
            ]
            for r in res["rows"]
        ]
        table(
            f"Parameter sweep on {name} ({res['n']:,} vectors, {res['queries']} queries)",
            ["index", "build params", "search", "build s", "p50 ms", "cpu ms", "recall@10"],
            rows,
        )
