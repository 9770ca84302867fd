"""Soak test: a fixed arrival rate for minutes, reads and writes, against a real `rag serve`.

    python eval/soak.py                    # 50 req/s offered, 60 s warm-up, then 10 minutes
    python eval/soak.py --minutes 1 --json soak.json
    python eval/soak.py --closed-loop --clients 16     # each client in a loop, as fast as it can

It builds an index of the bundled corpus in a temporary directory (or copies --index-from),
starts `rag serve` on 127.0.0.1 (a worker per core unless --workers) with a random write key
and the rate limit off (the clients all come from one address), and offers --rate requests a
second (open loop): arrivals are drawn in advance (Poisson, or evenly spaced with --arrivals
even), and each is sent when due by the first of --clients connections that is free, so a
slow server cannot lower the rate it is offered; latency runs from the due time. The requests:
/ask and /search with bundled questions, --fresh-share of them made unique (so the query
embedding and reader caches keep turning over), GET of documents, chunks, document pages and
the client's own documents (expected 200 or 404 as it last wrote them), and --write-share (2 %)
of writes: POST (70 %) and DELETE of documents in a small pool of ids that each client owns,
so it always knows which answer is right. Writes are serialised and re-embed what they change,
so they take far longer than reads and queue behind each other when there are many.
Traffic goes only to that server; the run stops by itself.

Pass criteria (exit code 1 when one fails):
- 0 errors, warm-up included: every response has the expected status, no connection error or
  timeout, every arrival sent within --drain seconds after the end, and at the end every
  client's documents are exactly those it last wrote;
- the achieved rate (answered measured requests a second, until the last answer) is at least
  --min-rate-share (0.95) of the rate the measured arrivals were due at;
- the server's RSS, summed over its process tree, grows by less than --max-rss-growth (10 %)
  from the end of the warm-up to the end;
- its open file descriptors, summed over the process tree (/proc/<pid>/fd of the server and
  every worker), grow by at most --max-fd-growth (5) from the end of the warm-up to the end;
  each end is the fewest sampled (every second) over its last --fd-window (10) seconds, as a
  request or a write in flight holds a few for a moment while what leaks stays;
- p99 latency is stable: in the last minute at most --max-p99-ratio (1.5) times the first
  minute's (or the first plus 50 ms, whichever is larger), for reads and for writes (0: not
  checked).
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
SAMPLE_SECONDS = 1.0  # RSS and descriptor samples
WORDS = (
    "lithium tungsten molybdenum cobalt survey valley refinery export corridor railway "
    "pipeline tariff investment ministry agreement delegation summit quarry smelter grid "
    "solar hydropower cotton textile logistics customs border reservoir"
).split()
# the reads' shares among themselves; writes (--write-share) come on top
READS = (
    ("ask", 0.38),
    ("search", 0.26),
    ("document", 0.12),
    ("chunk", 0.12),
    ("list", 0.08),
    ("own", 0.02),
)
POST_SHARE = 0.7  # of the writes; the rest are DELETEs of a document the client holds

logger = logging.getLogger("soak")


# ---------------------------------------------------------------- the pure part
@dataclass(frozen=True, slots=True)
class Record:
    at: float  # seconds from the start of measurement to the request's due time (or start)
    kind: str  # "read", "write", or "error" (no response)
    op: str
    seconds: float  # from the due time (or start) to the response
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
    fds: int | None = None


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
    mode: str = "open"  # "open": a fixed arrival rate; "closed": each client in a loop
    offered_rps: float | None = None  # the rate asked for
    scheduled: int = 0  # arrivals due in the measured minutes (Poisson: about rate x seconds)
    achieved_rps: float = math.nan  # answered measured requests a second
    workers: int | None = None  # None: the server's default, a worker per core
    warmup_requests: int = 0
    warmup_errors: int = 0
    unsent: int = 0  # measured arrivals never sent (counted in errors too)
    fds_ready: int = 0
    fds_start: int = 0  # the fewest over the last --fd-window seconds of the warm-up
    fds_end: int = 0  # the fewest over the last --fd-window seconds
    fds_idle: int = 0  # after the clients disconnected

    @property
    def rss_growth(self) -> float:
        return self.rss_end_mb / self.rss_start_mb - 1

    @property
    def fd_growth(self) -> int:
        return self.fds_end - self.fds_start


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def arrivals(rate: float, seconds: float, rng: random.Random, *, poisson: bool) -> list[float]:
    """Due times in [0, seconds) of `rate` arrivals a second: a Poisson process (exponential
    gaps) or evenly spaced ones."""
    if rate <= 0 or seconds <= 0:
        return []
    if not poisson:
        return [i / rate for i in range(math.ceil(rate * seconds - 1e-9))]
    out, t = [], rng.expovariate(rate)
    while t < seconds:
        out.append(t)
        t += rng.expovariate(rate)
    return out


def buckets(
    records: Sequence[Record],
    seconds: float,
    width: float,
    rss: Sequence[tuple[float, float]],
    fds: Sequence[tuple[float, int]] = (),
) -> list[Bucket]:
    """Per-`width` statistics of `records` over [0, seconds); `rss` is (at, MB) samples and
    `fds` (at, open descriptors) samples: each bucket has its last."""
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
        open_fds = [n for at, n in fds if i * width <= at < (i + 1) * width]
        b.fds = open_fds[-1] if open_fds else None
    return out


def judge(
    report: Report,
    *,
    max_rss_growth: float,
    max_p99_ratio: float,
    max_fd_growth: int = 5,
    min_rate_share: float = 0.95,
) -> list[str]:
    """The criteria that failed, as sentences (empty: passed). `max_p99_ratio` 0: latency
    is not judged."""
    failures = []
    if report.errors:
        failures.append(f"{report.errors} errors (e.g. {report.error_samples[:3]})")
    if report.warmup_errors:
        failures.append(f"{report.warmup_errors} errors in the warm-up")
    if report.requests == 0:
        failures.append("no request completed")
    due = report.scheduled / (report.minutes * 60)
    if report.offered_rps and not report.achieved_rps >= min_rate_share * due:
        failures.append(
            f"achieved {report.achieved_rps:.1f} req/s of {due:.1f} due "
            f"({report.offered_rps:g} offered), the floor is {min_rate_share:.0%}"
        )
    if not report.rss_growth < max_rss_growth:
        failures.append(
            f"RSS grew {report.rss_growth:.1%} ({report.rss_start_mb:.0f} -> "
            f"{report.rss_end_mb:.0f} MB), the limit is {max_rss_growth:.0%}"
        )
    if report.fd_growth > max_fd_growth:
        failures.append(
            f"open file descriptors grew by {report.fd_growth} ({report.fds_start} -> "
            f"{report.fds_end}), the limit is {max_fd_growth}"
        )
    if max_p99_ratio <= 0:
        return failures
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


def fd_floor(samples: Sequence[tuple[float, int]], start: float, end: float) -> int:
    """The fewest open descriptors sampled in [start, end], else the sample nearest to it.
    The fewest, not the last: a request or a write in flight holds a few for a moment (a
    socket, a generation's files being written or loaded), while what leaks stays."""
    inside = [n for at, n in samples if start <= at <= end]
    if inside:
        return min(inside)
    return min(samples, key=lambda s: min(abs(s[0] - start), abs(s[0] - end)))[1]


def render(report: Report) -> str:
    def ms(x: float) -> str:
        return "-" if math.isnan(x) else f"{x * 1000:.0f}"

    load = (
        f"{report.offered_rps:g} req/s offered over {report.clients} connections "
        f"({report.scheduled} arrivals measured)"
        if report.offered_rps
        else f"{report.clients} clients in a loop"
    )
    workers = (
        f"{report.workers} worker{'s' * (report.workers != 1)}"
        if report.workers
        else "a worker per core"
    )
    lines = [
        f"soak: {load}, {workers}, {report.minutes:g} min measured, "
        f"{report.requests} requests ({report.achieved_rps:.1f}/s achieved), "
        f"{report.errors} errors ({report.unsent} never sent); warm-up: "
        f"{report.warmup_requests} requests, {report.warmup_errors} errors",
        "ops: " + ", ".join(f"{k} {v}" for k, v in sorted(report.by_op.items())),
        "",
        "bucket  requests  errors  read p50/p99 ms  write p50/p99 ms  RSS MB  fds",
    ]
    for b in report.buckets:
        lines.append(
            f"{b.index + 1:>6}  {b.requests:>8}  {b.errors:>6}  "
            f"{ms(b.read_p50):>7}/{ms(b.read_p99):<7}  {ms(b.write_p50):>8}/{ms(b.write_p99):<7}  "
            f"{b.rss_mb:>6.0f}  {'-' if b.fds is None else b.fds:>3}"
        )
    lines += [
        "",
        f"RSS: {report.rss_ready_mb:.0f} MB when ready, {report.rss_start_mb:.0f} MB after the "
        f"warm-up, {report.rss_end_mb:.0f} MB at the end ({report.rss_growth:+.1%})",
        f"open file descriptors (the fewest in a window): {report.fds_ready} when ready, "
        f"{report.fds_start} at the end of the warm-up, {report.fds_end} at the end "
        f"({report.fd_growth:+d}), {report.fds_idle} once the clients disconnected",
        "PASS" if not report.failures else "FAIL: " + "; ".join(report.failures),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- the server
def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's workers, multiprocessing's helpers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants, from /proc."""
    total_kb = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


def open_fds(pid: int) -> int:
    """Open file descriptors of `pid` and its descendants, from /proc/<pid>/fd."""
    total = 0
    for p in process_tree(pid):
        try:
            total += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            continue
    return total


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
    index: Path, workdir: Path, key: str, workers: int | None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RAG_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        RAG_API_KEY=key,
        RAG_RATE_LIMIT_PER_MINUTE="0",
    )
    command = [sys.executable, "-m", "rag.cli", "serve", "--index", str(index)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    if workers is not None:
        command += ["--workers", str(workers)]
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


@dataclass(frozen=True, slots=True)
class Mix:
    """What a request is: --write-share writes, the rest reads; --fresh-share of the
    questions made unique."""

    write_share: float = 0.02
    fresh_share: float = 0.5


@dataclass
class Tally:
    """Running totals for the progress lines: responses (or failures) and errors."""

    done: int = 0
    errors: int = 0


class Schedule:
    """The arrivals of an open-loop run, handed out in order to whichever client asks."""

    def __init__(self, due: Sequence[float]):
        self.due = due
        self.next = 0

    def take(self) -> float | None:
        if self.next >= len(self.due):
            return None
        self.next += 1
        return self.due[self.next - 1]


class Client:
    """One connection, one request at a time. Reads target the bundled documents and the
    client's own; writes only its own ids."""

    def __init__(
        self, n: int, http: httpx.AsyncClient, shared: dict, key: str, seed: int, mix: Mix
    ):
        self.n = n
        self.http = http
        self.shared = shared
        self.auth = {"Authorization": f"Bearer {key}"}
        self.rng = random.Random(seed * 1000 + n)
        self.mix = mix
        self.present: dict[str, str] = {}  # its documents in the index: id -> marker word
        self.records: list[Record] = []
        self.warmup_records: list[Record] = []

    def question(self) -> str:
        q = self.rng.choice(self.shared["questions"])
        if self.rng.random() < self.mix.fresh_share:
            return f"{q} ({self.rng.randint(0, 10**9)})"
        return q

    def read_op(self) -> str:
        x = self.rng.random() * sum(share for _, share in READS)
        for op, share in READS:
            if x < share:
                return op
            x -= share
        return READS[-1][0]

    async def step(self) -> tuple[str, str, bool, httpx.Response]:
        """One request: (kind, op, as expected, response)."""
        if self.rng.random() < self.mix.write_share:
            if self.rng.random() < POST_SHARE or not self.present:
                return await self.post()
            return await self.delete()
        op = self.read_op()
        if op == "ask":
            r = await self.http.post("/ask", json={"question": self.question()})
        elif op == "search":
            body = {"query": self.question(), "k": self.rng.randint(1, 10)}
            r = await self.http.post("/search", json=body)
        elif op == "document":
            r = await self.http.get(f"/documents/{self.rng.choice(self.shared['doc_ids'])}")
        elif op == "chunk":
            r = await self.http.get(f"/chunks/{self.rng.choice(self.shared['chunk_ids'])}")
        elif op == "list":
            params = {"offset": self.rng.randint(0, 5), "limit": self.rng.randint(1, 20)}
            r = await self.http.get("/documents", params=params)
        else:  # "own": what it last wrote, or a 404 for what it deleted (or never wrote)
            doc_id = f"soak-{self.n}-{self.rng.randrange(POOL)}"
            r = await self.http.get(f"/documents/{doc_id}")
            return "read", op, self.holds(doc_id, r), r
        return "read", op, r.status_code == 200, r

    def holds(self, doc_id: str, r: httpx.Response) -> bool:
        if doc_id not in self.present:
            return r.status_code == 404
        return r.status_code == 200 and self.present[doc_id] in r.json()["text"]

    async def post(self) -> tuple[str, str, bool, httpx.Response]:
        doc_id = f"soak-{self.n}-{self.rng.randrange(POOL)}"
        marker = f"m{self.rng.randint(0, 10**9)}"
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(40, 250)))
        doc = {"id": doc_id, "title": f"Soak note {marker}", "text": f"{marker}. {words}."}
        r = await self.http.post("/documents", json={"documents": [doc]}, headers=self.auth)
        if r.status_code == 200:
            self.present[doc_id] = marker
        return "write", "post", r.status_code == 200, r

    async def delete(self) -> tuple[str, str, bool, httpx.Response]:
        doc_id = self.rng.choice(sorted(self.present))
        r = await self.http.delete(f"/documents/{doc_id}", headers=self.auth)
        if r.status_code == 200:
            del self.present[doc_id]
        return "write", "delete", r.status_code == 200, r

    async def one(self, due: float, measure_from: float, tally: Tally) -> None:
        """Send one request due at `due` (monotonic time) and record it."""
        try:
            kind, op, ok, r = await self.step()
            detail = "" if ok else f"{op} {r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            kind, op, ok, detail = "error", "transport", False, repr(exc)
            await asyncio.sleep(0.1)  # a dead server must not make a loop spin
        record = Record(due - measure_from, kind, op, time.monotonic() - due, ok, detail)
        (self.records if due >= measure_from else self.warmup_records).append(record)
        tally.done += 1
        tally.errors += not ok

    async def run_closed(self, measure_from: float, until: float, tally: Tally) -> None:
        while time.monotonic() < until:
            await self.one(time.monotonic(), measure_from, tally)

    async def run_open(
        self, schedule: Schedule, t0: float, measure_from: float, deadline: float, tally: Tally
    ) -> None:
        while (offset := schedule.take()) is not None:
            due = t0 + offset
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() > deadline:
                return
            await self.one(due, measure_from, tally)

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


@dataclass
class Run:
    """What `run_load` measured."""

    records: list[Record]
    warmup_records: list[Record]
    scheduled: int  # arrivals due in the measured seconds
    unsent: int  # of those, never sent
    rss: list[tuple[float, float]]  # (seconds from the start of measurement, MB)
    fds: list[tuple[float, int]]  # (seconds, open descriptors), the warm-up's too
    rss_start: float
    rss_end: float
    fds_idle: int
    problems: list[str]


async def run_load(
    url: str,
    pid: int,
    key: str,
    *,
    clients: int,
    warmup: float,
    seconds: float,
    seed: int,
    mix: Mix,
    rate: float | None,
    poisson: bool = True,
    drain: float = 15.0,
    progress: float = 15.0,
) -> Run:
    """`rate` None: each client in a loop (closed); else that many arrivals a second, over the
    warm-up and the measured seconds, sent by the first free client (open loop)."""
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
    loops = [Client(n, https[n], shared, key, seed, mix) for n in range(clients)]
    schedule = Schedule(
        arrivals(rate, warmup + seconds, random.Random(seed), poisson=poisson) if rate else []
    )
    tally = Tally()
    t0 = time.monotonic() + 0.1
    measure_from, until = t0 + warmup, t0 + warmup + seconds
    rss: list[tuple[float, float]] = []
    fds: list[tuple[float, int]] = []
    marks: dict[str, float] = {}

    async def sample() -> None:
        """RSS and descriptors every SAMPLE_SECONDS, RSS at the end of the warm-up and at the
        end; a progress line every `progress` seconds."""
        next_log, last = t0 + progress, (t0, 0)
        while True:
            now = time.monotonic()
            if now >= measure_from and "rss_start" not in marks:
                marks["rss_start"] = rss_mb(pid)
            mb, n = rss_mb(pid), open_fds(pid)
            fds.append((now - measure_from, n))
            if now >= measure_from:
                rss.append((now - measure_from, mb))
            if now >= until:
                marks["rss_end"] = mb
                return
            if now >= next_log:
                rate_now = (tally.done - last[1]) / (now - last[0])
                logger.info(
                    "%s %4.0f s: %.1f req/s (%d done, %d errors), RSS %.0f MB, %d fds",
                    "warm-up" if now < measure_from else "measured",
                    now - t0 if now < measure_from else now - measure_from,
                    rate_now,
                    tally.done,
                    tally.errors,
                    mb,
                    n,
                )
                next_log, last = next_log + progress, (now, tally.done)
            wake = min(now + SAMPLE_SECONDS, until)
            if now < measure_from:
                wake = min(wake, measure_from)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    if rate:
        logger.info(
            "%g req/s offered (%s) over %d connections: %.0f s warm-up, then %.0f s measured",
            rate,
            "Poisson" if poisson else "evenly spaced",
            clients,
            warmup,
            seconds,
        )
        deadline = until + drain
        load = [c.run_open(schedule, t0, measure_from, deadline, tally) for c in loops]
    else:
        logger.info(
            "%d clients in a loop: %.0f s warm-up, then %.0f s measured", clients, warmup, seconds
        )
        load = [c.run_closed(measure_from, until, tally) for c in loops]
    try:
        await asyncio.gather(sample(), *load)
        problems = [p for c in loops for p in await c.verify()]
    finally:
        for h in https:
            await h.aclose()
    await asyncio.sleep(1.0)  # the server closes its side of the connections
    fds_idle = open_fds(pid)
    unsent = sum(1 for offset in schedule.due[schedule.next :] if offset >= warmup)
    records = sorted((r for c in loops for r in c.records), key=lambda r: r.at)
    warmup_records = [r for c in loops for r in c.warmup_records]
    return Run(
        records=records,
        warmup_records=warmup_records,
        scheduled=sum(1 for offset in schedule.due if offset >= warmup),
        unsent=unsent,
        rss=rss,
        fds=fds,
        rss_start=marks["rss_start"],
        rss_end=marks["rss_end"],
        fds_idle=fds_idle,
        problems=problems,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="measured duration (10)")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before measuring (60)")
    p.add_argument("--rate", type=float, default=50.0, help="requests offered a second (50)")
    p.add_argument("--arrivals", choices=("poisson", "even"), default="poisson", help="(poisson)")
    p.add_argument(
        "--closed-loop",
        action="store_true",
        help="no fixed rate: each client sends its next request as soon as it has an answer",
    )
    p.add_argument("--clients", type=int, default=16, help="connections (16)")
    p.add_argument(
        "--workers", type=int, help="server worker processes (default: the server's, one a core)"
    )
    p.add_argument("--write-share", type=float, default=0.02, help="writes among requests (0.02)")
    p.add_argument(
        "--fresh-share",
        type=float,
        default=0.5,
        help="questions made unique, so no cache answers them (0.5)",
    )
    p.add_argument("--index-from", type=Path, help="copy this index instead of building one")
    p.add_argument("--max-rss-growth", type=float, default=0.10)
    p.add_argument("--max-fd-growth", type=int, default=5)
    p.add_argument(
        "--fd-window",
        type=float,
        default=10.0,
        help="descriptors: the fewest over this many seconds at each end (10)",
    )
    p.add_argument("--min-rate-share", type=float, default=0.95)
    p.add_argument("--max-p99-ratio", type=float, default=1.5, help="(1.5; 0: not checked)")
    p.add_argument(
        "--drain", type=float, default=15.0, help="seconds to send arrivals still queued (15)"
    )
    p.add_argument("--progress", type=float, default=15.0, help="seconds between log lines (15)")
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
    rate = None if args.closed_loop else args.rate
    process = None
    try:
        index = prepare_index(workdir, args.index_from)
        process, url = start_server(index, workdir, key, args.workers)
        rss_ready, fds_ready = rss_mb(process.pid), open_fds(process.pid)
        logger.info(
            "server %s ready (pid %d, %.0f MB, %d fds)", url, process.pid, rss_ready, fds_ready
        )
        seconds = args.minutes * 60
        run = asyncio.run(
            run_load(
                url,
                process.pid,
                key,
                clients=args.clients,
                warmup=args.warmup,
                seconds=seconds,
                seed=args.seed,
                mix=Mix(write_share=args.write_share, fresh_share=args.fresh_share),
                rate=rate,
                poisson=args.arrivals == "poisson",
                drain=args.drain,
                progress=args.progress,
            )
        )
        alive = process.poll() is None and httpx.get(url + "/ready", timeout=30).status_code == 200
    finally:
        if process is not None:
            stop_server(process)
    errors = [r.detail for r in run.records if not r.ok] + run.problems
    errors += ["an arrival was never sent"] * run.unsent
    if not alive:
        errors.append("the server was not ready at the end")
    by_op: dict[str, int] = {}
    for r in run.records:
        by_op[r.op] = by_op.get(r.op, 0) + 1
    answered = sum(r.ok for r in run.records)
    last_response = max((r.at + r.seconds for r in run.records), default=0.0)
    report = Report(
        clients=args.clients,
        minutes=args.minutes,
        requests=len(run.records),
        errors=len(errors),
        error_samples=(errors + [r.detail for r in run.warmup_records if not r.ok])[:10],
        by_op=by_op,
        buckets=buckets(run.records, seconds, args.bucket_seconds, run.rss, run.fds),
        rss_ready_mb=rss_ready,
        rss_start_mb=run.rss_start,
        rss_end_mb=run.rss_end,
        mode="closed" if rate is None else "open",
        offered_rps=rate,
        scheduled=run.scheduled,
        achieved_rps=answered / max(seconds, last_response),
        workers=args.workers,
        warmup_requests=len(run.warmup_records),
        warmup_errors=sum(not r.ok for r in run.warmup_records),
        unsent=run.unsent,
        fds_ready=fds_ready,
        fds_start=fd_floor(run.fds, -args.fd_window, 0.0),
        fds_end=fd_floor(run.fds, seconds - args.fd_window, seconds),
        fds_idle=run.fds_idle,
    )
    report.failures = judge(
        report,
        max_rss_growth=args.max_rss_growth,
        max_p99_ratio=args.max_p99_ratio,
        max_fd_growth=args.max_fd_growth,
        min_rate_share=args.min_rate_share,
    )
    print(render(report))
    if args.json:
        summary = asdict(report) | {"rss_growth": report.rss_growth, "fd_growth": report.fd_growth}
        args.json.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    if report.failures:
        print(f"server log and index kept in {workdir}")
        return 1
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
