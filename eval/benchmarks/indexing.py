"""Sections `indexing` (chunks/s and tokens/s of the bundled corpus and SciFact, a fresh
process per corpus) and `knobs` (the same on a SciFact subset by embedding batch size)."""

from __future__ import annotations

import shutil

from .common import SCIFACT, Bench, run_child, table


def indexing(bench: Bench) -> None:
    rows = []
    runs = {}
    if bench.bundled_index.exists():
        shutil.rmtree(bench.bundled_index.parent)
    runs["bundled"] = run_child(
        ["--child", "index", "--corpus", "bundled", "--index-path", str(bench.bundled_index)]
    )
    limit = bench.options.limit or (500 if bench.quick else None)
    if (SCIFACT / "corpus.jsonl").exists():
        path = bench.workdir / "scifact" / "index"
        if path.exists():
            shutil.rmtree(path.parent)
        args = ["--child", "index", "--corpus", "scifact", "--index-path", str(path)]
        if limit:
            args += ["--limit", str(limit)]
        runs["scifact"] = run_child(args, timeout=4 * 3600)
    for name, r in runs.items():
        rows.append(
            [
                name,
                r["documents"],
                r["chunks"],
                r["tokens"],
                r["seconds"],
                r["embed_seconds"],
                r["chunks_per_s"],
                r["tokens_per_s"],
                r["peak_rss_mb"],
                round(r["index_bytes"] / 2**20, 2),
            ]
        )
    bench.results["indexing"] = runs
    table(
        "Indexing throughput (a fresh process per corpus; model load excluded)",
        [
            "corpus",
            "docs",
            "chunks",
            "tokens",
            "seconds",
            "embed s",
            "chunks/s",
            "tokens/s",
            "peak RSS MB",
            "index MB",
        ],
        rows,
    )


def knobs(bench: Bench) -> None:
    """Indexing throughput on a SciFact subset by embedding batch size, for the current
    backend (both backends embed longest texts first, so batches pad little)."""
    limit = bench.options.limit or 500
    rows, out = [], []
    for size in [int(b) for b in bench.options.batch_sizes.split(",")]:
        path = bench.workdir / f"knobs-{size}" / "index"
        shutil.rmtree(path.parent, ignore_errors=True)
        args = ["--child", "index", "--corpus", "scifact", "--index-path", str(path)]
        r = run_child([*args, "--limit", str(limit), "--batch-size", str(size)])
        shutil.rmtree(path.parent, ignore_errors=True)
        out.append(r)
        rows.append(
            [
                r["backend"],
                size,
                r["documents"],
                r["chunks"],
                r["embed_seconds"],
                r["documents_per_s"],
                r["chunks_per_s"],
                r["tokens_per_s"],
                r["peak_rss_mb"],
            ]
        )
        print(f"  batch {size}: {r['chunks_per_s']} chunks/s", flush=True)
    bench.results.setdefault("knobs", []).extend(out)
    table(
        f"Indexing SciFact ({limit} abstracts) by embedding batch size",
        [
            "backend",
            "batch",
            "docs",
            "chunks",
            "embed s",
            "docs/s",
            "chunks/s",
            "tokens/s",
            "peak RSS MB",
        ],
        rows,
    )
