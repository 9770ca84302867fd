"""What every section shares: the options, the results file, percentiles, RSS, machine
facts, the tables, the child processes and the bundled data."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "eval" / "bench.py"
BUNDLED_CORPUS = ROOT / "corpus"
BUNDLED_QUESTIONS = ROOT / "eval" / "bundled.jsonl"
SCIFACT = Path("/work/shared/data/scifact")
SQUAD2_DEV = SCIFACT.parent / "squad2" / "dev-v2.0-part-a.json"
SLO_P99_MS = 250.0  # a rate counts as sustained only if p99 stays under this (--slo-p99-ms)


@dataclass(frozen=True, slots=True)
class Options:
    """The command line's options that the sections read (eval/bench.py documents them)."""

    quick: bool = False
    out: Path = Path("bench.json")
    sizes: str | None = None
    server_workers: int = 1
    batching: str = "on"
    reader_cache: str = "off"
    rate: float | None = None
    http_seconds: float | None = None
    rate_limit: int = 0
    slo_p99_ms: float = SLO_P99_MS
    limit: int | None = None
    batch_sizes: str = "16,32,64,128"


class Bench:
    """One run: its options, its work directory and the results, saved after each step."""

    def __init__(self, options: Options, workdir: Path) -> None:
        self.options = options
        self.quick = options.quick
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

    def save(self) -> None:
        Path(self.options.out).write_text(json.dumps(self.results, indent=2), encoding="utf-8")


# ---------------------------------------------------------------- measurements
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the machine
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


# ---------------------------------------------------------------- output
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


# ---------------------------------------------------------------- child processes
def run_child(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run eval/bench.py as a child (`--child ...`): a fresh process, so its peak RSS and its
    cold start are its own. The child prints one JSON object as its last line."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the data
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
