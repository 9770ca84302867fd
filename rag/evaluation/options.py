"""The `rag eval` command's options, kept free of heavy imports: `rag --help` loads this."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

DEFAULT_CACHE_DIR = Path(".rag/eval")

_OPTIONS = [
    click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False)),
    click.option(
        "--beir",
        "beir_dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="Evaluate retrieval on a BEIR-format dataset directory instead.",
    ),
    click.option(
        "--squad",
        "squad_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Evaluate on a SQuAD v1.1 or v2.0 file instead (open-domain; v2.0's "
        "unanswerable questions are expected abstentions).",
    ),
    click.option(
        "--articles",
        default=None,
        help="SQuAD: ask only the questions of these articles (comma-separated titles, as in "
        "the file); the index still holds every paragraph. For articles kept out of training.",
    ),
    click.option(
        "--reader",
        "reader_path",
        type=click.Path(path_type=Path, exists=True),
        default=None,
        help="Answer with this reader (ONNX file or Hugging Face QA directory).",
    ),
    click.option(
        "--answer-mode",
        type=click.Choice(["reader", "sentence"]),
        default=None,
        help="reader (default) or sentence.",
    ),
    click.option(
        "--split",
        default=None,
        help="Bundled: tune, report or all (default all). BEIR: the qrels split (default test).",
    ),
    click.option(
        "--index",
        "index_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Use this index (default: build or reuse one of the corpus under --cache-dir).",
    ),
    click.option(
        "--cache-dir",
        type=click.Path(path_type=Path),
        default=DEFAULT_CACHE_DIR,
        show_default=True,
        help="Where evaluation indexes are cached, named by a hash of corpus and settings.",
    ),
    click.option(
        "--mode",
        "modes",
        multiple=True,
        help="Retrieval mode (repeat, or comma-separate, to compare several).",
    ),
    click.option(
        "--compare",
        is_flag=True,
        help="Run retrieval modes side by side (every mode unless --mode names some).",
    ),
    click.option("--k", "k", type=int, default=None, help="Passages an answer is composed from."),
    click.option("--chunk-tokens", type=int, default=None, help="Chunk size of a built index."),
    click.option("--chunk-overlap", type=int, default=None, help="Chunk overlap of a built index."),
    click.option("--limit", type=int, default=None, help="SQuAD, BEIR: the first N questions."),
    click.option(
        "--sweep-threshold",
        is_flag=True,
        help="Bundled: figures at a range of abstention thresholds, from one run.",
    ),
    click.option(
        "--save-predictions",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Bundled: one JSON line per question. SQuAD: the official {id: answer} file.",
    ),
    click.option(
        "--save-run",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="BEIR: write a TREC run file (qid Q0 docid rank score tag).",
    ),
    click.option(
        "--plot",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Draw each mode's recall@k curve to this PNG.",
    ),
    click.option(
        "--min",
        "min_gates",
        multiple=True,
        metavar="METRIC=VALUE",
        help="Exit non-zero if METRIC is below VALUE (repeatable), e.g. --min hit@5=0.9.",
    ),
    click.option(
        "--max",
        "max_gates",
        multiple=True,
        metavar="METRIC=VALUE",
        help="Exit non-zero if METRIC is above VALUE, e.g. --max latency_p95_ms=200.",
    ),
    click.option(
        "--url",
        default=None,
        metavar="http://HOST:PORT",
        help="Bundled: ask a running `rag serve` over HTTP instead of the library; latency is "
        "the client's.",
    ),
    click.option(
        "--chunk-sizes",
        default=None,
        metavar="T/O,T/O,...",
        help="Bundled, SQuAD: also count answers cut by chunk boundaries at these chunk "
        "settings (re-chunked, not embedded), e.g. 64/16,128/32,256/64.",
    ),
    click.option(
        "--save-report",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        help="Write the report with every question's outcome, for --diff.",
    ),
    click.option(
        "--diff",
        "diff_paths",
        nargs=2,
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        metavar="A.json B.json",
        help="Compare two saved reports: metric deltas and questions better or worse in B.",
    ),
    click.option(
        "--generate",
        is_flag=True,
        help="Bundled: also answer every question with the generator at $RAG_GENERATOR_URL; "
        "report the share of generated sentences supported, answer accuracy against the "
        "extractive answers, and latency (--limit N: the first N questions).",
    ),
    click.option("--verbose", "show_misses", is_flag=True, help="List every question missed."),
    click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
]


def eval_options(func: Callable) -> Callable:
    """Apply every `rag eval` option to `func` (in the order listed in --help)."""
    for decorate in reversed(_OPTIONS):
        func = decorate(func)
    return func
