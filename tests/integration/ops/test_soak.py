"""The soak script's judgement (eval/soak.py): arrivals, buckets, percentiles, descriptor
floors and pass/fail. test_soak_run.py, next to this file, runs the script itself against a
real server."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import random
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


def judged(r: soak.Report, **changes: object) -> list[str]:
    return soak.judge(dataclasses.replace(r, **changes), max_rss_growth=0.1, max_p99_ratio=1.5)


def steady() -> soak.Report:
    recs = records(0, 0.1, 1.0) + records(1, 0.1, 1.0) + records(2, 0.1, 1.0)
    return dataclasses.replace(
        report(recs),
        offered_rps=2.0,
        scheduled=303,
        achieved_rps=303 / 180,
        fds_start=120,
        fds_end=120,
    )


def test_descriptor_growth_over_the_slack_fails():
    r = steady()
    assert judged(r, fds_end=125) == []  # +5: within the slack
    (failure,) = judged(r, fds_end=126)
    assert "file descriptors grew by 6 (120 -> 126)" in failure
    assert (
        soak.judge(
            dataclasses.replace(r, fds_end=126),
            max_rss_growth=0.1,
            max_p99_ratio=1.5,
            max_fd_growth=6,
        )
        == []
    )


def test_an_achieved_rate_under_the_floor_fails():
    """The floor is against the arrivals actually due (a Poisson count varies), not rate x s."""
    r = steady()
    assert judged(r, achieved_rps=0.96 * 303 / 180) == []
    (failure,) = judged(r, achieved_rps=0.9 * 303 / 180)
    assert "achieved 1.5 req/s of 1.7 due (2 offered)" in failure
    assert judged(r, offered_rps=None, achieved_rps=0.0) == []  # closed loop: no rate asked


def test_warm_up_errors_and_unsent_arrivals_fail_and_latency_can_be_left_unjudged():
    r = steady()
    assert any("in the warm-up" in f for f in judged(r, warmup_errors=1))
    unsent = judged(r, errors=2, unsent=2, error_samples=["an arrival was never sent"] * 2)
    assert any("2 errors" in f for f in unsent)
    slower = report(records(0, 0.1, 1.0) + records(2, 0.3, 1.0))
    assert soak.judge(slower, max_rss_growth=0.1, max_p99_ratio=0) == []


def test_descriptor_floor_is_the_fewest_in_the_window():
    samples = [(-12.0, 90), (-8.0, 140), (-3.0, 101), (-1.0, 130), (0.0, 99), (55.0, 97)]
    assert soak.fd_floor(samples, -10, 0) == 99
    assert soak.fd_floor(samples, 50, 60) == 97
    assert soak.fd_floor(samples, 20, 30) == 99  # none inside: the nearest sample


def test_arrivals_poisson_and_even():
    even = soak.arrivals(50, 10, random.Random(1), poisson=False)
    assert len(even) == 500 and even[:3] == [0, 0.02, 0.04] and even[-1] < 10
    counts = [len(soak.arrivals(50, 60, random.Random(s), poisson=True)) for s in range(20)]
    assert all(2700 < c < 3300 for c in counts) and len(set(counts)) > 1  # 3000 +- 5 sigma
    one = soak.arrivals(50, 60, random.Random(3), poisson=True)
    assert one == sorted(one) and one[0] >= 0 and one[-1] < 60
    gaps = [b - a for a, b in zip(one, one[1:], strict=False)]
    assert 0.018 < sum(gaps) / len(gaps) < 0.022 and max(gaps) > 0.06  # exponential gaps
    assert soak.arrivals(0, 60, random.Random(1), poisson=True) == []
