"""The soak script's judgement (eval/soak.py): buckets, percentiles and pass/fail."""

from __future__ import annotations

import importlib.util
import math
import sys

from rag.config import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location("soak", PROJECT_ROOT / "eval" / "soak.py")
soak = sys.modules.setdefault("soak", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(soak)  # registered first: dataclasses look their module up


def records(minute: int, read: float, write: float, ok: bool = True) -> list:
    at = minute * 60 + 1
    reads = [soak.Record(at, "read", "ask", read * (i + 1) / 100, ok) for i in range(100)]
    return reads + [soak.Record(at, "write", "post", write, True)]


def report(recs: list, rss: tuple[float, float] = (500, 520)) -> soak.Report:
    return soak.Report(
        clients=16,
        minutes=3,
        requests=len(recs),
        errors=sum(not r.ok for r in recs),
        error_samples=[r.detail for r in recs if not r.ok],
        by_op={},
        buckets=soak.buckets(recs, 180, 60, [(10, rss[0]), (170, rss[1])]),
        rss_ready_mb=400,
        rss_start_mb=rss[0],
        rss_end_mb=rss[1],
    )


def test_percentile_interpolates_like_numpy():
    assert soak.percentile([1, 2, 3, 4], 50) == 2.5
    assert math.isclose(soak.percentile(list(range(101)), 99), 99)
    assert math.isnan(soak.percentile([], 99))


def test_a_steady_run_passes_and_buckets_are_per_minute():
    r = report(records(0, 0.1, 1.0) + records(1, 0.1, 1.0) + records(2, 0.11, 1.2))
    assert [b.requests for b in r.buckets] == [101, 101, 101]
    assert math.isclose(r.buckets[0].read_p99, 0.09901) and r.buckets[2].write_p99 == 1.2
    assert r.buckets[0].rss_mb == 500 and r.buckets[2].rss_mb == 520
    assert soak.judge(r, max_rss_growth=0.10, max_p99_ratio=1.5) == []
    assert "PASS" in soak.render(r)


def test_errors_memory_growth_and_latency_drift_fail():
    errors = report(records(0, 0.1, 1.0) + records(2, 0.1, 1.0, ok=False))
    assert any("errors" in f for f in soak.judge(errors, max_rss_growth=0.1, max_p99_ratio=1.5))
    grown = report(records(0, 0.1, 1.0) + records(2, 0.1, 1.0), rss=(500, 560))
    assert any("RSS grew" in f for f in soak.judge(grown, max_rss_growth=0.1, max_p99_ratio=1.5))
    slower = report(records(0, 0.1, 1.0) + records(2, 0.3, 1.0))
    (failure,) = soak.judge(slower, max_rss_growth=0.1, max_p99_ratio=1.5)
    assert "read p99 rose" in failure
