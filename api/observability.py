"""Operability: request ids, one access-log line per request, and Prometheus metrics.

`RequestObservability` is the outermost middleware: every request gets an `X-Request-ID`
(a sane incoming one is kept, otherwise one is generated), echoed in the response and
carried by every log record made while the request runs. When the response is complete
it logs one line on the `api.access` logger and counts the request in `Metrics`, which
`GET /metrics` exposes in Prometheus' text format.

With several workers, `rag serve` sets PROMETHEUS_MULTIPROC_DIR (before any worker
imports prometheus_client): every worker then writes its counters, histograms and gauges
to files there, and a scrape of any worker reads them all (prometheus_client's
multiprocess mode), so one scrape sums the workers. The index gauges and load times are
those of the worker scraped (every worker serves the live generation).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response
from api.ratelimit import client_ip
from api.state import Service

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("api.access")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def current_request_id() -> str | None:
    """The id of the request being handled (in its task and its worker threads)."""
    return _request_id.get()


def request_id_from(headers: Headers) -> str:
    """The client's X-Request-ID when it is 1-128 of [A-Za-z0-9._:-], else a new one."""
    incoming = headers.get(REQUEST_ID_HEADER)
    if incoming is not None and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


# metrics


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder of prometheus_client's multiprocess mode, when the server runs in it."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The app's own registry: request counts and latencies, and the loaded index.

    In multiprocess mode the metrics below write to this worker's files and `render` reads
    every worker's; `rag_http_requests_in_progress` sums the live workers (`livesum`), and
    the micro-batching statistics, which the batcher keeps in plain attributes, are copied
    into metrics of their own after each request (counters summed, `largest` the `max`)."""

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry()
        self.service = service
        self.shared = multiprocess_dir()
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "rag_http_requests_in_progress",
            "Requests being handled.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.batches = None
        if self.shared and service.settings.query_batching:
            self.batches = SharedBatchStats(service, self.registry)
        self.index = IndexCollector(service, batches=self.batches is None)
        self.registry.register(self.index)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if self.batches is not None:
            self.batches.sync()

    def render(self) -> bytes:
        if self.shared is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.shared)
        registry.register(self.index)
        return generate_latest(registry)


class SharedBatchStats:
    """The batcher's statistics as multiprocess metrics: its counters advance by what the
    batcher counted since the last copy (a new batcher, after a reload, starts again)."""

    def __init__(self, service: Service, registry: CollectorRegistry) -> None:
        self.service = service
        self.batches = Counter(
            "rag_query_batches", "Micro-batches of questions embedded.", registry=registry
        )
        self.requests = Counter(
            "rag_query_batch_requests", "Questions embedded in micro-batches.", registry=registry
        )
        self.fallbacks = Counter(
            "rag_query_batch_fallbacks",
            "Questions embedded alone because the batch queue was full or closed.",
            registry=registry,
        )
        self.largest = Gauge(
            "rag_query_batch_largest",
            "Largest micro-batch so far.",
            multiprocess_mode="max",
            registry=registry,
        )
        self._batcher: object = None
        self._seen = (0, 0, 0)

    def sync(self) -> None:
        engine = self.service.engine
        batcher = engine.embedder.batcher if engine is not None else None
        if batcher is None:
            return
        if batcher is not self._batcher:
            self._batcher, self._seen = batcher, (0, 0, 0)
        stats = batcher.stats
        now = (stats.batches, stats.requests, stats.fallbacks)
        for counter, before, after in zip(
            (self.batches, self.requests, self.fallbacks), self._seen, now, strict=True
        ):
            if after > before:
                counter.inc(after - before)
        self._seen = now
        self.largest.set(stats.largest)


def reap_dead_workers(path: str) -> list[int]:
    """Drop the live gauges of workers that died without saying so (killed, crashed), whose
    in-progress requests would otherwise count forever; a restarted worker calls this."""
    dead: set[int] = set()
    for name in os.listdir(path):
        stem, _, pid = name.removesuffix(".db").rpartition("_")
        if not (stem.startswith("gauge_live") and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.add(int(pid))
        except PermissionError:
            pass  # alive, someone else's
    for pid in sorted(dead):
        multiprocess.mark_process_dead(pid, path)
    return sorted(dead)


def worker_started() -> None:
    """At a worker's start, in multiprocess mode: forget the live gauges of dead workers."""
    path = multiprocess_dir()
    if path is not None:
        dead = reap_dead_workers(path)
        if dead:
            logger.info("metrics: dropped the live gauges of dead workers %s", dead)


def worker_stopping() -> None:
    """At a worker's clean exit, in multiprocess mode: its live gauges stop counting."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(os.getpid(), path)


class IndexCollector(Collector):
    """The loaded index and load times, read from the service at each scrape; and the
    batcher's statistics, unless `SharedBatchStats` exposes them."""

    def __init__(self, service: Service, *, batches: bool = True) -> None:
        self.service = service
        self.batches = batches

    def collect(self) -> Iterator[Metric]:
        engine = self.service.engine
        yield GaugeMetricFamily(
            "rag_index_loaded", "1 when an index is loaded and served.", value=int(bool(engine))
        )
        if engine is not None:
            manifest = engine.index.manifest  # one generation for all the values below
            gauges = {
                "rag_index_generation": ("The live generation's number.", manifest.generation),
                "rag_index_documents": ("Documents in the index.", manifest.n_documents),
                "rag_index_chunks": ("Chunks in the index.", manifest.n_chunks),
                "rag_index_size_bytes": (
                    "Bytes of the index generation's files.",
                    sum(entry.bytes for entry in manifest.files.values()),
                ),
            }
            for name, (documentation, value) in gauges.items():
                yield GaugeMetricFamily(name, documentation, value=value)
        seconds = self.service.load_seconds
        if "model" in seconds:
            yield GaugeMetricFamily(
                "rag_model_load_seconds",
                "Seconds the embedding model took to load.",
                value=seconds["model"],
            )
        if "index" in seconds:
            yield GaugeMetricFamily(
                "rag_index_load_seconds",
                "Seconds the last index generation loaded by this worker took to load.",
                value=seconds["index"],
            )
        batcher = engine.embedder.batcher if engine is not None and self.batches else None
        if batcher is not None:
            stats = batcher.stats
            yield CounterMetricFamily(
                "rag_query_batches", "Micro-batches of questions embedded.", value=stats.batches
            )
            yield CounterMetricFamily(
                "rag_query_batch_requests",
                "Questions embedded in micro-batches.",
                value=stats.requests,
            )
            yield GaugeMetricFamily(
                "rag_query_batch_largest", "Largest micro-batch so far.", value=stats.largest
            )
            yield CounterMetricFamily(
                "rag_query_batch_fallbacks",
                "Questions embedded alone because the batch queue was full or closed.",
                value=stats.fallbacks,
            )


router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(request: Request) -> Response:
    """Metrics in Prometheus' text format: requests by route and status, latencies, the
    index's size and generation, load times. Under `rag serve` with several workers, the
    requests and batches of all of them."""
    registry: Metrics = request.app.state.metrics
    if registry.batches is not None:
        registry.batches.sync()
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


# the middleware


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The route template (`/documents/{doc_id}`), never the raw path, so labels stay few.

    Requests refused before routing (429, 413) are matched here."""
    route = scope.get("route")
    if route is None:
        probe = {**scope, "fastapi": {}}  # matching must leave the request's scope alone
        route = next((r for r in _flatten(routes) if r.matches(probe)[0] == Match.FULL), None)
    if route is None:
        return UNMATCHED
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED


def _flatten(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Routes with a path, also those of routers FastAPI keeps as included-router nodes."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None and not hasattr(route, "path_regex"):
            yield from _flatten(included.routes)
        else:
            yield route


class RequestObservability:
    """Request id, access log line and metrics for every HTTP request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        routes: Callable[[], Sequence[BaseRoute]] = list,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = request_id
        token = _request_id.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False
        done = False

        def finish() -> None:
            nonlocal done
            if done:
                return
            done = True
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = route_label(scope, self.routes())
            self.metrics.observe(method, route, status, seconds)
            client = client_ip(scope)
            access_logger.info(  # the formatter adds the request id
                "%s %s %d %.1fms client=%s",
                method,
                route,
                status,
                seconds * 1000,
                client,
                extra={
                    "access": {
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "client": client,
                    }
                },
            )

        async def observed_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        self.metrics.in_progress.inc()
        try:
            await self.app(scope, receive, observed_send)
        except Exception:
            status = 500
            if not response_started:
                # Starlette's outer error middleware would answer without the request id.
                response = error_response(
                    500,
                    "internal_error",
                    f"unexpected server error; see the server log (request id {request_id})",
                    headers={REQUEST_ID_HEADER: request_id},
                )
                await response(scope, receive, send)
            raise
        finally:
            self.metrics.in_progress.dec()
            finish()
            _request_id.reset(token)


# logging


class RequestIdFilter(logging.Filter):
    """Give every record a `request_id` attribute: the current request's, or "-"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, pid, request_id, and for
    access lines method, route, status, duration_ms and client."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker, under `rag serve --workers N`
        }
        request_id = getattr(record, "request_id", None) or current_request_id()
        if request_id and request_id != "-":
            entry["request_id"] = request_id
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_HANDLER_MARK = "_rag_api_handler"


def configure_logging(json_lines: bool, *, loggers: Iterable[str] = ("api",)) -> None:
    """Send the API's logs (access lines at INFO) to stderr, as JSON lines when asked.

    Called when the server starts. Loggers a deployer has given handlers of their own are
    left alone. With JSON, the core's and uvicorn's loggers get the same handler, so that
    the whole stream is JSON; uvicorn's own access line is switched off either way, as
    `api.access` says the same and more.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(RequestIdFilter())
    setattr(handler, _HANDLER_MARK, True)
    names = list(loggers)
    if json_lines:
        names += ["rag", "index", "uvicorn", "uvicorn.error"]
    for name in names:
        target = logging.getLogger(name)
        if name.startswith("uvicorn"):
            replaced = list(target.handlers)
        else:
            replaced = [h for h in target.handlers if getattr(h, _HANDLER_MARK, False)]
            if len(replaced) < len(target.handlers):
                continue  # the deployer's own handlers
        for h in replaced:
            target.removeHandler(h)
        target.addHandler(handler)
        target.propagate = False
        if name == "api":
            target.setLevel(logging.INFO)
    logging.getLogger("uvicorn.access").disabled = True
