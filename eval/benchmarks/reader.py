"""Section `reader`: for each number of windows read, SQuAD 2.0 dev and bundled quality
against tokens read and in-process latency."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .common import BUNDLED_QUESTIONS, SQUAD2_DEV, Bench, load_questions, percentiles, table

READER_WINDOWS = (1, 2, 3, 4, 6)


def reader(bench: Bench) -> None:
    """For each number of windows read: SQuAD 2.0 dev part A (open over its paragraphs)
    F1, HasAns F1 and NoAns accuracy, tokens read, and in-process /ask latency on the
    bundled corpus (read step and total), serial."""
    from rag.config import Settings
    from rag.embed.embedding import Embedder
    from rag.engine import Engine
    from rag.evaluation.retrieval import engine_variant
    from rag.evaluation.runner import evaluate_bundled, evaluate_squad

    settings = Settings()
    embedder = Embedder.from_settings(settings, queries=True)
    bundled = Engine.load(Settings(index_path=bench.ensure_bundled_index()), embedder)
    questions = load_questions()
    limit = 200 if bench.quick else None
    rows, out = [], {}
    for n in READER_WINDOWS:
        tuned = settings.model_copy(update={"reader_windows": n})
        report, predictions = evaluate_squad(
            tuned, embedder, SQUAD2_DEV, modes=["hybrid"], limit=limit
        )
        metrics = report.runs[0].metrics["all"]
        news, _ = evaluate_bundled(
            tuned, embedder, BUNDLED_QUESTIONS, modes=["hybrid"], split="report"
        )
        news_m = news.runs[0].metrics["report"]
        # the reader's window cache off: every ask below reads (its cost, not a lookup's)
        engine = engine_variant(bundled, reader_windows=n, reader_cache_windows=0)
        for q in questions[:5]:
            engine.ask(q)
        reads, totals, tokens, cpu = [], [], [], []
        for _ in range(2 if bench.quick else 5):
            for q in questions:
                c0 = time.process_time()
                r = engine.ask(q)
                # CPU time of every thread: the cost, even on a machine that is not idle
                cpu.append((time.process_time() - c0) * 1000)
                reads.append(r.timings_ms.get("read", float("nan")))
                totals.append(r.timings_ms["total"])
        for q in questions:
            tokens.append(_tokens_read(engine, q))
        out[str(n)] = {
            "squad2_f1": metrics["squad_f1"],
            "has_ans_f1": metrics["has_ans_f1"],
            "no_ans_accuracy": metrics["no_ans_accuracy"],
            "report_answer_accuracy": news_m["answer_accuracy"],
            "report_abstention_f1": news_m["abstention_f1"],
            "tokens_read_mean": round(float(np.mean(tokens)), 1),
            "read_ms": percentiles(reads),
            "ask_cpu_ms": percentiles(cpu),
            "total_ms": percentiles(totals),
        }
        rows.append(
            [
                n,
                out[str(n)]["tokens_read_mean"],
                f"{metrics['squad_f1']:.3f}",
                f"{metrics['has_ans_f1']:.3f}",
                f"{metrics['no_ans_accuracy']:.3f}",
                f"{news_m['answer_accuracy']:.3f}",
                f"{news_m['abstention_f1']:.3f}",
                out[str(n)]["read_ms"]["p50"],
                out[str(n)]["total_ms"]["p50"],
                out[str(n)]["total_ms"]["p99"],
                out[str(n)]["ask_cpu_ms"]["p50"],
            ]
        )
    bench.results["reader"] = out
    table(
        "reader: windows read per question (SQuAD 2.0 dev part A, open; bundled report split; "
        "bundled latency)",
        [
            "windows",
            "tokens",
            "F1",
            "HasAns F1",
            "NoAns acc",
            "report acc",
            "report abst F1",
            "read p50 ms",
            "ask p50 ms",
            "ask p99 ms",
            "ask CPU p50 ms",
        ],
        rows,
    )


def _tokens_read(engine: Any, question: str) -> int:
    """Tokens the reader reads for one question (question and context, every window)."""
    from rag.answer.reading import reading_windows

    if engine.reader is None:
        return 0
    passages = engine.retrieve(question)
    windows = reading_windows(engine.reader, question, passages, engine.settings.reader_windows)
    return sum(
        len(w.input_ids)
        for rw in windows
        for w in engine.reader.windows(question, rw.passage.text[rw.start : rw.end])
    )
