"""The soak, short: eval/soak.py itself against a real `rag serve --workers 2` for about a
minute (issue #20, item 8; the 10-minute run is `python eval/soak.py`, see README, Reliability).

The rate and mix are chosen to pass on an idle 2-core machine with room to spare, and still
write: 20 requests/s offered (Poisson), 5 % of them writes (about one POST or DELETE a second,
each a new index generation that both workers follow), and 30 % of the questions made unique
(an /ask the reader has not read costs about 70 ms of CPU; repeated ones come from its window
cache). The warm-up (15 s) lets the workers' memory settle (models, caches, threads) before
RSS is compared. Latency drift is not judged here (--max-p99-ratio 0): 14 s buckets on a
shared CI machine are too noisy for it; the 10-minute run judges it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from rag.config import PROJECT_ROOT

WARMUP_SECONDS = 15
MEASURED_MINUTES = 0.7  # 42 s
RATE = 20
WRITE_SHARE = 0.05
FRESH_SHARE = 0.3
FD_SLACK = 5
MAX_RSS_GROWTH = 0.10


def test_a_short_soak_at_a_fixed_rate_with_writes_passes(bundled_settings, tmp_path):
    summary_path = tmp_path / "soak.json"
    command = [sys.executable, str(PROJECT_ROOT / "eval" / "soak.py")]
    command += ["--index-from", str(bundled_settings.index_path), "--workers", "2"]
    command += ["--warmup", str(WARMUP_SECONDS), "--minutes", str(MEASURED_MINUTES)]
    command += ["--rate", str(RATE), "--write-share", str(WRITE_SHARE)]
    command += ["--fresh-share", str(FRESH_SHARE), "--max-p99-ratio", "0"]
    command += ["--max-fd-growth", str(FD_SLACK), "--max-rss-growth", str(MAX_RSS_GROWTH)]
    command += ["--bucket-seconds", "14", "--progress", "10", "--json", str(summary_path)]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    output = f"{done.stdout}\n{done.stderr[-3000:]}"
    print(done.stdout)  # the report, with `pytest -rP`
    assert done.returncode == 0, output
    summary = json.loads(summary_path.read_text(encoding="utf-8"))

    assert summary["errors"] == 0 and summary["warmup_errors"] == 0, output
    assert summary["unsent"] == 0, output
    assert summary["fd_growth"] <= FD_SLACK, output
    assert summary["fds_start"] > summary["fds_ready"], "the clients' connections are counted"
    assert summary["rss_growth"] < MAX_RSS_GROWTH, output
    measured = MEASURED_MINUTES * 60
    assert summary["scheduled"] > 0.8 * RATE * measured, output
    assert summary["achieved_rps"] >= 0.95 * summary["scheduled"] / measured, output
    ops = summary["by_op"]
    assert ops.get("post", 0) >= 10 and ops.get("delete", 0) >= 3, ops  # upserts and deletes
    assert ops.get("ask", 0) > 100 and ops.get("own", 0) > 0, ops
    assert "PASS" in done.stdout
    assert "measured" in done.stderr, "progress is logged"  # e.g. "measured   10 s: 20.1 req/s"
