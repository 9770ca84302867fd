"""Section `cold`: process start to `/ready` of `rag serve`, and its parts measured in a fresh
child process each run (interpreter, app imports, index load, framework import, model load)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .common import Bench, backend, run_child, table
from .server import load_metrics, serve_help_works, server


def cold(bench: Bench) -> None:
    index = bench.ensure_bundled_index()
    runs = 2 if bench.quick else 5
    parts = []
    for _ in range(runs):
        parts.append(
            run_child(
                [
                    "--child",
                    "load",
                    "--index-path",
                    str(index),
                    "--spawned-at",
                    repr(time.time()),
                ]
            )
        )
    keys = ["interpreter_start", "app_imports", "index_load", "framework_import", "model_load"]
    median = {k: round(float(np.median([p[k] for p in parts])), 3) for k in keys}
    breakdown_total = sum(median.values())
    out: dict[str, Any] = {
        "runs": runs,
        "breakdown_runs": parts,
        "breakdown_median_s": median,
        "breakdown_total_s": round(breakdown_total, 3),
        "share": {k: round(v / breakdown_total, 3) for k, v in median.items()},
        "first_query_embed_s": round(float(np.median([p["first_query_embed"] for p in parts])), 3),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
    }
    if serve_help_works():
        ready, reported = [], []
        for _ in range(runs):
            with server(index, bench.workdir / "serve-cold.log") as (url, seconds, _):
                ready.append(round(seconds, 3))
                reported.append(load_metrics(url))
        out["serve_ready_s"] = ready
        out["serve_ready_median_s"] = round(float(np.median(ready)), 3)
        out["server_overhead_s"] = round(out["serve_ready_median_s"] - breakdown_total, 3)
        if all(reported):
            # the server's own timings (/metrics): its model load includes importing torch
            out["server_reported_median_s"] = {
                k: round(float(np.median([r[k] for r in reported])), 3) for k in ("model", "index")
            }
    else:
        out["serve_ready_s"] = None
        out["note"] = "`rag serve` is not available: only the in-process breakdown ran"
    bench.results["cold_start"] = out
    rows = [[k, median[k], f"{100 * out['share'][k]:.1f}"] for k in keys]
    rows.append(["sum of parts", round(breakdown_total, 3), "100.0"])
    if out.get("serve_ready_median_s") is not None:
        rows.append(["rag serve: spawn -> /ready 200", out["serve_ready_median_s"], None])
        rows.append(["  of which uvicorn + app startup", out["server_overhead_s"], None])
        if "server_reported_median_s" in out:
            r = out["server_reported_median_s"]
            share = {k: f"{100 * v / out['serve_ready_median_s']:.1f}" for k, v in r.items()}
            label = "  server: model load (+ framework import)"
            rows.append([label, r["model"], share["model"]])
            rows.append(["  server: index load", r["index"], share["index"]])
    rows.append(["first question's embedding, after", out["first_query_embed_s"], None])
    table(
        f"Cold start, {backend()} backend (median of {runs} runs; page cache warm)",
        ["part", "seconds", "%"],
        rows,
    )
