"""`rag serve` on 127.0.0.1 for the sections that talk HTTP, and its /metrics."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from .common import ROOT, free_port


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
) -> Iterator[tuple[str, float, int]]:
    """Start `rag serve` on 127.0.0.1 and yield (base url, seconds until /ready said 200,
    the server's process id)."""
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
