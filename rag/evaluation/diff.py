"""Saved reports and their differences: `rag eval --save-report A.json`, then
`rag eval --diff A.json B.json` lists the questions that got better or worse and every
metric's change. Pure, apart from reading and writing the files."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from rag import metrics as m
from rag.evaluation.bundled import Prediction, is_correct
from rag.evaluation.data import EvalDataError
from rag.evaluation.report import EvalReport
from rag.evaluation.squad import SquadPrediction

HIT_K = 5


class QuestionOutcome(BaseModel):
    id: str
    question: str
    correct: bool = Field(
        description="Bundled: answered with a gold string, or abstained on an unanswerable "
        "question. SQuAD: the answer contains a gold answer."
    )
    hit: bool | None = Field(description=f"A gold document among the top {HIT_K}.")
    answer: str | None = None


class SavedReport(BaseModel):
    """What --save-report writes: the report and each question's outcome, per mode."""

    format: Literal["rag-eval-report"] = "rag-eval-report"
    version: int = 1
    report: EvalReport
    questions: dict[str, list[QuestionOutcome]] = Field(default_factory=dict)


class MetricDelta(BaseModel):
    mode: str
    group: str
    metric: str
    a: float | int | None
    b: float | int | None
    delta: float | None


class QuestionChange(BaseModel):
    mode: str
    id: str
    question: str
    before: str
    after: str


class ReportDiff(BaseModel):
    a: str
    b: str
    metrics: list[MetricDelta]
    better: list[QuestionChange]
    worse: list[QuestionChange]
    only_in_a: list[str] = Field(default_factory=list, description="Mode/question ids.")
    only_in_b: list[str] = Field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.better
            or self.worse
            or self.only_in_a
            or self.only_in_b
            or any(
                d.delta not in (0, 0.0, None) or (d.a is None) != (d.b is None)
                for d in self.metrics
            )
        )


def outcomes(predictions: Sequence[Prediction | SquadPrediction]) -> list[QuestionOutcome]:
    out = []
    for p in predictions:
        if isinstance(p, SquadPrediction):
            correct = p.answered and m.contains_gold(p.answer, p.gold_answers)
            hit = p.gold_doc_id in p.retrieved_doc_ids[:HIT_K]
        else:
            correct = is_correct(p) if p.gold_answerable else not p.answered
            hit = (
                bool(m.hit_at_k(p.retrieved_doc_ids, p.gold_doc_ids, HIT_K))
                if p.gold_answerable
                else None
            )
        out.append(
            QuestionOutcome(id=p.id, question=p.question, correct=correct, hit=hit, answer=p.answer)
        )
    return out


def save_report(path: Path, report: EvalReport, outputs: dict[str, list]) -> None:
    questions = {}
    if report.kind != "beir":
        questions = {mode: outcomes(preds) for mode, preds in outputs.items()}
    saved = SavedReport(report=report, questions=questions)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(saved.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def load_report(path: Path) -> SavedReport:
    try:
        return SavedReport.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EvalDataError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalDataError(f"cannot read {path}: {exc}") from exc
    except ValidationError as exc:
        raise EvalDataError(
            f"{path} is not a report written by `rag eval --save-report` ({exc.error_count()} "
            "problems)"
        ) from exc


def _label(o: QuestionOutcome) -> str:
    parts = ["correct" if o.correct else "wrong"]
    if o.hit is not None:
        parts.append("gold retrieved" if o.hit else "gold not retrieved")
    return ", ".join(parts)


def _rank(o: QuestionOutcome) -> tuple[int, int]:
    return (int(o.correct), int(bool(o.hit)))


def diff_reports(
    a: SavedReport, b: SavedReport, *, a_name: str = "A", b_name: str = "B"
) -> ReportDiff:
    """Metric deltas for every (mode, group, metric) in both; questions whose outcome
    (correct first, then gold retrieved) rose or fell."""
    deltas = []
    runs_b = {r.mode: r for r in b.report.runs}
    for run_a in a.report.runs:
        run_b = runs_b.get(run_a.mode)
        if run_b is None:
            continue
        for group, metrics_a in run_a.metrics.items():
            metrics_b = run_b.metrics.get(group, {})
            for name, va in metrics_a.items():
                if name not in metrics_b:
                    continue
                vb = metrics_b[name]
                delta = None if va is None or vb is None else round(float(vb) - float(va), 6)
                deltas.append(
                    MetricDelta(mode=run_a.mode, group=group, metric=name, a=va, b=vb, delta=delta)
                )
    better, worse, only_a, only_b = [], [], [], []
    for mode, rows_a in a.questions.items():
        by_id_b = {o.id: o for o in b.questions.get(mode, [])}
        ids_a = set()
        for oa in rows_a:
            ids_a.add(oa.id)
            ob = by_id_b.get(oa.id)
            if ob is None:
                only_a.append(f"{mode}/{oa.id}")
                continue
            change = QuestionChange(
                mode=mode, id=oa.id, question=oa.question, before=_label(oa), after=_label(ob)
            )
            if _rank(ob) > _rank(oa):
                better.append(change)
            elif _rank(ob) < _rank(oa):
                worse.append(change)
        only_b += [f"{mode}/{i}" for i in by_id_b if i not in ids_a]
    return ReportDiff(
        a=a_name,
        b=b_name,
        metrics=deltas,
        better=better,
        worse=worse,
        only_in_a=only_a,
        only_in_b=only_b,
    )


def render_diff(diff: ReportDiff) -> str:
    from rag.evaluation.render import format_value

    lines = [f"diff: A = {diff.a}, B = {diff.b}"]
    if not diff.changed:
        lines.append("no change: same metrics and the same outcome for every question")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'mode':8s} {'group':8s} {'metric':22s} {'A':>9s} {'B':>9s} {'B - A':>9s}")
    for d in diff.metrics:
        delta = (
            "-"
            if d.delta is None
            else (f"{d.delta:+.1f}" if d.metric.endswith("_ms") else f"{d.delta:+.3f}")
        )
        if d.delta == 0:
            delta = "0"
        lines.append(
            f"{d.mode:8s} {d.group:8s} {d.metric:22s} {format_value(d.metric, d.a):>9s} "
            f"{format_value(d.metric, d.b):>9s} {delta:>9s}"
        )
    for title, rows in (("better", diff.better), ("worse", diff.worse)):
        lines += ["", f"{title} in B: {len(rows)}"]
        lines += [f"  {r.mode}  {r.id}  {r.question}\n      {r.before} -> {r.after}" for r in rows]
    if diff.only_in_a or diff.only_in_b:
        lines += ["", f"only in A: {len(diff.only_in_a)}; only in B: {len(diff.only_in_b)}"]
    return "\n".join(lines)
