"""Soak test: many clients for minutes at a mixed read/write load against a real `rag serve`.

    python eval/soak.py                    # 16 clients, 60 s warm-up, then 10 minutes
    python eval/soak.py --minutes 1 --json soak.json

It builds an index of the bundled corpus in a temporary directory (or copies --index-from),
starts `rag serve` on 127.0.0.1 with a random write key and the rate limit off (the clients
all come from one address), and runs --clients async clients, each in a loop: /ask and
/search with varied questions (so the query-embedding cache keeps turning over), GET of
documents, chunks and document pages (98 % of requests together), and writes (2 %): POST
(2/3) and DELETE of documents in a small pool of ids that each client owns, so it always
knows which answer is right. Writes are serialised and re-embed what they change, so on a
busy 2-core machine a write takes about a second, and a larger share of writes makes the
clients queue behind each other. Traffic goes
only to that server; the run stops by itself.

Pass criteria (exit code 1 when one fails):
- 0 errors: every response is the expected status (200), no connection error or timeout,
  and at the end every client's documents are exactly those it last wrote;
- the server's RSS grows by less than --max-rss-growth (10 %) from the end of the warm-up
  to the end;
- p99 latency is stable: in the last minute at most --max-p99-ratio (1.5) times the first
  minute's (or the first plus 50 ms, whichever is larger), for reads and for writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CORPUS = ROOT / "corpus"
BUNDLED_QUESTIONS = ROOT / "eval" / "bundled.jsonl"
POOL = 3  # document ids each client owns and writes
P99_SLACK_SECONDS = 0.05
WORDS = (
    "lithium tungsten molybdenum cobalt survey valley refinery export corridor railway "
    "pipeline tariff investment ministry agreement delegation summit quarry smelter grid "
    "solar hydropower cotton textile logistics customs border reservoir"
).split()

logger = logging.getLogger("soak")


# ---------------------------------------------------------------- the pure part
@dataclass(frozen=True, slots=True)
class Record:
    at: float  # seconds from the start of measurement to the request's start
    kind: str  # "read" or "write"
    op: str
    seconds: float
    ok: bool
    detail: str = ""


@dataclass
class Bucket:
    index: int
    requests: int = 0
    errors: int = 0
    read_p50: float = math.nan
    read_p99: float = math.nan
    write_p50: float = math.nan
    write_p99: float = math.nan
    rss_mb: float = math.nan


@dataclass
class Report:
    clients: int
    minutes: float
    requests: int
    errors: int
    error_samples: list[str]
    by_op: dict[str, int]
    buckets: list[Bucket]
    rss_ready_mb: float
    rss_start_mb: float
    rss_end_mb: float
    failures: list[str] = field(default_factory=list)

    @property
    def rss_growth(self) -> float:
        return self.rss_end_mb / self.rss_start_mb - 1


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def buckets(
    records: Sequence[Record], seconds: float, width: float, rss: Sequence[tuple[float, float]]
) -> list[Bucket]:
    """Per-`width` statistics of `records` over [0, seconds); `rss` is (at, MB) samples."""
    n = max(1, math.ceil(seconds / width - 1e-9))
    out = [Bucket(i) for i in range(n)]
    lat: list[dict[str, list[float]]] = [{"read": [], "write": []} for _ in range(n)]
    for r in records:
        i = min(int(r.at // width), n - 1)
        out[i].requests += 1
        out[i].errors += not r.ok
        if r.ok:
            lat[i][r.kind].append(r.seconds)
    for i, b in enumerate(out):
        b.read_p50 = percentile(lat[i]["read"], 50)
        b.read_p99 = percentile(lat[i]["read"], 99)
        b.write_p50 = percentile(lat[i]["write"], 50)
        b.write_p99 = percentile(lat[i]["write"], 99)
        in_bucket = [mb for at, mb in rss if i * width <= at < (i + 1) * width]
        b.rss_mb = in_bucket[-1] if in_bucket else math.nan
    return out


def judge(report: Report, *, max_rss_growth: float, max_p99_ratio: float) -> list[str]:
    """The criteria that failed, as sentences (empty: passed)."""
    failures = []
    if report.errors:
        failures.append(f"{report.errors} errors (e.g. {report.error_samples[:3]})")
    if report.requests == 0:
        failures.append("no request completed")
    if not report.rss_growth < max_rss_growth:
        failures.append(
            f"RSS grew {report.rss_growth:.1%} ({report.rss_start_mb:.0f} -> "
            f"{report.rss_end_mb:.0f} MB), the limit is {max_rss_growth:.0%}"
        )
    first, last = report.buckets[0], report.buckets[-1]
    for kind in ("read", "write"):
        a, b = getattr(first, f"{kind}_p99"), getattr(last, f"{kind}_p99")
        if math.isnan(a) or math.isnan(b):
            failures.append(f"no {kind} completed in the first or the last minute")
        elif b > max(a * max_p99_ratio, a + P99_SLACK_SECONDS):
            failures.append(
                f"{kind} p99 rose from {a * 1000:.0f} ms in the first minute to "
                f"{b * 1000:.0f} ms in the last (limit x{max_p99_ratio})"
            )
    return failures


def render(report: Report) -> str:
    def ms(x: float) -> str:
        return "-" if math.isnan(x) else f"{x * 1000:.0f}"

    lines = [
        f"soak: {report.clients} clients, {report.minutes:g} min measured, "
        f"{report.requests} requests ({report.requests / (report.minutes * 60):.1f}/s), "
        f"{report.errors} errors",
        "ops: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_op.items())),
        "",
        "minute  requests  errors  read p50/p99 ms  write p50/p99 ms  RSS MB",
    ]
    for b in report.buckets:
        lines.append(
            f"{b.index + 1:>6}  {b.requests:>8}  {b.errors:>6}  "
            f"{ms(b.read_p50):>7}/{ms(b.read_p99):<7}  {ms(b.write_p50):>8}/{ms(b.write_p99):<7}  "
            f"{b.rss_mb:>6.0f}"
        )
    lines += [
        "",
        f"RSS: {report.rss_ready_mb:.0f} MB when ready, {report.rss_start_mb:.0f} MB after the "
        f"warm-up, {report.rss_end_mb:.0f} MB at the end ({report.rss_growth:+.1%})",
        "PASS" if not report.failures else "FAIL: " + "; ".join(report.failures),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- the server
def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (uvicorn workers), from /proc."""
    total_kb = 0
    for p in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_index(workdir: Path, index_from: Path | None) -> Path:
    index = workdir / "index"
    if index_from is not None:
        shutil.copytree(index_from, index)
        return index
    logger.info("building an index of the bundled corpus in %s", index)
    subprocess.run(
        [sys.executable, "-m", "rag.cli", "index", str(BUNDLED_CORPUS), "--index", str(index)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return index


def start_server(
    index: Path, workdir: Path, key: str, workers: int
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        RAG_API_KEY=key,
        RAG_RATE_LIMIT_PER_MINUTE="0",
    )
    command = [sys.executable, "-m", "rag.cli", "serve", "--index", str(index)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with (workdir / "server.log").open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = workdir / "server.log"
            raise SystemExit(f"the server exited with {process.returncode}; see {log}")
        try:
            if httpx.get(url + "/ready", timeout=5).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_server(process)
    raise SystemExit("the server was not ready after 600 s")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the load
def load_questions() -> list[str]:
    questions = []
    for line in BUNDLED_QUESTIONS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            questions.append(json.loads(line)["question"])
    return questions


class Client:
    """One client's loop. Reads target the bundled documents; writes only its own ids."""

    def __init__(self, n: int, http: httpx.AsyncClient, shared: dict, key: str, seed: int):
        self.n = n
        self.http = http
        self.shared = shared
        self.auth = {"Authorization": f"Bearer {key}"}
        self.rng = random.Random(seed * 1000 + n)
        self.present: dict[str, str] = {}  # its documents in the index: id -> marker word
        self.records: list[Record] = []

    def question(self) -> str:
        q = self.rng.choice(self.shared["questions"])
        return q if self.rng.random() < 0.5 else f"{q} ({self.rng.randint(0, 10**9)})"

    async def step(self) -> tuple[str, str, httpx.Response]:
        x = self.rng.random()
        if x < 0.38:
            return "read", "ask", await self.http.post("/ask", json={"question": self.question()})
        if x < 0.64:
            body = {"query": self.question(), "k": self.rng.randint(1, 10)}
            return "read", "search", await self.http.post("/search", json=body)
        if x < 0.76:
            doc = self.rng.choice(self.shared["doc_ids"])
            return "read", "document", await self.http.get(f"/documents/{doc}")
        if x < 0.88:
            chunk = self.rng.choice(self.shared["chunk_ids"])
            return "read", "chunk", await self.http.get(f"/chunks/{chunk}")
        if x < 0.98:
            params = {"offset": self.rng.randint(0, 5), "limit": self.rng.randint(1, 20)}
            return "read", "list", await self.http.get("/documents", params=params)
        if x < 0.994 or not self.present:
            doc_id = f"soak-{self.n}-{self.rng.randrange(POOL)}"
            marker = f"m{self.rng.randint(0, 10**9)}"
            words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(40, 250)))
            doc = {"id": doc_id, "title": f"Soak note {marker}", "text": f"{marker}. {words}."}
            r = await self.http.post("/documents", json={"documents": [doc]}, headers=self.auth)
            if r.status_code == 200:
                self.present[doc_id] = marker
            return "write", "post", r
        doc_id = self.rng.choice(sorted(self.present))
        r = await self.http.delete(f"/documents/{doc_id}", headers=self.auth)
        if r.status_code == 200:
            del self.present[doc_id]
        return "write", "delete", r

    async def run(self, measure_from: float, until: float) -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                kind, op, r = await self.step()
                ok, detail = r.status_code == 200, f"{op} {r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                kind, op, ok, detail = "error", "transport", False, repr(exc)
                await asyncio.sleep(0.1)  # a dead server must not make this loop spin
            if started >= measure_from:
                self.records.append(
                    Record(started - measure_from, kind, op, time.monotonic() - started, ok, detail)
                )

    async def verify(self) -> list[str]:
        """Its documents are exactly those it last wrote: nothing acknowledged was lost."""
        problems = []
        for i in range(POOL):
            doc_id = f"soak-{self.n}-{i}"
            r = await self.http.get(f"/documents/{doc_id}")
            if doc_id in self.present:
                if r.status_code != 200 or self.present[doc_id] not in r.json()["text"]:
                    problems.append(f"{doc_id}: expected its last text, got {r.status_code}")
            elif r.status_code != 404:
                problems.append(f"{doc_id}: deleted, yet {r.status_code}")
        return problems


async def run_load(
    url: str, pid: int, key: str, clients: int, warmup: float, seconds: float, seed: int
) -> tuple[list[Record], list[tuple[float, float]], float, float, list[str]]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(120)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as http:
        page = (await http.get("/documents", params={"limit": 100})).json()["documents"]
    shared = {
        "questions": load_questions(),
        "doc_ids": [d["id"] for d in page],
        "chunk_ids": [f"{d['id']}:{i}" for d in page for i in range(d["n_chunks"])],
    }
    https = [
        httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) for _ in range(clients)
    ]
    loops = [Client(n, https[n], shared, key, seed) for n in range(clients)]
    t0 = time.monotonic()
    measure_from, until = t0 + warmup, t0 + warmup + seconds
    samples: list[tuple[float, float]] = []
    rss_start = math.nan

    async def sample_rss() -> None:
        nonlocal rss_start
        while time.monotonic() < until:
            now = time.monotonic()
            if now >= measure_from:
                if math.isnan(rss_start):
                    rss_start = rss_mb(pid)
                samples.append((now - measure_from, rss_mb(pid)))
            await asyncio.sleep(measure_from - now if now < measure_from else 5.0)

    logger.info("%d clients: %.0f s warm-up, then %.0f s measured", clients, warmup, seconds)
    try:
        await asyncio.gather(sample_rss(), *(c.run(measure_from, until) for c in loops))
        rss_end = rss_mb(pid)
        problems = [p for c in loops for p in await c.verify()]
    finally:
        for h in https:
            await h.aclose()
    records = sorted((r for c in loops for r in c.records), key=lambda r: r.at)
    return records, samples, rss_start, rss_end, problems


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="measured duration (10)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before measuring (60)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--workers", type=int, default=1, help="server worker processes (1)")
    p.add_argument("--index-from", type=Path, help="copy this index instead of building one")
    p.add_argument("--max-rss-growth", type=float, default=0.10)
    p.add_argument("--max-p99-ratio", type=float, default=1.5)
    p.add_argument("--bucket-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, help="also write the report here")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="rag-soak-"))
    key = secrets.token_urlsafe(24)
    process = None
    try:
        index = prepare_index(workdir, args.index_from)
        process, url = start_server(index, workdir, key, args.workers)
        rss_ready = rss_mb(process.pid)
        logger.info("server %s ready (pid %d, %.0f MB)", url, process.pid, rss_ready)
        seconds = args.minutes * 60
        records, samples, rss_start, rss_end, problems = asyncio.run(
            run_load(url, process.pid, key, args.clients, args.warmup, seconds, args.seed)
        )
        alive = process.poll() is None and httpx.get(url + "/ready", timeout=30).status_code == 200
    finally:
        if process is not None:
            stop_server(process)
    errors = [r.detail for r in records if not r.ok] + problems
    if not alive:
        errors.append("the server was not ready at the end")
    by_op: dict[str, int] = {}
    for r in records:
        by_op[r.op] = by_op.get(r.op, 0) + 1
    report = Report(
        clients=args.clients,
        minutes=args.minutes,
        requests=len(records),
        errors=len(errors),
        error_samples=errors[:10],
        by_op=by_op,
        buckets=buckets(records, seconds, args.bucket_seconds, samples),
        rss_ready_mb=rss_ready,
        rss_start_mb=rss_start,
        rss_end_mb=rss_end,
    )
    report.failures = judge(
        report, max_rss_growth=args.max_rss_growth, max_p99_ratio=args.max_p99_ratio
    )
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str), encoding="utf-8")
    if report.failures:
        print(f"server log and index kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
