"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis).

A real uvicorn serves a throwaway copy of the bundled index with a write key, so the write
routes are exercised too; rate limiting is off so that every request reaches the API.
For every operation, schemathesis generates valid and invalid requests and checks that no
response is a 5xx and that every response conforms to the schema: a documented status
code, the documented content type, headers and body.

Bounded to well under a minute of fuzzing on two busy cores: FUZZ_EXAMPLES (default 75)
examples per operation, a third of that for the slow POST /documents. Set FUZZ_EXAMPLES=400
to look harder. What it found is pinned down by the regression tests at the end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.servers import Server, start_server, wait_until

WRITE_KEY = "fuzz-write-key"
READ_KEY = "fuzz-read-key"
AUTH = {"Authorization": f"Bearer {WRITE_KEY}"}  # the write key reads too
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "75"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ_SETTINGS = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
    "database": None,
    "print_blob": True,
}


@pytest.fixture(scope="module")
def fuzz_server(bundled_settings, tmp_path_factory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(bundled_settings.index_path, tmp / "index")
    server = start_server(
        tmp / "fuzz.log",
        log_level="info",
        RAG_INDEX_PATH=str(tmp / "index"),
        RAG_API_KEY=WRITE_KEY,
        RAG_READ_API_KEY=READ_KEY,
        RAG_RATE_LIMIT_PER_MINUTE="0",
        RAG_MAX_DOCUMENTS_PER_REQUEST="5",
        RAG_KEEP_GENERATIONS="2",
    )
    try:
        wait_until(server, "/ready")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json", headers=AUTH)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.exclude(method="POST", path="/documents").parametrize()
@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
def test_every_operation_answers_as_documented(case):
    case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=60)


@schema.include(method="POST", path="/documents").parametrize()
@settings(max_examples=max(5, EXAMPLES // 3), **FUZZ_SETTINGS)
def test_writes_answer_as_documented(case):
    case.call_and_validate(headers=AUTH, checks=CHECKS, timeout=60)


# what the fuzzer found, as plain regression tests

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        # json.loads failing with UnicodeDecodeError or RecursionError was FastAPI's 400
        ("POST", "/ask", {"content": b":\xe6\x8c\xff", "headers": JSON}, 422, "invalid_request"),
        ("POST", "/search", {"content": b"[" * 100_000, "headers": JSON}, 422, "invalid_request"),
        # an offset past SQLite's integers was a 500
        ("GET", "/documents", {"params": {"offset": 2**70}}, 422, "invalid_request"),
        # multipart limits and syntax errors were 400s: "too many files" was meant to be 413
        (
            "POST",
            "/documents",
            {"files": [("files", (f"f{i}.txt", b"text")) for i in range(6)]},
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/documents",
            {"files": [("files", ("a.txt", b"text"))] + [("x", (None, "y"))] * 20},
            413,
            "payload_too_large",
        ),
        (
            "POST",
            "/documents",
            {"content": b"--x\r\nnonsense", "headers": {"content-type": "multipart/form-data"}},
            422,
            "invalid_documents",
        ),
    ],
)
def test_found_by_fuzzing(fuzz_server, method, path, kwargs, status, code):
    with httpx.Client(base_url=fuzz_server.url, headers=AUTH, timeout=30) as client:
        r = client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_the_fuzzed_server_logged_no_unexpected_error(fuzz_server):
    with httpx.Client(base_url=fuzz_server.url, timeout=30) as client:
        assert client.get("/ready").status_code == 200
    log = fuzz_server.output()
    assert "Traceback" not in log and "unexpected" not in log, log[-5000:]
