"""Rate and time limits, as ASGI middlewares: 429 for a client over its rate, 504 for a
request over its time.

A single process keeps its buckets in memory. Several workers (`rag serve --workers N`)
share theirs in a SQLite file in the server's run folder (RAG_RUN_DIR, which `rag serve`
creates), so that a client gets the configured rate in all, not N times it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

logger = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/health", "/ready", "/metrics"})
"""Probes and scrapes are never rate limited: a busy client must not make a worker look dead."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets:
    """A token bucket per key: `burst` tokens at most, refilled at `per_minute / 60` a second.

    Memory is bounded: past `max_keys` buckets, those that have refilled completely (their
    clients idle) are dropped, then the least recently used ones.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be positive and burst at least 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when there was one, else the seconds until there is."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
        bucket.tokens, wait = spend(bucket.tokens, now - bucket.updated, self.rate, self.burst)
        bucket.updated = now
        return wait

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)


def spend(tokens: float, elapsed: float, rate: float, burst: float) -> tuple[float, float]:
    """A bucket holding `tokens`, refilled for `elapsed` seconds at `rate` a second up to
    `burst`, asked for one token: (the tokens left, 0.0) when it had one, else (the tokens,
    the seconds until it has one)."""
    tokens = min(burst, tokens + max(0.0, elapsed) * rate)
    if tokens >= 1.0:
        return tokens - 1.0, 0.0
    return tokens, (1.0 - tokens) / rate


class Buckets(Protocol):
    def take(self, key: str) -> float: ...


SHARED_BUCKETS = "ratelimit.sqlite"


class SharedTokenBuckets:
    """`TokenBuckets` in a SQLite file that every worker of a server opens, so that a
    client's bucket is the same whichever worker takes its request.

    One short `BEGIN IMMEDIATE` transaction a request (a read and an upsert, under SQLite's
    write lock, so two workers never both spend the last token). The file is throwaway
    state in the server's private run folder: WAL without syncs, as a crash loses only
    buckets, which start full again. `time.monotonic` is the clock: on Linux and macOS it
    is system-wide, so all workers read the same one. If the file fails (a full disk, a
    lock held past the timeout), the request is counted in this worker's own memory
    instead: the limit loosens to per worker rather than refusing or failing requests.
    """

    PRUNE_EVERY = 1024

    def __init__(
        self,
        path: Path,
        per_minute: float,
        burst: int,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 1.0,
    ) -> None:
        self.local = TokenBuckets(per_minute, burst, max_keys=max_keys, clock=clock)
        self.rate = self.local.rate
        self.burst = self.local.burst
        self.max_keys = max_keys
        self.clock = clock
        self.path = path
        self._lock = threading.Lock()  # one connection, used from the event loop's thread
        self._takes = 0
        self._warned_at = -math.inf
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open_buckets(path, timeout)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 when there was one, else the seconds until there is."""
        with self._lock:
            try:
                return self._take(key)
            except sqlite3.Error as exc:
                self._rollback()
                now = self.clock()
                if now - self._warned_at > 60:
                    self._warned_at = now
                    logger.warning(
                        "shared rate-limit buckets failed (%s); limiting per worker for now", exc
                    )
                return self.local.take(key)

    def _take(self, key: str) -> float:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        now = self.clock()
        row = db.execute("SELECT tokens, updated FROM buckets WHERE key = ?", (key,)).fetchone()
        tokens, updated = row if row is not None else (self.burst, now)
        tokens, wait = spend(tokens, now - updated, self.rate, self.burst)
        db.execute(
            "INSERT INTO buckets (key, tokens, updated) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
            (key, tokens, now),
        )
        self._takes += 1
        if self._takes % self.PRUNE_EVERY == 0:
            self._prune(now)
        db.execute("COMMIT")
        return wait

    def _prune(self, now: float) -> None:
        """As `TokenBuckets`: drop full buckets, then the least recently used, past max_keys."""
        db = self._db
        (count,) = db.execute("SELECT count(*) FROM buckets").fetchone()
        if count < self.max_keys:
            return
        db.execute(
            "DELETE FROM buckets WHERE tokens + (? - updated) * ? >= ?",
            (now, self.rate, self.burst),
        )
        db.execute(
            "DELETE FROM buckets WHERE key IN "
            "(SELECT key FROM buckets ORDER BY updated DESC LIMIT -1 OFFSET ?)",
            (self.max_keys - 1,),
        )

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM buckets").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _open_buckets(path: Path, timeout: float) -> sqlite3.Connection:
    """The buckets' database, created by whichever worker comes first.

    Workers start together, so switching to WAL can find the file locked: that is retried
    for a few seconds (the busy timeout does not cover it)."""
    deadline = time.monotonic() + 10
    while True:
        db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = OFF")
            db.execute(
                "CREATE TABLE IF NOT EXISTS buckets "
                "(key TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL)"
            )
            return db
        except sqlite3.OperationalError:
            db.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def client_ip(scope: Scope) -> str:
    """The client's address. Behind a reverse proxy, start uvicorn with
    `--forwarded-allow-ips` so that this is the forwarded client, not the proxy."""
    client = scope.get("client")
    return client[0] if client else "unknown"


class RateLimit:
    """Refuse a client (by IP) over `per_minute` requests a minute, after a burst of
    `burst`, with 429, a JSON error and `Retry-After`. `per_minute=0` disables the limit.

    With `shared_dir` (the server's run folder) the buckets are shared by every worker
    that is given the same folder; without it they are this process's own."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        per_minute: int,
        burst: int,
        exempt: Iterable[str] = EXEMPT_PATHS,
        shared_dir: Path | None = None,
    ) -> None:
        self.app = app
        self.per_minute = per_minute
        self.exempt = frozenset(exempt)
        self.buckets: Buckets | None = None
        if per_minute > 0:
            if shared_dir is not None:
                self.buckets = SharedTokenBuckets(shared_dir / SHARED_BUCKETS, per_minute, burst)
            else:
                self.buckets = TokenBuckets(per_minute, burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or self.buckets is None
            or (scope["path"].rstrip("/") or "/") in self.exempt
        ):
            await self.app(scope, receive, send)
            return
        wait = self.buckets.take(client_ip(scope))
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        response = error_response(
            429,
            "rate_limited",
            f"too many requests: the limit is {self.per_minute} a minute per client "
            f"(RAG_RATE_LIMIT_PER_MINUTE); retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)


class RequestTimeout:
    """Answer 504 when the app has not started its response within `seconds`.

    The app runs in a task of its own, so the 504 goes out on time even while a handler
    is busy in a worker thread (sync handlers, `run_in_threadpool`). The task is then
    cancelled: async code stops at its next await, but a thread cannot be interrupted, so
    it finishes its work (a write started in one completes) and its response is
    discarded. A response that has started by the deadline is left to finish.
    `seconds=0` disables the limit.

    Plain asyncio (a task and `asyncio.wait`), not an anyio task group: this runs for every
    request, and the task group cost 120 us of event-loop time a request, this 15 us.
    """

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return

        started = False
        timed_out = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the late response of a request already answered with 504
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            await asyncio.wait((task,), timeout=self.seconds)
            if not task.done() and not started:
                timed_out = True
                logger.warning(
                    "%s %s timed out after %g s", scope["method"], scope["path"], self.seconds
                )
                await _timeout_response(self.seconds)(scope, receive, send)
                task.cancel()
            # else: finished, or the response is under way: let it complete.
            try:
                await task
            except asyncio.CancelledError:
                if not timed_out or _cancelling():
                    raise
            except Exception as exc:
                if not timed_out:
                    raise
                logger.warning("error after a timeout: %s", type(exc).__name__)
        finally:
            if not task.done():  # this request itself was cancelled: so is its app
                task.cancel()


def _cancelling() -> bool:
    """Whether the current task is being cancelled (not just a task it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _timeout_response(seconds: float):
    return error_response(
        504,
        "timeout",
        f"the request took longer than {seconds:g} s (RAG_REQUEST_TIMEOUT_SECONDS); a write "
        "may still complete: check before retrying it",
    )


def document_limits(schema: dict, *, exempt: Iterable[str] = EXEMPT_PATHS) -> dict:
    """Add the 429 and 504 responses every operation can give to an OpenAPI schema."""
    exempt = frozenset(exempt)
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if path not in exempt:
                responses.setdefault(
                    "429",
                    {
                        "description": "Too many requests from this client: see `Retry-After`.",
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before retrying.",
                                "schema": {"type": "integer"},
                            }
                        },
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )
            responses.setdefault(
                "504",
                {
                    "description": "No response within RAG_REQUEST_TIMEOUT_SECONDS.",
                    "content": {"application/json": {"schema": error_ref}},
                },
            )
    return schema
