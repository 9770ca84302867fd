"""Section `http`: `POST /ask` against `rag serve` on 127.0.0.1, serial, then at fixed
arrival rates (a ramp to the highest sustained rate, or one --rate)."""

from __future__ import annotations

from typing import Any

from .common import Bench, backend, load_questions, table
from .load import fixed_rate, run_async, serial_asks
from .server import batch_metrics, serve_help_works, server

CLIENTS = 16


def http(bench: Bench) -> None:
    if not serve_help_works():
        bench.results["http"] = {"skipped": "`rag serve` is not available"}
        print("\n## HTTP: skipped, `rag serve` is not available")
        return
    modes = {"on": ["on"], "off": ["off"], "both": ["off", "on"]}[bench.options.batching]
    bench.results["http"] = {}
    for mode in modes:
        bench.results["http"][f"batching_{mode}"] = _http_one(bench, mode == "on")
        bench.save()


def _http_one(bench: Bench, batching: bool) -> dict[str, Any]:
    index = bench.ensure_bundled_index()
    questions = load_questions()
    workers = bench.options.server_workers
    env = {"RAG_QUERY_BATCHING": "1" if batching else "0"}
    # The questions repeat (in case variants, which the uncased reader reads alike): with
    # the reader's window cache on, nearly every request after the first round is a hit.
    if bench.options.reader_cache == "off":
        env["RAG_READER_CACHE_WINDOWS"] = "0"
    if bench.options.rate_limit:  # the limiter's cost: a limit no client reaches
        env["RAG_RATE_LIMIT_PER_MINUTE"] = str(bench.options.rate_limit)
        env["RAG_RATE_LIMIT_BURST"] = str(bench.options.rate_limit)
    label = f"batching {'on' if batching else 'off'}, reader cache {bench.options.reader_cache}"
    log = bench.workdir / "serve-http.log"
    slo = bench.options.slo_p99_ms
    with server(index, log, workers=workers, env=env) as (url, _, pid):
        serial = run_async(serial_asks(url, questions, 1 if bench.quick else 3, pid))
        step = 10.0 if bench.quick else 15.0
        duration = bench.options.http_seconds or (15.0 if bench.quick else 30.0)
        ramp: list[dict[str, Any]] = []
        counter = [1_000_000 * (2 if batching else 1)]

        def attempt(rate: float, seconds: float = step) -> dict[str, Any]:
            r = run_async(fixed_rate(url, questions, rate, seconds, CLIENTS, counter, pid))
            ramp.append(r)
            print(
                f"  {label}: {rate:6.2f} req/s offered for {seconds:.0f} s -> "
                f"{r['achieved_rps']:6.2f} done, {r['errors']} errors, "
                f"p50 {r['latency_ms']['p50']:.0f} ms, p99 {r['latency_ms']['p99']:.0f} ms; "
                f"CPU ms a request: server {r['server_cpu_ms_per_request']}, "
                f"client {r['client_cpu_ms_per_request']}; load {r['load_average'][0]}",
                flush=True,
            )
            return r

        best = sustained_run = None
        if bench.options.rate:  # one run at the given arrival rate, e.g. the 150 req/s
            sustained_run = attempt(bench.options.rate, duration)
            best = sustained_run if sustained(sustained_run, slo) else None
        else:
            # from half the serial rate, up by 1.25x while sustained, else down by 1.5x
            rate = max(0.2, 0.5 * serial["achieved_rps"])
            first = attempt(rate)
            if sustained(first, slo):
                best = first
                for _ in range(12):
                    rate *= 1.25
                    r = attempt(rate)
                    if not sustained(r, slo):
                        break
                    best = r
            else:
                while rate > 0.2 and best is None:
                    rate /= 1.5
                    r = attempt(rate)
                    if sustained(r, slo):
                        best = r
            if best is not None:
                sustained_run = attempt(best["offered_rps"], duration)
        server_stats = batch_metrics(url)
    result = {
        "batching": batching,
        "serial": serial,
        "ramp": ramp,
        "max_rate_sustained_rps": best["offered_rps"] if best else None,
        "sustained": sustained_run,
        "clients": CLIENTS,
        "server_workers": workers,
        "slo_p99_ms": slo,
        "server_batches": server_stats,
    }
    rows = [
        [
            "serial (1 client)",
            serial["n"],
            serial["latency_ms"]["p50"],
            serial["latency_ms"]["p95"],
            serial["latency_ms"]["p99"],
            serial["achieved_rps"],
            serial["errors"],
            serial["server_cpu_ms_per_request"],
            serial["client_cpu_ms_per_request"],
            None,
        ]
    ]
    if sustained_run:
        s = sustained_run
        rows.append(
            [
                f"{CLIENTS} clients @ {s['offered_rps']:.2f} req/s for {s['seconds']:.0f} s",
                s["completed"],
                s["latency_ms"]["p50"],
                s["latency_ms"]["p95"],
                s["latency_ms"]["p99"],
                s["achieved_rps"],
                s["errors"],
                s["server_cpu_ms_per_request"],
                s["client_cpu_ms_per_request"],
                s["client_cpu_share"],
            ]
        )
    table(
        f"HTTP POST /ask on 127.0.0.1, `rag serve --workers {workers}`, {backend()} backend, "
        f"{label} (distinct questions: cold query cache), ms",
        [
            "load",
            "requests",
            "p50",
            "p95",
            "p99",
            "req/s",
            "errors",
            "server CPU ms/req",
            "client CPU ms/req",
            "client CPU share",
        ],
        rows,
    )
    print(
        f"{label}: highest fixed arrival rate with 0 errors and p99 <= {slo:.0f} ms: "
        f"{result['max_rate_sustained_rps']} req/s; server batches: {server_stats}"
    )
    return result


def sustained(r: dict[str, Any], slo_p99_ms: float) -> bool:
    """A fixed-rate run the server kept up with: no errors, at least 95 % of the requests
    answered within the run, and p99 within `slo_p99_ms`."""
    return (
        r["errors"] == 0
        and r["completed"] >= 0.95 * r["scheduled"]
        and r["latency_ms"]["p99"] <= slo_p99_ms
    )
