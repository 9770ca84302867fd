"""Benchmark rag-cited on this machine: cold start, indexing, query latency, HTTP load and
vector-search scaling. Prints a table per section and writes everything to a JSON file.

    python eval/bench.py                      # all sections, full sizes (1M vectors: ~1 h)
    python eval/bench.py --quick              # smaller: SciFact 500 docs, 10k/100k vectors
    python eval/bench.py --sections scaling --out scaling.json
    python eval/bench.py --sections tuning    # the sweep behind the index parameters
    python eval/bench.py --backend onnx --sections cold http   # another embedding backend
    python eval/bench.py --sections http --rate 150 --batching both  # the issue's load test
    python eval/bench.py --sections knobs --limit 500   # indexing batch sizes x backends
    python eval/bench.py --sections reader    # windows read: SQuAD 2.0 dev F1 against latency

Sections: cold, indexing, query, http, scaling; tuning and knobs (not in the default set).
Traffic goes only to a server this script starts on 127.0.0.1. Indexes are written to a
temporary directory (or --workdir), never into the repository.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CORPUS = ROOT / "corpus"
BUNDLED_QUESTIONS = ROOT / "eval" / "bundled.jsonl"
SCIFACT = Path("/work/shared/data/scifact")
SECTIONS = ("cold", "indexing", "query", "http", "scaling")
ALL_SECTIONS = (*SECTIONS, "tuning", "knobs", "reader", "writes")
SQUAD2_DEV = SCIFACT.parent / "squad2" / "dev-v2.0-part-a.json"
READER_WINDOWS = (1, 2, 3, 4, 6)
DIM = 384
SLO_P99_MS = 250.0  # a rate counts as sustained only if p99 stays under this (--slo-p99-ms)
CLIENTS = 16


# ---------------------------------------------------------------- small helpers
def percentiles(values: Sequence[float], qs: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    if not values:
        return {f"p{q}": float("nan") for q in qs}
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{q}": round(float(np.percentile(arr, q)), 3) for q in qs}


def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is in KiB on Linux)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    import faiss

    cpu = platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0.0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem, 1),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "torch": version("torch"),
        "onnxruntime": version("onnxruntime"),
        "embedding_backend": backend(),
        "faiss_threads": faiss.omp_get_max_threads(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if math.isnan(v):
                return "-"
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return "-" if v is None else str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)
    ]
    print(f"\n## {title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def run_child(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run this script as a child (`--child ...`): a fresh process, so its peak RSS and its
    cold start are its own. The child prints one JSON object as its last line."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def backend() -> str:
    """The embedding backend the sections run with (--backend, else the configured one)."""
    from rag.config import Settings

    return Settings().embedding_backend


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def load_questions() -> list[str]:
    with open(BUNDLED_QUESTIONS, encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f if line.strip()]


def case_variant(text: str, n: int) -> str:
    """`text` with the case of its letters flipped by a pattern seeded by `n`. The model is
    uncased and BM25 lower-cases, so the work and the answer are the same, but the query
    cache (keyed by the exact text) misses: a cold-cache request for every `n`."""
    if n == 0:
        return text
    rng = np.random.default_rng(n)
    flips = rng.random(len(text)) < 0.5
    return "".join(c.swapcase() if f else c for c, f in zip(text, flips, strict=True))


# ---------------------------------------------------------------- corpora
def scifact_documents(limit: int | None) -> list[Any]:
    from index import Document
    from rag.ingest.cleaning import normalize

    docs = []
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if limit is not None and len(docs) >= limit:
                break
            row = json.loads(line)
            docs.append(
                Document(
                    id=str(row["_id"]),
                    title=row.get("title", ""),
                    text=normalize(row.get("title", "") + "\n\n" + row.get("text", "")),
                )
            )
    return docs


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


# ---------------------------------------------------------------- the server
def rag_command() -> list[str]:
    exe = shutil.which("rag", path=str(Path(sys.executable).parent)) or shutil.which("rag")
    return [exe] if exe else [sys.executable, "-m", "rag.cli"]


def serve_help_works() -> bool:
    try:
        proc = subprocess.run(
            [*rag_command(), "serve", "--help"], capture_output=True, timeout=120, cwd=ROOT
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@contextlib.contextmanager
def server(
    index_path: Path,
    log: Path,
    timeout: float = 300,
    workers: int = 1,
    env: dict[str, str] | None = None,
) -> Iterator[tuple[str, float]]:
    """Start `rag serve` on 127.0.0.1 and yield (base url, seconds until /ready said 200,
    the server's process id)."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # All benchmark clients share 127.0.0.1, so the per-client rate limit is off.
    env = {
        **os.environ,
        "RAG_INDEX_PATH": str(index_path),
        "HF_HUB_OFFLINE": "1",
        "RAG_RATE_LIMIT_PER_MINUTE": "0",
        **(env or {}),
    }
    env.pop("RAG_READ_API_KEY", None)
    with open(log, "ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [
                *rag_command(),
                "serve",
                "--index",
                str(index_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        try:
            ready = None
            with httpx.Client(timeout=2.0) as client:
                while time.perf_counter() - started < timeout:
                    if proc.poll() is not None:
                        raise RuntimeError(f"rag serve exited with {proc.returncode}; see {log}")
                    with contextlib.suppress(httpx.TransportError):
                        if client.get(f"{url}/ready").status_code == 200:
                            ready = time.perf_counter() - started
                            break
                    time.sleep(0.01)
            if ready is None:
                raise RuntimeError(f"rag serve was not ready after {timeout} s; see {log}")
            yield url, ready, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def scrape(url: str) -> dict[str, float] | None:
    """The unlabelled samples of the server's /metrics, by name; None if it cannot be read."""
    import httpx

    try:
        text = httpx.get(f"{url}/metrics", timeout=10.0).text
    except httpx.HTTPError:
        return None
    samples = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and not parts[0].startswith("#"):
            samples[parts[0]] = float(parts[1])
    return samples


def load_metrics(url: str) -> dict[str, float] | None:
    """The load timings the server exports on /metrics, if it does."""
    names = {"rag_model_load_seconds": "model", "rag_index_load_seconds": "index"}
    found = {names[k]: v for k, v in (scrape(url) or {}).items() if k in names}
    return found if len(found) == 2 else None


def batch_metrics(url: str) -> dict[str, float] | None:
    """The server's micro-batching counters from /metrics (rag_query_batch_*), if any."""
    samples = (scrape(url) or {}).items()
    found = {k.removeprefix("rag_query_"): v for k, v in samples if k.startswith("rag_query_batch")}
    return found or None


# ---------------------------------------------------------------- sections
class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.quick: bool = args.quick
        self.workdir = workdir
        self.results: dict[str, Any] = {}

    @property
    def bundled_index(self) -> Path:
        return self.workdir / "bundled" / "index"

    def ensure_bundled_index(self) -> Path:
        if not (self.bundled_index / "CURRENT").exists():
            run_child(
                ["--child", "index", "--corpus", "bundled", "--index-path", str(self.bundled_index)]
            )
        return self.bundled_index

    # -- cold start
    def cold(self) -> None:
        index = self.ensure_bundled_index()
        runs = 2 if self.quick else 5
        parts = []
        for _ in range(runs):
            parts.append(
                run_child(
                    [
                        "--child",
                        "load",
                        "--index-path",
                        str(index),
                        "--spawned-at",
                        repr(time.time()),
                    ]
                )
            )
        keys = ["interpreter_start", "app_imports", "index_load", "framework_import", "model_load"]
        median = {k: round(float(np.median([p[k] for p in parts])), 3) for k in keys}
        breakdown_total = sum(median.values())
        out: dict[str, Any] = {
            "runs": runs,
            "breakdown_runs": parts,
            "breakdown_median_s": median,
            "breakdown_total_s": round(breakdown_total, 3),
            "share": {k: round(v / breakdown_total, 3) for k, v in median.items()},
            "first_query_embed_s": round(
                float(np.median([p["first_query_embed"] for p in parts])), 3
            ),
            "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
        }
        if serve_help_works():
            ready, reported = [], []
            for _ in range(runs):
                with server(index, self.workdir / "serve-cold.log") as (url, seconds, _):
                    ready.append(round(seconds, 3))
                    reported.append(load_metrics(url))
            out["serve_ready_s"] = ready
            out["serve_ready_median_s"] = round(float(np.median(ready)), 3)
            out["server_overhead_s"] = round(out["serve_ready_median_s"] - breakdown_total, 3)
            if all(reported):
                # the server's own timings (/metrics): its model load includes importing torch
                out["server_reported_median_s"] = {
                    k: round(float(np.median([r[k] for r in reported])), 3)
                    for k in ("model", "index")
                }
        else:
            out["serve_ready_s"] = None
            out["note"] = "`rag serve` is not available: only the in-process breakdown ran"
        self.results["cold_start"] = out
        rows = [[k, median[k], f"{100 * out['share'][k]:.1f}"] for k in keys]
        rows.append(["sum of parts", round(breakdown_total, 3), "100.0"])
        if out.get("serve_ready_median_s") is not None:
            rows.append(["rag serve: spawn -> /ready 200", out["serve_ready_median_s"], None])
            rows.append(["  of which uvicorn + app startup", out["server_overhead_s"], None])
            if "server_reported_median_s" in out:
                r = out["server_reported_median_s"]
                share = {k: f"{100 * v / out['serve_ready_median_s']:.1f}" for k, v in r.items()}
                label = "  server: model load (+ framework import)"
                rows.append([label, r["model"], share["model"]])
                rows.append(["  server: index load", r["index"], share["index"]])
        rows.append(["first question's embedding, after", out["first_query_embed_s"], None])
        table(
            f"Cold start, {backend()} backend (median of {runs} runs; page cache warm)",
            ["part", "seconds", "%"],
            rows,
        )

    # -- indexing
    def indexing(self) -> None:
        rows = []
        runs = {}
        if self.bundled_index.exists():
            shutil.rmtree(self.bundled_index.parent)
        runs["bundled"] = run_child(
            ["--child", "index", "--corpus", "bundled", "--index-path", str(self.bundled_index)]
        )
        limit = self.args.limit or (500 if self.quick else None)
        if (SCIFACT / "corpus.jsonl").exists():
            path = self.workdir / "scifact" / "index"
            if path.exists():
                shutil.rmtree(path.parent)
            args = ["--child", "index", "--corpus", "scifact", "--index-path", str(path)]
            if limit:
                args += ["--limit", str(limit)]
            runs["scifact"] = run_child(args, timeout=4 * 3600)
        for name, r in runs.items():
            rows.append(
                [
                    name,
                    r["documents"],
                    r["chunks"],
                    r["tokens"],
                    r["seconds"],
                    r["embed_seconds"],
                    r["chunks_per_s"],
                    r["tokens_per_s"],
                    r["peak_rss_mb"],
                    round(r["index_bytes"] / 2**20, 2),
                ]
            )
        self.results["indexing"] = runs
        table(
            "Indexing throughput (a fresh process per corpus; model load excluded)",
            [
                "corpus",
                "docs",
                "chunks",
                "tokens",
                "seconds",
                "embed s",
                "chunks/s",
                "tokens/s",
                "peak RSS MB",
                "index MB",
            ],
            rows,
        )

    # -- in-process query latency
    def query(self) -> None:
        from rag.config import Settings
        from rag.engine import Engine

        index = self.ensure_bundled_index()
        from index import vectors

        engine = Engine.load(Settings(index_path=index))
        engine.search_threads = 1  # as the server does
        questions = load_questions()
        repeats = 2 if self.quick else 5
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
        self.results["query_in_process"] = out
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

    # -- HTTP
    def http(self) -> None:
        if not serve_help_works():
            self.results["http"] = {"skipped": "`rag serve` is not available"}
            print("\n## HTTP: skipped, `rag serve` is not available")
            return
        modes = {"on": ["on"], "off": ["off"], "both": ["off", "on"]}[self.args.batching]
        self.results["http"] = {}
        for mode in modes:
            self.results["http"][f"batching_{mode}"] = self._http_one(mode == "on")
            self.save()

    def _http_one(self, batching: bool) -> dict[str, Any]:
        index = self.ensure_bundled_index()
        questions = load_questions()
        workers = self.args.server_workers
        env = {"RAG_QUERY_BATCHING": "1" if batching else "0"}
        # The questions repeat (in case variants, which the uncased reader reads alike): with
        # the reader's window cache on, nearly every request after the first round is a hit.
        if self.args.reader_cache == "off":
            env["RAG_READER_CACHE_WINDOWS"] = "0"
        if self.args.rate_limit:  # the limiter's cost: a limit no client reaches
            env["RAG_RATE_LIMIT_PER_MINUTE"] = str(self.args.rate_limit)
            env["RAG_RATE_LIMIT_BURST"] = str(self.args.rate_limit)
        label = f"batching {'on' if batching else 'off'}, reader cache {self.args.reader_cache}"
        log = self.workdir / "serve-http.log"
        with server(index, log, workers=workers, env=env) as (url, _, pid):
            serial = run_async(serial_asks(url, questions, 1 if self.quick else 3, pid))
            step = 10.0 if self.quick else 15.0
            duration = self.args.http_seconds or (15.0 if self.quick else 30.0)
            ramp: list[dict[str, Any]] = []
            counter = [1_000_000 * (2 if batching else 1)]

            def attempt(rate: float, seconds: float = step) -> dict[str, Any]:
                r = run_async(fixed_rate(url, questions, rate, seconds, CLIENTS, counter, pid))
                ramp.append(r)
                print(
                    f"  {label}: {rate:6.2f} req/s offered for {seconds:.0f} s -> "
                    f"{r['achieved_rps']:6.2f} done, {r['errors']} errors, "
                    f"p50 {r['latency_ms']['p50']:.0f} ms, p99 {r['latency_ms']['p99']:.0f} ms; "
                    f"CPU ms a request: server {r['server_cpu_ms_per_request']}, "
                    f"client {r['client_cpu_ms_per_request']}; load {r['load_average'][0]}",
                    flush=True,
                )
                return r

            best = sustained_run = None
            if self.args.rate:  # one run at the given arrival rate, e.g. the issue's 150 req/s
                sustained_run = attempt(self.args.rate, duration)
                best = sustained_run if sustained(sustained_run) else None
            else:
                # from half the serial rate, up by 1.25x while sustained, else down by 1.5x
                rate = max(0.2, 0.5 * serial["achieved_rps"])
                first = attempt(rate)
                if sustained(first):
                    best = first
                    for _ in range(12):
                        rate *= 1.25
                        r = attempt(rate)
                        if not sustained(r):
                            break
                        best = r
                else:
                    while rate > 0.2 and best is None:
                        rate /= 1.5
                        r = attempt(rate)
                        if sustained(r):
                            best = r
                if best is not None:
                    sustained_run = attempt(best["offered_rps"], duration)
            server_stats = batch_metrics(url)
        result = {
            "batching": batching,
            "serial": serial,
            "ramp": ramp,
            "max_rate_sustained_rps": best["offered_rps"] if best else None,
            "sustained": sustained_run,
            "clients": CLIENTS,
            "server_workers": workers,
            "slo_p99_ms": SLO_P99_MS,
            "server_batches": server_stats,
        }
        rows = [
            [
                "serial (1 client)",
                serial["n"],
                serial["latency_ms"]["p50"],
                serial["latency_ms"]["p95"],
                serial["latency_ms"]["p99"],
                serial["achieved_rps"],
                serial["errors"],
                serial["server_cpu_ms_per_request"],
                serial["client_cpu_ms_per_request"],
                None,
            ]
        ]
        if sustained_run:
            s = sustained_run
            rows.append(
                [
                    f"{CLIENTS} clients @ {s['offered_rps']:.2f} req/s for {s['seconds']:.0f} s",
                    s["completed"],
                    s["latency_ms"]["p50"],
                    s["latency_ms"]["p95"],
                    s["latency_ms"]["p99"],
                    s["achieved_rps"],
                    s["errors"],
                    s["server_cpu_ms_per_request"],
                    s["client_cpu_ms_per_request"],
                    s["client_cpu_share"],
                ]
            )
        table(
            f"HTTP POST /ask on 127.0.0.1, `rag serve --workers {workers}`, {backend()} backend, "
            f"{label} (distinct questions: cold query cache), ms",
            [
                "load",
                "requests",
                "p50",
                "p95",
                "p99",
                "req/s",
                "errors",
                "server CPU ms/req",
                "client CPU ms/req",
                "client CPU share",
            ],
            rows,
        )
        print(
            f"{label}: highest fixed arrival rate with 0 errors and p99 <= {SLO_P99_MS:.0f} ms: "
            f"{result['max_rate_sustained_rps']} req/s; server batches: {server_stats}"
        )
        return result

    # -- synthetic vector search
    def writes(self) -> None:
        """A one-document upsert and a delete on an index of N SciFact documents, timed
        with the BM25 terms of the live generation reused (now) and with them hidden (as
        every write did before terms were saved: the whole corpus analysed again)."""
        from index.lexical import TERMS_FILE
        from rag.config import Settings
        from rag.embed.embedding import Embedder
        from rag.engine import Engine
        from rag.indexing import build_index
        from rag.writer import Writer

        n = 1000 if self.quick else 5000
        documents = scifact_documents(n + 10)
        settings = Settings(index_path=self.workdir / f"writes-{n}" / "index")
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

            for doc in documents[n : n + (3 if self.quick else 5)]:
                upserts.append(timed(lambda doc=doc: writer.upsert([doc])))
                deletes.append(timed(lambda doc=doc: writer.delete(doc.id)))
            out[label] = {"upsert_ms": percentiles(upserts), "delete_ms": percentiles(deletes)}
            rows.append([label, round(float(np.median(upserts))), round(float(np.median(deletes)))])
            print(f"  {label}: upsert p50 {rows[-1][1]} ms, delete p50 {rows[-1][2]} ms")
        self.results["writes"] = out
        self.save()
        table(
            f"Writes on an index of {n:,} SciFact documents ({out['chunks']:,} chunks; "
            f"built in {out['build_s']} s): one document each, median of "
            f"{len(upserts)}",
            ["BM25 terms", "upsert ms", "delete ms"],
            rows,
        )

    def scaling(self) -> None:
        sizes = [10_000, 100_000] if self.quick else [10_000, 100_000, 1_000_000]
        if self.args.sizes:
            sizes = [int(s) for s in self.args.sizes.split(",")]
        n_queries = 300 if self.quick else 1000
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
            self.results["scaling"] = out
            self.save()
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

    # -- parameter sweep
    def tuning(self) -> None:
        n = 20_000 if self.quick else 100_000
        out = {"synthetic": sweep(*synthetic_split(n, 1000), quick=self.quick)}
        scifact = self.workdir / "scifact" / "index"
        if (scifact / "CURRENT").exists() and (SCIFACT / "queries.jsonl").exists():
            out["scifact"] = sweep(*scifact_vectors(scifact), quick=self.quick)
        self.results["tuning"] = out
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

    # -- indexing knobs
    def knobs(self) -> None:
        """Indexing throughput on a SciFact subset by embedding batch size, for the current
        backend (both backends embed longest texts first, so batches pad little)."""
        limit = self.args.limit or 500
        rows, out = [], []
        for size in [int(b) for b in self.args.batch_sizes.split(",")]:
            path = self.workdir / f"knobs-{size}" / "index"
            shutil.rmtree(path.parent, ignore_errors=True)
            args = ["--child", "index", "--corpus", "scifact", "--index-path", str(path)]
            r = run_child([*args, "--limit", str(limit), "--batch-size", str(size)])
            shutil.rmtree(path.parent, ignore_errors=True)
            out.append(r)
            rows.append(
                [
                    r["backend"],
                    size,
                    r["documents"],
                    r["chunks"],
                    r["embed_seconds"],
                    r["documents_per_s"],
                    r["chunks_per_s"],
                    r["tokens_per_s"],
                    r["peak_rss_mb"],
                ]
            )
            print(f"  batch {size}: {r['chunks_per_s']} chunks/s", flush=True)
        self.results.setdefault("knobs", []).extend(out)
        table(
            f"Indexing SciFact ({limit} abstracts) by embedding batch size",
            [
                "backend",
                "batch",
                "docs",
                "chunks",
                "embed s",
                "docs/s",
                "chunks/s",
                "tokens/s",
                "peak RSS MB",
            ],
            rows,
        )

    # -- the reader: windows read per question against dev quality and latency
    def reader(self) -> None:
        """For each number of windows read: SQuAD 2.0 dev part A (open over its paragraphs)
        F1, HasAns F1 and NoAns accuracy, tokens read, and in-process /ask latency on the
        bundled corpus (read step and total), serial."""
        from rag.config import Settings
        from rag.embed.embedding import Embedder
        from rag.engine import Engine
        from rag.evaluation.retrieval import engine_variant
        from rag.evaluation.runner import evaluate_bundled, evaluate_squad

        settings = Settings()
        embedder = Embedder.from_settings(settings, queries=True)
        bundled = Engine.load(Settings(index_path=self.ensure_bundled_index()), embedder)
        questions = load_questions()
        limit = 200 if self.quick else None
        rows, out = [], {}
        for n in READER_WINDOWS:
            tuned = settings.model_copy(update={"reader_windows": n})
            report, predictions = evaluate_squad(
                tuned, embedder, SQUAD2_DEV, modes=["hybrid"], limit=limit
            )
            metrics = report.runs[0].metrics["all"]
            news, _ = evaluate_bundled(
                tuned, embedder, BUNDLED_QUESTIONS, modes=["hybrid"], split="report"
            )
            news_m = news.runs[0].metrics["report"]
            # the reader's window cache off: every ask below reads (its cost, not a lookup's)
            engine = engine_variant(bundled, reader_windows=n, reader_cache_windows=0)
            for q in questions[:5]:
                engine.ask(q)
            reads, totals, tokens, cpu = [], [], [], []
            for _ in range(2 if self.quick else 5):
                for q in questions:
                    c0 = time.process_time()
                    r = engine.ask(q)
                    # CPU time of every thread: the cost, even on a machine that is not idle
                    cpu.append((time.process_time() - c0) * 1000)
                    reads.append(r.timings_ms.get("read", float("nan")))
                    totals.append(r.timings_ms["total"])
            for q in questions:
                tokens.append(_tokens_read(engine, q))
            out[str(n)] = {
                "squad2_f1": metrics["squad_f1"],
                "has_ans_f1": metrics["has_ans_f1"],
                "no_ans_accuracy": metrics["no_ans_accuracy"],
                "report_answer_accuracy": news_m["answer_accuracy"],
                "report_abstention_f1": news_m["abstention_f1"],
                "tokens_read_mean": round(float(np.mean(tokens)), 1),
                "read_ms": percentiles(reads),
                "ask_cpu_ms": percentiles(cpu),
                "total_ms": percentiles(totals),
            }
            rows.append(
                [
                    n,
                    out[str(n)]["tokens_read_mean"],
                    f"{metrics['squad_f1']:.3f}",
                    f"{metrics['has_ans_f1']:.3f}",
                    f"{metrics['no_ans_accuracy']:.3f}",
                    f"{news_m['answer_accuracy']:.3f}",
                    f"{news_m['abstention_f1']:.3f}",
                    out[str(n)]["read_ms"]["p50"],
                    out[str(n)]["total_ms"]["p50"],
                    out[str(n)]["total_ms"]["p99"],
                    out[str(n)]["ask_cpu_ms"]["p50"],
                ]
            )
        self.results["reader"] = out
        table(
            "reader: windows read per question (SQuAD 2.0 dev part A, open; bundled report split; "
            "bundled latency)",
            [
                "windows",
                "tokens",
                "F1",
                "HasAns F1",
                "NoAns acc",
                "report acc",
                "report abst F1",
                "read p50 ms",
                "ask p50 ms",
                "ask p99 ms",
                "ask CPU p50 ms",
            ],
            rows,
        )

    def save(self) -> None:
        Path(self.args.out).write_text(json.dumps(self.results, indent=2), encoding="utf-8")


def _tokens_read(engine: Any, question: str) -> int:
    """Tokens the reader reads for one question (question and context, every window)."""
    from rag.answer.reading import reading_windows

    if engine.reader is None:
        return 0
    passages = engine.retrieve(question)
    windows = reading_windows(engine.reader, question, passages, engine.settings.reader_windows)
    return sum(
        len(w.input_ids)
        for rw in windows
        for w in engine.reader.windows(question, rw.passage.text[rw.start : rw.end])
    )


def sustained(r: dict[str, Any]) -> bool:
    return (
        r["errors"] == 0
        and r["completed"] >= 0.95 * r["scheduled"]
        and r["latency_ms"]["p99"] <= SLO_P99_MS
    )


class HttpConnection(asyncio.Protocol):
    """A lean HTTP/1.1 keep-alive connection for the load generator: one request at a time,
    responses with a Content-Length (what uvicorn sends for JSON). The generator shares
    the CPUs with the server it measures, and httpx's AsyncClient cost about 2 ms of CPU a
    request (0.3 of a core at 150 req/s); this costs a tenth of that."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a uvloop or asyncio Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" or (name == b"connection" and b"close" in value):
                self.closed = True  # not kept alive; chunked bodies are not read either
        if length is None:
            self.waiter.set_exception(ConnectionError("a response without Content-Length"))
            return
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        self.waiter.set_result((int(head[9:12]), body))

    async def post_json(self, path: str, payload: bytes, timeout: float) -> tuple[int, bytes]:
        """POST `payload` (JSON) to `path`: (status, body)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionError("the connection is closed")
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"POST %s HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (path.encode(), len(payload), payload)
        )
        async with asyncio.timeout(timeout):
            return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """Keeps one `HttpConnection` per concurrent caller (`clients` at most) to `url`."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        address = url.removeprefix("http://").rstrip("/")
        host, _, port = address.partition(":")
        self.host, self.port = host, int(port or 80)
        self.timeout = timeout
        self.idle: list[HttpConnection] = []

    async def post_json(self, path: str, body: Any) -> tuple[int, bytes]:
        """(status, body); raises OSError or TimeoutError when the exchange fails. A kept-alive
        connection the server has closed meanwhile (uvicorn closes idle ones after 5 s) is
        replaced by a new one, as browsers and httpx do."""
        payload = json.dumps(body).encode()
        while self.idle and self.idle[-1].closed:
            self.idle.pop()
        reused = bool(self.idle)
        conn = self.idle.pop() if reused else await HttpConnection.open(self.host, self.port)
        try:
            try:
                result = await conn.post_json(path, payload, self.timeout)
            except ConnectionError:
                if not reused or conn.buffer:
                    raise
                conn.close()  # closed by the server before it answered: once more, afresh
                conn = await HttpConnection.open(self.host, self.port)
                result = await conn.post_json(path, payload, self.timeout)
        except BaseException:
            conn.close()
            raise
        if conn.closed:
            conn.close()
        else:
            self.idle.append(conn)
        return result

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


def run_async(coro: Any) -> Any:
    """Run `coro` on uvloop when it is installed (cheaper for the load generator), else on
    asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_tree_cpu_seconds(pid: int) -> float | None:
    """CPU time of process `pid` and its children (the server's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    with contextlib.suppress(OSError, ValueError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids += [int(child) for child in children]
    total = 0.0
    for p in dict.fromkeys(pids):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            if p == pid:
                return None
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def serial_asks(
    url: str, questions: list[str], repeats: int, server_pid: int | None = None
) -> dict[str, Any]:
    """One client asking every question `repeats` times, one after another."""
    latencies, server_ms = [], []
    n = errors = 0
    client = HttpClient(url, timeout=30.0)
    try:
        for q in questions[:5]:
            await client.post_json("/ask", {"question": q})
        cpu_before = cpu_seconds()
        server_before = process_tree_cpu_seconds(server_pid) if server_pid else None
        started = time.perf_counter()
        for _ in range(repeats):
            for q in questions:
                n += 1
                t = time.perf_counter()
                status, body = await client.post_json("/ask", {"question": case_variant(q, n)})
                latencies.append((time.perf_counter() - t) * 1000)
                if status != 200:
                    errors += 1
                    continue
                server_ms.append(json.loads(body)["timings_ms"]["total"])
        elapsed = time.perf_counter() - started
        client_cpu = cpu_seconds() - cpu_before
        server_after = process_tree_cpu_seconds(server_pid) if server_pid else None
    finally:
        client.close()
    server_cpu = (
        server_after - server_before
        if server_after is not None and server_before is not None
        else None
    )
    return {
        "n": n,
        "latency_ms": percentiles(latencies),
        "server_total_ms": percentiles(server_ms),
        "achieved_rps": round(n / elapsed, 2),
        "errors": errors,
        "client_cpu_ms_per_request": round(client_cpu * 1000 / n, 3),
        "server_cpu_ms_per_request": (
            round(server_cpu * 1000 / n, 3) if server_cpu is not None else None
        ),
    }


async def fixed_rate(
    url: str,
    questions: list[str],
    rate: float,
    seconds: float,
    clients: int,
    counter: list[int],
    server_pid: int | None = None,
) -> dict[str, Any]:
    """An open-loop load at a fixed arrival rate: request i is due at start + i / rate and is
    sent by the first of `clients` connections that is free. Latency runs from the due time,
    not the send time, so a slow server is not hidden by requests that wait to be sent
    (coordinated omission). Requests still queued at the end count as not completed.

    CPU: this process's (the load generator's) and, with `server_pid`, the server's, per
    completed request and as a share of the machine's cores over the run."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    next_i = 0
    client = HttpClient(url, timeout=10.0)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    deadline = start + seconds + 10.0  # let the last requests finish
    cpu_before = cpu_seconds()
    server_before = process_tree_cpu_seconds(server_pid) if server_pid else None

    async def worker() -> None:
        nonlocal next_i, errors
        while True:
            i = next_i
            if i >= total:
                return
            next_i += 1
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() > deadline:
                return
            counter[0] += 1
            question = case_variant(questions[i % len(questions)], counter[0])
            try:
                status, _ = await client.post_json("/ask", {"question": question})
                ok = status == 200
            except (OSError, TimeoutError):
                ok = False
            if ok:
                latencies.append((loop.time() - due) * 1000)
            else:
                errors += 1

    try:
        await asyncio.gather(*(worker() for _ in range(clients)))
    finally:
        client.close()
    elapsed = max(loop.time() - start, seconds)
    cores = os.cpu_count() or 1
    client_cpu = cpu_seconds() - cpu_before
    server_after = process_tree_cpu_seconds(server_pid) if server_pid else None
    server_cpu = (
        server_after - server_before
        if server_after is not None and server_before is not None
        else None
    )
    done = max(1, len(latencies))
    return {
        "offered_rps": round(rate, 2),
        "seconds": seconds,
        "scheduled": total,
        "completed": len(latencies),
        "errors": errors,
        "achieved_rps": round(len(latencies) / elapsed, 2),
        "latency_ms": percentiles(latencies, (50, 95, 99)),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / done, 3),
        "client_cpu_share": round(client_cpu / (elapsed * cores), 3),
        "server_cpu_ms_per_request": (
            round(server_cpu * 1000 / done, 3) if server_cpu is not None else None
        ),
        "server_cpu_share": (
            round(server_cpu / (elapsed * cores), 3) if server_cpu is not None else None
        ),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# ---------------------------------------------------------------- synthetic vectors
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


# ---------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes, shorter runs")
    p.add_argument("--out", default="bench.json", help="JSON file for the results")
    p.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        help=f"any of {', '.join(ALL_SECTIONS)}, or 'all'",
    )
    p.add_argument("--sizes", help="comma-separated vector counts for `scaling`")
    p.add_argument(
        "--server-workers",
        type=int,
        default=max(1, min(4, os.cpu_count() or 1)),
        help="`rag serve --workers` for `http` (default: as `rag serve` on a FAISS index)",
    )
    p.add_argument(
        "--backend",
        choices=["torch", "onnx", "onnx-int8"],
        help="embedding backend for every section (sets RAG_EMBEDDING_BACKEND)",
    )
    p.add_argument(
        "--batching",
        choices=["on", "off", "both"],
        default="on",
        help="`http`: the server's query micro-batching; both = before/after",
    )
    p.add_argument(
        "--reader-cache",
        choices=["on", "off"],
        default="off",
        help="`http`: the reader's window cache (off: every request reads, as for new "
        "questions; on: the bench's repeated questions are cache hits)",
    )
    p.add_argument(
        "--rate", type=float, help="`http`: one run at this arrival rate instead of a ramp"
    )
    p.add_argument("--http-seconds", type=float, help="`http`: length of the sustained run")
    p.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        help="`http`: the server's RAG_RATE_LIMIT_PER_MINUTE (and burst), to measure the "
        "limiter's cost; default 0, off, as the clients share one address",
    )
    p.add_argument(
        "--slo-p99-ms",
        type=float,
        default=SLO_P99_MS,
        help="`http`: p99 a rate must keep to count as sustained",
    )
    p.add_argument(
        "--limit", type=int, help="SciFact abstracts for `indexing` and `knobs` (default: all)"
    )
    p.add_argument(
        "--batch-sizes", default="16,32,64,128", help="`knobs`: embedding batch sizes to try"
    )
    p.add_argument("--workdir", type=Path, help="where indexes are built (default: a temp dir)")
    # internal: the child processes
    p.add_argument("--child", choices=["index", "load"], help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--index-path", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--spawned-at", type=float, help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    global SLO_P99_MS
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.backend:  # children and servers inherit it
        os.environ["RAG_EMBEDDING_BACKEND"] = args.backend
    SLO_P99_MS = args.slo_p99_ms
    if args.child == "index":
        result = child_index(args.corpus, args.limit, args.index_path, args.batch_size)
        print(json.dumps(result))
        return 0
    if args.child == "load":
        print(json.dumps(child_load(args.index_path, args.spawned_at)))
        return 0
    sections = list(ALL_SECTIONS) if "all" in args.sections else args.sections
    unknown = set(sections) - set(ALL_SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}: use {ALL_SECTIONS}")
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rag-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir)
    bench.results["machine"] = machine()
    bench.results["quick"] = args.quick
    bench.results["sections"] = sections
    print(
        f"benchmark ({'quick' if args.quick else 'full'}): {', '.join(sections)}; "
        f"work in {workdir}",
        flush=True,
    )
    try:
        for name in ALL_SECTIONS:
            if name in sections:
                t = time.perf_counter()
                getattr(bench, name)()
                bench.results.setdefault("section_seconds", {})[name] = round(
                    time.perf_counter() - t, 1
                )
                bench.save()
    finally:
        bench.results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        bench.save()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
