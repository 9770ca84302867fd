"""The HTTP service and `rag index` under crashes, corruption and concurrent writes (issue
#7's tests; issue #20: the real CLI killed at named points).

Each server here is real uvicorn on a loopback port, in a child forked from the test process
with the bundled model already loaded: a server starts in a fraction of a second, instead of
the tens of seconds that importing torch and loading the model take on a busy machine, so it
can be killed with SIGKILL and restarted twenty times within the suite's budget.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.main import create_app
from index import Index
from index.errors import UnknownDocument
from index.generations import current, generation_name, generation_number, list_generations
from index.records import Document
from index.testhooks import PAUSE_AT, PAUSE_MARKER, POINTS
from rag.config import BUNDLED_CORPUS, PROJECT_ROOT, Settings
from rag.indexing import build_index
from tests.conftest import CHIRCHIK, UZBEK_DOC
from tests.servers import free_port

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

KEY = "crash-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class ForkedServer:
    """A uvicorn server in a forked child of the test process, sharing its loaded model."""

    settings: Settings
    embedder: object
    log: Path
    pid: int = 0
    url: str = ""
    starts: list[float] = field(default_factory=list)  # seconds from fork to /ready

    def start(self, timeout: float = 60) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: serve until killed, never return into pytest
            code = 1
            try:
                fd = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                # Log to the file, not to handlers this process set up earlier (pytest's).
                sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
                for name in ("", "api", "rag", "index", "uvicorn", "uvicorn.error"):
                    logging.getLogger(name).handlers.clear()
                app = create_app(self.settings, embedder=self.embedder)
                config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
                uvicorn.Server(config).run()
                code = 0
            except BaseException:
                traceback.print_exc()  # into the log, which output() shows
            finally:
                os._exit(code)
        self.pid = pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pytest.fail(f"server exited ({status}):\n{self.output()}")
            try:
                if httpx.get(self.url + "/ready", timeout=5).status_code == 200:
                    self.starts.append(time.monotonic() - started)
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"server not ready after {timeout}s:\n{self.output()}")

    def kill(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.pid = 0

    def stop(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)
            for _ in range(100):
                if os.waitpid(self.pid, os.WNOHANG)[0]:
                    self.pid = 0
                    return
                time.sleep(0.1)
            self.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=AUTH, timeout=60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:] if self.log.exists() else ""


@pytest.fixture()
def server(bundled_settings, embedder, tmp_path):
    root = tmp_path / "index"
    shutil.copytree(bundled_settings.index_path, root)
    settings = Settings(index_path=root, api_key=KEY, rate_limit_per_minute=0)
    srv = ForkedServer(settings, embedder, tmp_path / "server.log")
    srv.start()
    yield srv
    srv.stop()


def _store_consistency(root: Path) -> dict[str, str]:
    """Load the live generation with every check (checksums, counts), then check that no
    document is half there: every document has exactly its n_chunks chunks, every chunk a
    document. Returns each document's text."""
    index = Index.load(root, verify=True)
    assert index.generation == int(current(root).name.split("-")[1])
    conn = sqlite3.connect(f"{(index.path / 'store.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        orphans = conn.execute(
            "SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT id FROM documents)"
        ).fetchone()[0]
        assert orphans == 0
        wrong = conn.execute(
            "SELECT d.id, d.n_chunks, count(c.id) FROM documents d "
            "LEFT JOIN chunks c ON c.doc_id = d.id GROUP BY d.id "
            "HAVING count(c.id) != d.n_chunks OR d.n_chunks = 0"
        ).fetchall()
        assert wrong == []
        texts = dict(conn.execute("SELECT id, text FROM documents").fetchall())
    finally:
        conn.close()
        index.close()
    return texts


def _leftovers(root: Path) -> list[str]:
    live = current(root)
    newer = [p.name for p in list_generations(root) if p.name > live.name]
    return [p.name for p in root.iterdir() if p.name.startswith(".tmp-")] + newer


def test_kill_9_during_post_documents_loses_no_acknowledged_write(server):
    """Kill the server with SIGKILL at 20 random moments while a client keeps adding
    documents (two per request). After each restart the index loads and passes its checks,
    answers the Chirchik question, holds every acknowledged document, and each request that
    got no answer is either wholly there or wholly absent."""
    rng = random.Random(20)
    root = server.settings.index_path
    acked: dict[str, str] = {}  # id -> a phrase of its text
    unanswered: list[list[str]] = []
    killed_mid_write = 0
    failures: list[str] = []
    started = time.monotonic()

    for attempt in range(20):
        in_flight: list[str] = []
        stop = threading.Event()

        def write(attempt: int = attempt, in_flight: list[str] = in_flight, stop=stop) -> None:
            with server.client() as client:
                for j in range(1000):
                    if stop.is_set():
                        return
                    ids = [f"crash-{attempt}-{j}-{n}" for n in range(2)]
                    docs = [
                        {
                            "id": i,
                            "text": f"Field note {i}: the drill core from site {i} "
                            "holds traces of lithium and tungsten.",
                        }
                        for i in ids
                    ]
                    in_flight[:] = ids
                    try:
                        r = client.post("/documents", json={"documents": docs})
                    except httpx.TransportError:
                        return  # killed before answering: in_flight stays set
                    if r.status_code != 200:
                        failures.append(f"{r.status_code}: {r.text[:300]}")
                        return
                    for i in ids:
                        acked[i] = f"site {i}"
                    in_flight.clear()

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(rng.uniform(0.05, 1.5))
        server.kill()
        stop.set()
        writer.join(timeout=60)
        assert not writer.is_alive()
        assert not failures, failures
        if in_flight:
            killed_mid_write += 1
            unanswered.append(list(in_flight))

        server.start()  # cleans the killed write's leftovers, loads the live generation
        assert _leftovers(root) == []
        texts = _store_consistency(root)
        missing = [i for i in acked if i not in texts]
        assert not missing, f"acknowledged but lost after kill {attempt}: {missing}"
        for phrase_id, phrase in acked.items():
            assert phrase in texts[phrase_id]
        for ids in unanswered:
            present = [i in texts for i in ids]
            assert all(present) or not any(present), f"half a request is there: {ids}"
        with server.client() as client:
            r = client.post("/ask", json={"question": CHIRCHIK})
            assert r.status_code == 200, r.text
            assert UZBEK_DOC in {c["doc_id"] for c in r.json()["citations"]}
            newest = [i for i in acked if i.startswith(f"crash-{attempt}-")][-1:]
            for doc_id in newest:  # and it is served, with its chunks
                assert client.get(f"/documents/{doc_id}").status_code == 200
                assert client.get(f"/chunks/{doc_id}:0").json()["doc_id"] == doc_id

    seconds = time.monotonic() - started
    print(
        f"\n20 kills in {seconds:.1f}s; {killed_mid_write} during an unanswered POST, "
        f"{len(acked)} documents acknowledged; restarts took "
        f"{min(server.starts):.2f}-{max(server.starts):.2f}s"
    )
    assert killed_mid_write >= 10  # the kills really interrupted writes
    assert len(acked) >= 10


MARKER_IDS = ("marker-a", "marker-b")
MARKER_QUESTION = "Which calibration code do the Ferghana marker stations report?"
CODES = [
    "amber", "birch", "cobalt", "dune", "ember", "fjord", "garnet", "harbor", "indigo",
    "juniper", "kestrel",
]  # fmt: skip
_CODE_RE = re.compile(r"calibration code (\w+)")


def _markers(version: int) -> list[dict]:
    return [
        {
            "id": doc_id,
            "title": f"Ferghana marker station {doc_id[-1].upper()}",
            "text": f"Ferghana marker station {doc_id[-1].upper()} reports calibration code "
            f"{CODES[version]}. The Ferghana marker stations publish one calibration code "
            "after every survey of the valley.",
        }
        for doc_id in MARKER_IDS
    ]


def test_readers_during_writes_see_one_generation_or_the_next(server):
    """4 threads ask for the whole of 10 updates of two marker documents (both changed by
    each update); 0 errors, and every answer's passages show both markers at the same
    version, exactly as written, never older than one seen before."""
    with server.client() as client:
        r = client.post("/documents", json={"documents": _markers(0)})
        assert r.status_code == 200, r.text
    errors: list[str] = []
    seen: list[list[int]] = [[] for _ in range(4)]
    texts: dict[tuple[str, int], set[str]] = {}
    stop = threading.Event()

    def read(n: int) -> None:
        with server.client() as c:
            while not stop.is_set():
                path = "/ask"
                try:
                    r = c.post(path, json={"question": MARKER_QUESTION, "k": 6})
                except httpx.HTTPError as exc:
                    errors.append(f"{path}: {exc!r}")
                    continue
                if r.status_code != 200:
                    errors.append(f"{path}: {r.status_code} {r.text[:200]}")
                    continue
                markers = {p["doc_id"]: p["text"] for p in r.json()["passages"]}
                if set(MARKER_IDS) - set(markers):
                    errors.append(f"{path}: markers missing from {sorted(markers)}")
                    continue
                versions = set()
                for doc_id in MARKER_IDS:
                    version = CODES.index(_CODE_RE.search(markers[doc_id]).group(1))
                    texts.setdefault((doc_id, version), set()).add(markers[doc_id])
                    versions.add(version)
                if len(versions) != 1:
                    errors.append(f"{path}: markers from two generations: {versions}")
                    continue
                seen[n].append(versions.pop())

    readers = [threading.Thread(target=read, args=(n,)) for n in range(4)]
    for t in readers:
        t.start()
    written: dict[tuple[str, int], str] = {}
    try:
        with server.client() as client:
            for version in range(1, 11):
                time.sleep(0.2)
                r = client.post("/documents", json={"documents": _markers(version)})
                assert r.status_code == 200, r.text
                assert r.json()["report"]["changed"] == 2
                for doc_id in MARKER_IDS:  # read your write
                    chunk = client.get(f"/chunks/{doc_id}:0").json()
                    assert CODES[version] in chunk["text"]
                    written[(doc_id, version)] = chunk["text"]
            time.sleep(0.3)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert not errors, errors[:5]
    counts = [len(s) for s in seen]
    assert min(counts) >= 3, counts
    for versions in seen:
        assert versions == sorted(versions)  # never an older generation after a newer one
    distinct = {v for s in seen for v in s}
    assert len(distinct) >= 3, distinct  # the readers really ran across updates
    for key, observed in texts.items():
        if key[1] > 0:
            assert observed == {written[key]}, key  # exactly the text that was written
    print(f"\nreaders: {sum(counts)} responses across versions {sorted(distinct)}")


def test_a_corrupt_new_generation_is_refused_and_the_service_keeps_serving(
    server, embedder, bundled_documents
):
    """For each file of a generation in turn: a new generation is written (by another
    process, as `rag index` would), then one byte of that file flipped. The running service
    refuses it, says why in its log, and keeps answering from the previous generation."""
    root = server.settings.index_path
    names = sorted(Index.load(root).manifest.files)
    assert {"vectors.faiss", "store.sqlite"} <= set(names) and len(names) >= 3
    with server.client() as client:
        for n, name in enumerate(names):
            before = client.get("/ready").json()["generation"]
            extra = Document(id=f"extra-{n}", text=f"Extra note {n} on cobalt in Kazakhstan.")
            base = Index.load(root)  # the last good generation
            new, _ = build_index(server.settings, embedder, [*bundled_documents, extra], base=base)
            target = new.path / name
            original = target.read_bytes()
            data = bytearray(original)
            data[len(data) // 2] ^= 0x01
            target.write_bytes(bytes(data))

            ready = client.get("/ready")
            assert ready.status_code == 200 and ready.json()["generation"] == before, name
            r = client.post("/ask", json={"question": CHIRCHIK})
            assert r.status_code == 200, r.text
            assert UZBEK_DOC in {c["doc_id"] for c in r.json()["citations"]}
            assert client.get(f"/documents/extra-{n}").status_code == 404
            log = server.output()
            assert f"still serving gen-{before:06d}" in log and name in log, log

            # Repaired, and a good generation after it: the service moves on to that one.
            target.write_bytes(original)
            more = Document(id=f"more-{n}", text=f"More notes {n} on nickel in Mongolia.")
            good, _ = build_index(
                server.settings, embedder, [*bundled_documents, extra, more], base=Index.load(root)
            )
            assert client.get("/ready").json()["generation"] == good.generation
            assert client.get(f"/documents/extra-{n}").status_code == 200


def _rag(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """`rag ARGS` as a real process: its own interpreter, model load and exit code."""
    return subprocess.run(
        [sys.executable, "-m", "rag.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _rag_json(*args: str, env: dict[str, str]) -> dict:
    proc = _rag(*args, "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_rag_index_killed_at_each_point_leaves_the_last_generation_and_resumes(tmp_path):
    """`rag index` as a real process, stopped by the test hook (index/testhooks.py) while
    embedding, while writing its store, and with the new generation in place but CURRENT
    not yet switched, then killed with SIGKILL there. Each time the kill left what that point
    writes; `rag ask` answers from the previous generation, which passes every check and
    lacks the new document; and the next `rag index` cleans up and writes the new one."""
    corpus = tmp_path / "corpus"
    shutil.copytree(BUNDLED_CORPUS, corpus)
    root = tmp_path / "index"
    # Small batches: the change comes in a later batch, after earlier ones are written.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_INGEST_BATCH_CHUNKS": "8"}
    env.pop(PAUSE_AT, None)
    first = _rag_json("index", str(corpus), "--index", str(root), env=env)
    assert first["n_documents"] == 5
    started = time.monotonic()

    for n, point in enumerate(POINTS):
        live = current(root)
        live_number = generation_number(live)
        doc_id = f"zz_marker_{n}"  # sorted last: the last batch holds the change
        (corpus / f"{doc_id}.txt").write_text(
            f"Marker station {n} of the Ferghana valley reports calibration code {CODES[n]}.",
            encoding="utf-8",
        )
        marker = tmp_path / f"paused-{point}"
        log = tmp_path / f"index-{point}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rag.cli", "index", str(corpus), "--index", str(root)],
                cwd=PROJECT_ROOT,
                env={**env, PAUSE_AT: point, PAUSE_MARKER: str(marker)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 240
            while not marker.exists():
                assert proc.poll() is None, f"rag index exited: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"never paused: {log.read_text()[-3000:]}"
                time.sleep(0.05)
            assert marker.read_text() == str(proc.pid)
        finally:
            proc.kill()  # SIGKILL
            proc.wait()
        assert proc.returncode == -signal.SIGKILL

        # What the kill left: the write as far as that point, never named by CURRENT.
        assert current(root) == live, point
        tmp = [p for p in root.iterdir() if p.name.startswith(".tmp-")]
        newer = [p for p in list_generations(root) if generation_number(p) > live_number]
        if point == "pointer":
            assert tmp == [] and [p.name for p in newer] == [generation_name(live_number + 1)]
            assert (newer[0] / "manifest.json").is_file()
        else:
            assert len(tmp) == 1 and newer == [], point
            assert (tmp[0] / "store.sqlite").is_file()
            assert (tmp[0] / "vectors.faiss").is_file() == (point == "store")
            assert not (tmp[0] / "manifest.json").exists()

        asked = _rag_json("ask", CHIRCHIK, "--index", str(root), env=env)
        assert UZBEK_DOC in {c["doc_id"] for c in asked["citations"]}, point
        served = Index.load(root)  # what `rag ask` loaded: the previous generation, intact
        try:
            assert served.path == live
            with pytest.raises(UnknownDocument):
                served.store.get_document(doc_id)
        finally:
            served.close()

        report = _rag_json("index", str(corpus), "--index", str(root), env=env)
        assert report["generation"] == live_number + 1, point
        assert (report["added"], report["unchanged"], report["removed"]) == (1, 5 + n, 0)
        assert _leftovers(root) == []
        texts = _store_consistency(root)
        assert CODES[n] in texts[doc_id]

    print(f"\n{len(POINTS)} kills of rag index and resumes in {time.monotonic() - started:.1f}s")
