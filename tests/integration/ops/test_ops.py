"""Limits and operability, against real uvicorn processes: rate limiting, request timeouts,
/metrics, request ids and access logs, and API keys kept out of the logs.

Two servers start once for the module, side by side: `ops` serves a copy of the bundled
index with API keys, a small rate limit and JSON logs at debug level; `slow` is the app with
a short request timeout and two test-only routes that take longer than that (`slow_app`
below), and no index, so it starts in seconds.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import Request
from prometheus_client.parser import text_string_to_metric_families

from api.ratelimit import TokenBuckets
from tests.conftest import CHIRCHIK, UZBEK_DOC
from tests.servers import Server, start_server, wait_until

BURST = 20
PER_MINUTE = 60  # one token a second: Retry-After is 1 s
TIMEOUT = 0.3
SLOW = 2.0
WRITE_KEY = "sk-write-" + secrets.token_hex(16)
READ_KEY = "sk-read-" + secrets.token_hex(16)


def wait_for_log(server: Server, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while text not in (output := server.output()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return output


def slow_app():
    """The app with two routes slower than its timeout (a test-only uvicorn factory): a sync
    one, run in a worker thread, which writes a file named by its request id into
    RAG_TEST_MARKERS when its work is done, and an async one."""
    import anyio

    from api.main import create_app

    app = create_app()

    @app.get("/slow-sync")
    def slow_sync(request: Request) -> dict:
        time.sleep(SLOW)
        (Path(os.environ["RAG_TEST_MARKERS"]) / request.state.request_id).write_text("done")
        return {"done": True}

    @app.get("/slow-async")
    async def slow_async() -> dict:
        await anyio.sleep(SLOW)
        return {"done": True}

    return app


@dataclass
class Servers:
    ops: Server
    slow: Server
    markers: Path


@pytest.fixture(scope="module")
def servers(bundled_settings, tmp_path_factory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("ops")
    shutil.copytree(bundled_settings.index_path, tmp / "index")
    ops = start_server(
        tmp / "ops.log",
        log_level="debug",
        RAG_INDEX_PATH=str(tmp / "index"),
        RAG_API_KEY=WRITE_KEY,
        RAG_READ_API_KEY=READ_KEY,
        RAG_LOG_JSON="1",
        RAG_RATE_LIMIT_PER_MINUTE=str(PER_MINUTE),
        RAG_RATE_LIMIT_BURST=str(BURST),
    )
    slow = start_server(
        tmp / "slow.log",
        app="tests.integration.ops.test_ops:slow_app",
        RAG_INDEX_PATH=str(tmp / "no-index-here"),
        RAG_REQUEST_TIMEOUT_SECONDS=str(TIMEOUT),
        RAG_TEST_MARKERS=str(tmp),
    )
    try:
        wait_until(slow, "/health")
        wait_until(ops, "/ready")
        yield Servers(ops, slow, tmp)
    finally:
        ops.stop()
        slow.stop()


READ = {"Authorization": f"Bearer {READ_KEY}"}


def as_client(ip: str) -> dict[str, str]:
    """Headers that make a request come from `ip`, with the read key: uvicorn trusts
    X-Forwarded-For from loopback (--forwarded-allow-ips), as from a proxy there."""
    return {"X-Forwarded-For": ip, **READ}


def assert_json_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


# rate limiting


def test_a_client_over_its_burst_gets_429_with_retry_after(servers):
    with servers.ops.client(headers=as_client("10.0.0.1")) as client:
        for _ in range(BURST):
            assert client.get("/documents", params={"limit": 1}).status_code == 200
        r = client.get("/documents", params={"limit": 1})
        error = assert_json_error(r, 429, "rate_limited")
        assert "RAG_RATE_LIMIT_PER_MINUTE" in error["message"]
        retry_after = int(r.headers["Retry-After"])
        assert 1 <= retry_after <= 2
        assert r.headers["X-Request-ID"]
        assert_json_error(client.post("/ask", json={"question": CHIRCHIK}), 429, "rate_limited")
        # probes and scrapes are exempt, and other clients have buckets of their own
        for path in ("/health", "/ready", "/metrics"):
            assert client.get(path).status_code == 200, path
        other = client.get("/documents", params={"limit": 1}, headers=as_client("10.0.0.2"))
        assert other.status_code == 200
        time.sleep(retry_after + 0.2)
        assert client.get("/documents", params={"limit": 1}).status_code == 200
    metrics = servers.ops.client().get("/metrics").text
    assert 'method="GET",route="/documents",status="429"' in metrics


def test_token_buckets_refill_at_the_rate_and_stay_bounded():
    now = [0.0]
    buckets = TokenBuckets(per_minute=60, burst=3, max_keys=4, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(1.0)
    now[0] += 0.5
    assert buckets.take("a") == pytest.approx(0.5)  # half a token back: half a second to go
    now[0] += 0.5
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0  # another key has its own bucket
    for key in "cdefgh":
        buckets.take(key)
    assert len(buckets) <= 4
    assert buckets.take("a") == 0.0  # dropped while full, so it starts full again
    with pytest.raises(ValueError):
        TokenBuckets(per_minute=0, burst=1)


# timeouts


@pytest.mark.parametrize("path", ["/slow-sync", "/slow-async"])
def test_a_request_over_the_timeout_gets_504_in_time(servers, path):
    with servers.slow.client() as client:
        started = time.monotonic()
        r = client.get(path, headers={"X-Request-ID": f"slow{path.replace('/', '-')}"})
        elapsed = time.monotonic() - started
        error = assert_json_error(r, 504, "timeout")
        assert "RAG_REQUEST_TIMEOUT_SECONDS" in error["message"]
        assert r.headers["X-Request-ID"] == f"slow{path.replace('/', '-')}"
        assert elapsed < SLOW, elapsed  # the response is bounded, not the work
        assert client.get("/health").status_code == 200  # and the server carries on
        assert f'route="{path}",status="504"' in client.get("/metrics").text
    log = wait_for_log(servers.slow, f"[slow{path.replace('/', '-')}]")
    # the plain format: time, level, logger, [request id], message
    line = rf"INFO api\.access \[slow-{path[1:]}\] GET {path} 504 [\d.]+ms client=127\.0\.0\.1"
    assert re.search(line, log), log


def test_a_worker_thread_finishes_its_work_after_the_504(servers):
    marker = servers.markers / "finishes-its-work"
    with servers.slow.client() as client:
        r = client.get("/slow-sync", headers={"X-Request-ID": marker.name})
        assert r.status_code == 504
    assert not marker.exists()
    deadline = time.monotonic() + SLOW + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "done"


# metrics


def samples(text: str) -> dict[str, list]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {name: family.samples for name, family in families.items()}


def value(found: dict[str, list], family: str, sample: str | None = None, **labels: str) -> float:
    sample = sample or family
    matching = [
        s.value
        for s in found[family]
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert matching, f"no {sample} {labels} in {found[family]}"
    return sum(matching)


def test_metrics_count_requests_by_route_and_describe_the_index(servers):
    ip = as_client("10.0.0.3")
    with servers.ops.client(headers=ip) as client:
        before = samples(client.get("/metrics").text)
        assert client.post("/ask", json={"question": CHIRCHIK}).status_code == 200
        assert client.get(f"/documents/{UZBEK_DOC}").status_code == 200
        assert client.get("/documents/no-such-document").status_code == 404
        assert client.get("/no/such/route").status_code == 404
        ready = client.get("/ready").json()
        r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    found = samples(r.text)

    requests = "rag_http_requests"
    assert value(found, requests, "rag_http_requests_total", route="/ask", status="200") >= 1
    assert value(found, requests, "rag_http_requests_total", route="/documents/{doc_id}") >= 2
    assert value(found, requests, "rag_http_requests_total", route="<unmatched>", status="404")
    doc_404 = value(
        found, requests, "rag_http_requests_total", route="/documents/{doc_id}", status="404"
    )
    assert doc_404 >= 1
    assert not any("no-such" in str(s.labels) for s in found[requests])  # templates only
    if "rag_http_requests" in before:
        assert value(found, requests, "rag_http_requests_total", route="/ask") > sum(
            s.value
            for s in before[requests]
            if s.name == "rag_http_requests_total" and s.labels.get("route") == "/ask"
        )

    latency = "rag_http_request_duration_seconds"
    assert value(found, latency, f"{latency}_count", method="POST", route="/ask") >= 1
    assert value(found, latency, f"{latency}_bucket", route="/ask", le="+Inf") >= 1
    assert value(found, latency, f"{latency}_sum", route="/ask") > 0

    assert value(found, "rag_index_loaded") == 1
    assert value(found, "rag_index_generation") == ready["generation"]
    assert value(found, "rag_index_documents") == ready["documents"] == 5
    assert value(found, "rag_index_chunks") == ready["chunks"]
    assert value(found, "rag_index_size_bytes") > 10_000
    assert value(found, "rag_model_load_seconds") > 0
    assert value(found, "rag_index_load_seconds") > 0


# request ids and the access log

HEX_ID = re.compile(r"[0-9a-f]{32}")


def access_lines(log: str) -> list[dict]:
    """The JSON access-log entries in a server's output."""
    return [
        json.loads(line)
        for line in log.splitlines()
        if line.startswith("{") and '"logger": "api.access"' in line
    ]


def test_request_ids_are_echoed_or_generated_and_logged(servers):
    with servers.ops.client(headers=as_client("10.0.0.4")) as client:
        sent = "trace-42.abc:DEF_x-1"
        r = client.post("/ask", json={"question": CHIRCHIK}, headers={"X-Request-ID": sent})
        assert r.status_code == 200 and r.headers["X-Request-ID"] == sent

        generated = [client.get("/health").headers["X-Request-ID"] for _ in range(2)]
        assert all(HEX_ID.fullmatch(g) for g in generated) and generated[0] != generated[1]

        for bad in ("x" * 129, "has space", "semi;colon", "ünï", "-leading-dash", ""):
            echoed = client.get("/health", headers={"X-Request-ID": bad.encode()}).headers
            assert HEX_ID.fullmatch(echoed["X-Request-ID"]), bad

        r = client.get("/documents/no-such-document", headers={"X-Request-ID": "missing-doc-1"})
        assert r.status_code == 404 and r.headers["X-Request-ID"] == "missing-doc-1"

    entries = access_lines(wait_for_log(servers.ops, "missing-doc-1"))
    (asked,) = [e for e in entries if e["request_id"] == sent]
    assert (asked["method"], asked["route"], asked["status"]) == ("POST", "/ask", 200)
    assert asked["client"] == "10.0.0.4" and asked["duration_ms"] > 0
    assert re.fullmatch(r"POST /ask 200 [\d.]+ms client=10\.0\.0\.4", asked["message"])
    (missing,) = [e for e in entries if e["request_id"] == "missing-doc-1"]
    assert (missing["route"], missing["status"]) == ("/documents/{doc_id}", 404)
    assert set(generated) <= {e["request_id"] for e in entries}
    assert '"GET /health HTTP/1.1"' not in servers.ops.output()  # uvicorn's own line is off


# secrets


def test_api_keys_never_appear_in_the_server_logs(servers):
    write = {"Authorization": f"Bearer {WRITE_KEY}"}
    with servers.ops.client(headers={"X-Request-ID": "secrets-last"}) as client:
        # authorized
        assert client.post("/ask", json={"question": CHIRCHIK}, headers=READ).status_code == 200
        assert client.get(f"/documents/{UZBEK_DOC}", headers=write).status_code == 200
        assert client.delete("/documents/no-such-document", headers=write).status_code == 404
        bad_body = {"documents": [{"id": "a/b", "text": WRITE_KEY}]}
        assert client.post("/documents", json=bad_body, headers=write).status_code == 422
        # unauthorized: no key, wrong keys close to the real ones, keys in the wrong place
        assert client.post("/ask", json={"question": CHIRCHIK}).status_code == 401
        for auth in (f"Bearer {WRITE_KEY}x", f"Bearer {READ_KEY[:-1]}", f"Basic {WRITE_KEY}"):
            r = client.delete(f"/documents/{UZBEK_DOC}", headers={"Authorization": auth})
            assert r.status_code in (401, 403), r.text
        assert client.post("/documents", json={"documents": []}, headers=READ).status_code == 403
        r = client.get("/documents", params={"api_key": WRITE_KEY, "limit": "x"}, headers=READ)
        assert r.status_code == 422 and WRITE_KEY not in r.text
        r = client.post("/ask", json={"question": 1, "key": READ_KEY}, headers=READ)
        assert r.status_code == 422 and READ_KEY not in r.text
    servers.ops.stop()  # the last test on this server: everything it wrote is in the log

    log = servers.ops.output()
    for key in (WRITE_KEY, READ_KEY):
        assert key not in log and key.split("-")[-1] not in log
    # those requests were logged, at debug level, as JSON lines
    entries = [e for e in access_lines(log) if e["request_id"] == "secrets-last"]
    assert {200, 401, 403, 404, 422} <= {e["status"] for e in entries}
    assert all(e["client"] == "127.0.0.1" for e in entries)


def test_serve_runs_a_worker_per_core_unless_the_vectors_are_in_a_milvus_lite_file(
    bundled_settings, tmp_path, monkeypatch
):
    from rag.cli import default_workers

    for name in [k for k in os.environ if k.startswith("RAG_")]:
        monkeypatch.delenv(name)
    faiss_index = bundled_settings.index_path
    assert default_workers(faiss_index, None, None, cores=2) == 2
    assert default_workers(faiss_index, None, None, cores=16) == 4  # each holds a model
    assert default_workers(tmp_path / "none-yet", None, None, cores=2) == 2
    assert default_workers(faiss_index, "milvus", str(tmp_path / "x.db"), cores=2) == 1
    assert default_workers(faiss_index, "milvus", "http://milvus:19530", cores=2) == 2
    # the live generation's manifest says where its vectors are
    lite = tmp_path / "lite"
    shutil.copytree(faiss_index, lite)
    live = lite / (lite / "CURRENT").read_text().strip()
    manifest = json.loads((live / "manifest.json").read_text())
    manifest.update(store="milvus", store_location={"uri": str(tmp_path / "x.db")})
    (live / "manifest.json").write_text(json.dumps(manifest))
    assert default_workers(lite, None, None, cores=2) == 1
    monkeypatch.setenv("RAG_MILVUS_URI", "http://milvus:19530")
    assert default_workers(lite, None, None, cores=2) == 2
