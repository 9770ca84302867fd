"""Human-readable views of an `EvalReport`: the metrics table, the threshold sweep, the
misses, and recall@k curves as a PNG."""

from __future__ import annotations

import textwrap
from pathlib import Path

from rag.evaluation.report import EvalReport, MetricValue, Miss, RunResult, SweepRow

LABEL_WIDTH = 22


def format_value(name: str, value: MetricValue) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):  # bool included
        return str(int(value))
    if name.endswith("_ms"):
        return f"{value:.1f}"
    return f"{value:.3f}"


def header(report: EvalReport) -> str:
    m = report
    chunking = "/".join(str(v) for v in m.chunking.values()) or "unknown"  # --url: not reported
    state = f"built in {m.index_seconds:.0f}s" if m.index_built else "reused"
    lines = [
        f"{m.kind} evaluation: {m.dataset} (split {m.split}, {m.n_questions} questions)",
        f"index {m.index_path} ({state}; {m.n_documents} documents, {m.n_chunks} chunks)",
        f"model {m.model}"
        + (f" ({m.backends})" if m.backends else "")
        + f"; chunk tokens/overlap {chunking}"
        + (f"; k {m.k}" if m.k is not None else "")
        + (f"; min_score {m.min_score:g}" if m.min_score is not None and not m.answering else ""),
    ]
    if m.answering:
        lines.append(f"answers: {m.answering}")
    return "\n".join(lines)


def metrics_table(runs: list[RunResult]) -> str:
    """Metrics as rows; a column per (mode, group), modes side by side."""
    columns = [(run, group) for run in runs for group in run.metrics]
    names: list[str] = []
    for run, group in columns:
        names.extend(n for n in run.metrics[group] if n not in names)
    cells = [[format_value(n, run.metrics[group].get(n)) for run, group in columns] for n in names]
    widths = [
        max([len(group), *(len(row[i]) for row in cells)]) + 2
        for i, (_, group) in enumerate(columns)
    ]
    mode_line = " " * LABEL_WIDTH
    for run in runs:
        span = sum(w for (r, _), w in zip(columns, widths, strict=True) if r is run)
        mode_line += run.mode.rjust(span)
    lines = [mode_line.rstrip()]
    lines.append(
        "metric".ljust(LABEL_WIDTH)
        + "".join(g.rjust(w) for (_, g), w in zip(columns, widths, strict=True))
    )
    for name, row in zip(names, cells, strict=True):
        lines.append(
            name.ljust(LABEL_WIDTH) + "".join(c.rjust(w) for c, w in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def sweep_table(rows: list[SweepRow], current: float | None) -> str:
    best = max(rows, key=lambda r: (r.overall_accuracy or 0.0, -r.threshold), default=None)
    titles = ["threshold", "answered", "answer_acc", "abst_prec", "abst_rec", "abst_f1", "overall"]
    lines = ["".join(t.rjust(11) for t in titles)]
    for r in rows:
        values = [
            f"{r.threshold:.3f}",
            str(r.answered),
            format_value("", r.answer_accuracy),
            format_value("", r.abstention_precision),
            format_value("", r.abstention_recall),
            format_value("", r.abstention_f1),
            format_value("", r.overall_accuracy),
        ]
        marks = "  <- current" if current is not None and abs(r.threshold - current) < 1e-9 else ""
        marks += "  * best overall" if r is best else ""
        lines.append("".join(v.rjust(11) for v in values) + marks)
    return "\n".join(lines)


def misses_list(misses: list[Miss], width: int = 100) -> str:
    lines = []
    for x in misses:
        split = f" [{x.split}]" if x.split else ""
        lines.append(f"{x.id}{split}  {x.question}")
        lines.append(f"    {'; '.join(x.reasons)}")
        if x.answer:
            answer = textwrap.shorten(x.answer, width=width - 12, placeholder=" ...")
            lines.append(f"    answer: {answer}")
        details = []
        if x.gold_answers:
            details.append("gold: " + " | ".join(x.gold_answers))
        if x.gold_doc_ids:
            details.append("gold docs: " + ", ".join(x.gold_doc_ids))
        if x.retrieved_doc_ids:
            details.append("retrieved: " + ", ".join(x.retrieved_doc_ids[:5]))
        if x.confidence is not None:
            details.append(f"confidence {x.confidence:.3f}")
        if details:
            lines.append(
                textwrap.fill(
                    "; ".join(details), width=width, initial_indent="    ", subsequent_indent="    "
                )
            )
    return "\n".join(lines)


def render(report: EvalReport) -> str:
    parts = [header(report), "", metrics_table(report.runs)]
    for run in report.runs:
        if run.sweep:
            parts += [
                "",
                f"Abstention threshold sweep ({run.mode}, {report.primary_group}): "
                "answered iff confidence >= threshold",
                sweep_table(run.sweep, report.min_score),
            ]
    if report.boundary:
        parts += ["", "Chunk boundaries: gold answers in a document but in no single chunk"]
        parts.append(boundary_table(report))
    for run in report.runs:
        if run.misses is not None:
            parts += ["", f"Misses ({run.mode}, {report.primary_group}): {len(run.misses)}"]
            if run.misses:
                parts.append(misses_list(run.misses))
    return "\n".join(parts)


def plot_recall(report: EvalReport, path: Path) -> None:
    """Recall@k of each run (mode) as one line, saved as an image at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    try:
        for run in report.runs:
            ks = sorted(run.recall_curve)
            ax.plot(ks, [run.recall_curve[k] for k in ks], marker="o", markersize=3, label=run.mode)
        ax.set_xlabel("k (documents)")
        ax.set_ylabel("recall@k")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{report.kind}: {report.dataset} ({report.primary_group})")
        ax.grid(True, alpha=0.3)
        ax.legend(title="retrieval")
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)


def boundary_table(report: EvalReport) -> str:
    titles = ["chunking", "source", "questions", "in_document", "in_one_chunk", "across"]
    lines = ["".join(t.rjust(13) for t in titles)]
    for row in report.boundary or []:
        values = [
            row.chunking,
            row.source,
            str(row.questions),
            str(row.answer_in_document),
            str(row.in_one_chunk),
            str(row.across_boundary),
        ]
        line = "".join(v.rjust(13) for v in values)
        if row.across_ids:
            line += "  " + textwrap.shorten(", ".join(row.across_ids), width=60, placeholder=" ...")
        lines.append(line)
    return "\n".join(lines)
