"""Benchmark rag-cited on this machine: cold start, indexing, query latency, HTTP load and
vector-search scaling. Prints a table per section and writes everything to a JSON file.

    python eval/bench.py                      # all sections, full sizes (1M vectors: ~1 h)
    python eval/bench.py --quick              # smaller: SciFact 500 docs, 10k/100k vectors
    python eval/bench.py --sections scaling --out scaling.json
    python eval/bench.py --sections tuning    # the sweep behind the index parameters
    python eval/bench.py --backend onnx --sections cold http   # another embedding backend
    python eval/bench.py --sections http --rate 150 --batching both  # the issue's load test
    python eval/bench.py --sections knobs --limit 500   # indexing batch sizes x backends
    python eval/bench.py --sections reader    # windows read: SQuAD 2.0 dev F1 against latency

Sections: cold, indexing, query, http, scaling; tuning, knobs, reader and writes (not in the
default set). Traffic goes only to a server this script starts on 127.0.0.1. Indexes are
written to a temporary directory (or --workdir), never into the repository. The sections
live in eval/benchmarks/, one module per concern; this file is the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import click
from benchmarks.common import SLO_P99_MS, Bench, Options, machine

DEFAULT_SECTIONS = ("cold", "indexing", "query", "http", "scaling")
ALL_SECTIONS = (*DEFAULT_SECTIONS, "tuning", "knobs", "reader", "writes")


def sections() -> dict[str, Callable[[Bench], None]]:
    """Each section's function, in the order they run. Imported here, not at the top, so
    that a child process (`--child`) imports only what it measures."""
    from benchmarks.cold import cold
    from benchmarks.http_bench import http
    from benchmarks.indexing import indexing, knobs
    from benchmarks.query import query
    from benchmarks.reader import reader
    from benchmarks.vectors import scaling, tuning
    from benchmarks.writes import writes

    found = {
        "cold": cold,
        "indexing": indexing,
        "query": query,
        "http": http,
        "scaling": scaling,
        "tuning": tuning,
        "knobs": knobs,
        "reader": reader,
        "writes": writes,
    }
    assert tuple(found) == ALL_SECTIONS
    return found


@click.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    help=__doc__.split("\n\n")[0],
    epilog="Several sections: --sections cold http (the names after the first are arguments).",
)
@click.argument("more_sections", nargs=-1, metavar="[SECTION]...")
@click.option("--quick", is_flag=True, help="smaller sizes, shorter runs")
@click.option("--out", default="bench.json", show_default=True, help="JSON file for the results")
@click.option(
    "--sections",
    "section_names",
    multiple=True,
    metavar="SECTION [SECTION]...",
    help=f"any of {', '.join(ALL_SECTIONS)}, or 'all' (default: {' '.join(DEFAULT_SECTIONS)})",
)
@click.option("--sizes", help="comma-separated vector counts for `scaling`")
@click.option(
    "--server-workers",
    type=int,
    default=max(1, min(4, os.cpu_count() or 1)),
    help="`rag serve --workers` for `http` (default: as `rag serve` on a FAISS index)",
)
@click.option(
    "--backend",
    type=click.Choice(["torch", "onnx", "onnx-int8"]),
    help="embedding backend for every section (sets RAG_EMBEDDING_BACKEND)",
)
@click.option(
    "--batching",
    type=click.Choice(["on", "off", "both"]),
    default="on",
    show_default=True,
    help="`http`: the server's query micro-batching; both = before/after",
)
@click.option(
    "--reader-cache",
    type=click.Choice(["on", "off"]),
    default="off",
    show_default=True,
    help="`http`: the reader's window cache (off: every request reads, as for new "
    "questions; on: the bench's repeated questions are cache hits)",
)
@click.option("--rate", type=float, help="`http`: one run at this arrival rate instead of a ramp")
@click.option("--http-seconds", type=float, help="`http`: length of the sustained run")
@click.option(
    "--rate-limit",
    type=int,
    default=0,
    help="`http`: the server's RAG_RATE_LIMIT_PER_MINUTE (and burst), to measure the "
    "limiter's cost; default 0, off, as the clients share one address",
)
@click.option(
    "--slo-p99-ms",
    type=float,
    default=SLO_P99_MS,
    show_default=True,
    help="`http`: p99 a rate must keep to count as sustained",
)
@click.option(
    "--limit", type=int, help="SciFact abstracts for `indexing` and `knobs` (default: all)"
)
@click.option(
    "--batch-sizes",
    default="16,32,64,128",
    show_default=True,
    help="`knobs`: embedding batch sizes to try",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    help="where indexes are built (default: a temp dir)",
)
# internal: the child processes (benchmarks/children.py)
@click.option("--child", type=click.Choice(["index", "load"]), hidden=True)
@click.option("--corpus", hidden=True)
@click.option("--index-path", type=click.Path(path_type=Path), hidden=True)
@click.option("--spawned-at", type=float, hidden=True)
@click.option("--batch-size", type=int, hidden=True)
def main(
    more_sections: tuple[str, ...],
    quick: bool,
    out: str,
    section_names: tuple[str, ...],
    sizes: str | None,
    server_workers: int,
    backend: str | None,
    batching: str,
    reader_cache: str,
    rate: float | None,
    http_seconds: float | None,
    rate_limit: int,
    slo_p99_ms: float,
    limit: int | None,
    batch_sizes: str,
    workdir: Path | None,
    child: str | None,
    corpus: str | None,
    index_path: Path | None,
    spawned_at: float | None,
    batch_size: int | None,
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if backend:  # children and servers inherit it
        os.environ["RAG_EMBEDDING_BACKEND"] = backend
    if child is not None:
        from benchmarks.children import child_index, child_load

        if index_path is None or (child == "index" and corpus is None):
            raise click.UsageError("--child needs --index-path (and --corpus for index)")
        if child == "index":
            assert corpus is not None
            print(json.dumps(child_index(corpus, limit, index_path, batch_size)))
        else:
            print(json.dumps(child_load(index_path, spawned_at or time.time())))
        return
    # `--sections cold http` as argparse's nargs="+" took it: click options take one value,
    # so the names after the first arrive as arguments.
    if more_sections and not section_names:
        raise click.UsageError("sections are named after --sections, e.g. --sections cold http")
    requested = [*section_names, *more_sections] or list(DEFAULT_SECTIONS)
    chosen = list(ALL_SECTIONS) if "all" in requested else requested
    unknown = set(chosen) - set(ALL_SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}: use {ALL_SECTIONS}")
    options = Options(
        quick=quick,
        out=Path(out),
        sizes=sizes,
        server_workers=server_workers,
        batching=batching,
        reader_cache=reader_cache,
        rate=rate,
        http_seconds=http_seconds,
        rate_limit=rate_limit,
        slo_p99_ms=slo_p99_ms,
        limit=limit,
        batch_sizes=batch_sizes,
    )
    keep = workdir is not None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="rag-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(options, workdir)
    bench.results["machine"] = machine()
    bench.results["quick"] = quick
    bench.results["sections"] = chosen
    print(
        f"benchmark ({'quick' if quick else 'full'}): {', '.join(chosen)}; work in {workdir}",
        flush=True,
    )
    try:
        for name, run in sections().items():
            if name in chosen:
                t = time.perf_counter()
                run(bench)
                bench.results.setdefault("section_seconds", {})[name] = round(
                    time.perf_counter() - t, 1
                )
                bench.save()
    finally:
        bench.results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        bench.save()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
