"""Limits and metrics hold for the server, not each worker (issue #20, item 1).

One real `rag serve --workers 2` serves a copy of the bundled index, with a small rate
limit and JSON logs (whose `pid` tells which worker answered). Every request goes on a
connection of its own, several at once, so that both workers take some: the kernel hands
each new connection to whichever worker accepts it first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rag.config import PROJECT_ROOT
from tests.conftest import CHIRCHIK
from tests.servers import free_port

BURST = 10
PER_MINUTE = 1  # no token comes back during the test
WORKERS = 2


@dataclass
class MultiServer:
    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def entries(self) -> list[dict]:
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def pids(self, **match: object) -> set[int]:
        """The workers that logged an access line with these fields."""
        return {
            e["pid"]
            for e in self.entries()
            if e.get("logger") == "api.access" and all(e.get(k) == v for k, v in match.items())
        }


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.fixture(scope="module")
def server(bundled_settings, tmp_path_factory) -> Iterator[MultiServer]:
    tmp = tmp_path_factory.mktemp("workers")
    shutil.copytree(bundled_settings.index_path, tmp / "index")
    port = free_port()
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAG_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    environ.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        RAG_LOG_JSON="1",
        RAG_QUERY_BATCHING="1",
        RAG_RATE_LIMIT_PER_MINUTE=str(PER_MINUTE),
        RAG_RATE_LIMIT_BURST=str(BURST),
    )
    command = [sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(WORKERS), "--index", str(tmp / "index")]
    log = tmp / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    found = MultiServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 240
        while True:  # both workers loaded: each logs its start once its index is in
            started = {
                e["pid"] for e in found.entries() if e["message"] == "Application startup complete."
            }
            if len(started) == WORKERS:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start two workers:\n{found.output()[-5000:]}")
            time.sleep(0.3)
        yield found
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def on_new_connections(url: str, n: int, request: Callable[[httpx.Client], httpx.Response]):
    """`n` requests, each on a fresh connection, four at a time."""

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as client:
            return request(client)

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(n)))


def as_client(ip: str) -> dict[str, str]:
    """uvicorn trusts X-Forwarded-For from loopback: the request comes from `ip`."""
    return {"X-Forwarded-For": ip}


def total(text: str, family: str, sample: str, **labels: str) -> float:
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_the_rate_limit_holds_across_workers(server):
    """BURST requests pass and the rest get 429, whichever worker takes them; per worker
    buckets let 2 x BURST through."""
    headers = as_client("10.9.0.1")
    responses = on_new_connections(
        server.url,
        3 * BURST,
        lambda c: c.get("/documents", params={"limit": 1}, headers=headers),
    )
    statuses = [r.status_code for r in responses]
    assert len(server.pids(client="10.9.0.1")) == WORKERS, "both workers must have taken some"
    assert statuses.count(200) == BURST, statuses
    assert statuses.count(429) == 2 * BURST, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # another client still has its own full bucket
    other = on_new_connections(
        server.url,
        2,
        lambda c: c.get("/documents", params={"limit": 1}, headers=as_client("10.9.0.2")),
    )
    assert [r.status_code for r in other] == [200, 200]


def test_one_scrape_sums_the_requests_of_all_workers(server):
    k = 24
    before = httpx.get(server.url + "/metrics", timeout=30).text
    responses = on_new_connections(server.url, k, lambda c: c.get("/health"))
    assert all(r.status_code == 200 for r in responses)
    assert len(server.pids(route="/health")) == WORKERS, "both workers must have taken some"
    after = httpx.get(server.url + "/metrics", timeout=30).text
    name, sample = "rag_http_requests", "rag_http_requests_total"
    counted = total(after, name, sample, route="/health", status="200")
    assert counted - total(before, name, sample, route="/health", status="200") == k
    # the scrape in progress is the one request being handled, in either worker
    assert total(after, "rag_http_requests_in_progress", "rag_http_requests_in_progress") == 1
    latency = "rag_http_request_duration_seconds"
    assert total(after, latency, f"{latency}_count", route="/health") == counted


def test_one_scrape_sums_the_micro_batches_of_all_workers(server):
    family, sample = "rag_query_batch_requests", "rag_query_batch_requests_total"
    before = total(httpx.get(server.url + "/metrics", timeout=30).text, family, sample)
    asks = 6
    numbers = iter(range(asks))  # distinct questions: a cached one is not embedded again

    def ask(client: httpx.Client) -> httpx.Response:
        i = next(numbers)
        question = f"{CHIRCHIK} ({i})"
        return client.post("/ask", json={"question": question}, headers=as_client(f"10.9.1.{i}"))

    responses = on_new_connections(server.url, asks, ask)
    assert [r.status_code for r in responses] == [200] * asks
    after = httpx.get(server.url + "/metrics", timeout=30).text
    assert total(after, family, sample) - before == asks
    assert total(after, "rag_query_batch_largest", "rag_query_batch_largest") >= 1


def test_rag_serve_removes_its_run_folder(bundled_settings, tmp_path):
    """The folder the workers share is private (0700) and gone once the server stops."""
    shutil.copytree(bundled_settings.index_path, tmp_path / "index")
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAG_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    environ.update(HF_HUB_OFFLINE="1", RAG_INDEX_PATH=str(tmp_path / "no-index"))
    port = free_port()
    command = [sys.executable, "-m", "rag.cli", "serve", "--host", "127.0.0.1", "--port"]
    command += [str(port), "--workers", "2", "--allow-empty"]
    with (tmp_path / "serve.log").open("w") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 120
        run_dir = None
        while run_dir is None and time.monotonic() < deadline and process.poll() is None:
            for child in _children(process.pid):
                variables = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
                for variable in variables:
                    if variable.startswith(b"RAG_RUN_DIR="):
                        run_dir = Path(variable.split(b"=", 1)[1].decode())
            time.sleep(0.2)
        assert run_dir is not None, (tmp_path / "serve.log").read_text()
        deadline = time.monotonic() + 120
        while not (run_dir / "ratelimit.sqlite").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run_dir.stat().st_mode & 0o777 == 0o700
        assert (run_dir / "ratelimit.sqlite").exists()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not run_dir.exists()


def test_shared_buckets_are_one_bucket_per_key_across_processes(tmp_path):
    """Two limiters on the same file (as two workers) spend the same tokens."""
    from api.ratelimit import SharedTokenBuckets

    now = [0.0]
    a, b = (
        SharedTokenBuckets(tmp_path / "b.sqlite", 60, 3, max_keys=4, clock=lambda: now[0])
        for _ in range(2)
    )
    assert [a.take("x"), b.take("x"), a.take("x")] == [0.0, 0.0, 0.0]
    assert b.take("x") == pytest.approx(1.0)
    now[0] += 1.0
    assert a.take("x") == 0.0
    assert b.take("y") == 0.0
    a.PRUNE_EVERY = b.PRUNE_EVERY = 1
    for key in "cdefgh":
        (a if key < "f" else b).take(key)
    assert len(a) <= 4


def test_shared_buckets_fall_back_to_this_worker_when_the_file_fails(tmp_path, caplog):
    from api.ratelimit import SharedTokenBuckets

    buckets = SharedTokenBuckets(tmp_path / "b.sqlite", 60, 1)
    buckets._db.close()  # any sqlite3.Error from now on
    assert buckets.take("x") == 0.0
    assert buckets.take("x") > 0
    assert "limiting per worker" in caplog.text


def test_dead_workers_live_gauges_are_dropped(tmp_path):
    from api.observability import reap_dead_workers

    dead = 2**22 + 1  # above Linux's largest pid
    for name in (
        f"gauge_livesum_{dead}.db",
        f"gauge_livesum_{os.getpid()}.db",
        f"counter_{dead}.db",
    ):
        (tmp_path / name).write_bytes(b"")
    assert reap_dead_workers(str(tmp_path)) == [dead]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [f"counter_{dead}.db", f"gauge_livesum_{os.getpid()}.db"]
