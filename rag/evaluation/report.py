"""The evaluation report (the `rag eval --json` contract) and threshold gates (`--min`/`--max`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from rag.evaluation.boundary import BoundaryRow

MetricValue = float | int | None
Metrics = dict[str, MetricValue]


class SweepRow(BaseModel):
    """Outcomes had the abstention threshold been `threshold` (answer iff confidence >= it)."""

    threshold: float
    answered: int
    answer_accuracy: float | None = Field(description="Answerable questions answered correctly.")
    abstention_precision: float | None
    abstention_recall: float | None
    abstention_f1: float | None
    overall_accuracy: float | None = Field(
        description="Answerable questions answered correctly plus unanswerable ones abstained on."
    )


class Miss(BaseModel):
    """A question the system got wrong in some way, for `--verbose`."""

    id: str
    question: str
    split: str | None = None
    reasons: list[str]
    answer: str | None = None
    gold_answers: list[str] = []
    gold_doc_ids: list[str] = []
    retrieved_doc_ids: list[str] = []
    confidence: float | None = None


class RunResult(BaseModel):
    """One retrieval configuration's results."""

    mode: str
    metrics: dict[str, Metrics] = Field(description="Group (split) name -> metric -> value.")
    recall_curve: dict[int, float] = Field(
        default_factory=dict, description="k -> mean recall of the gold documents in the top k."
    )
    sweep: list[SweepRow] | None = None
    misses: list[Miss] | None = None
    seconds: float


class EvalReport(BaseModel):
    kind: Literal["bundled", "beir", "squad"]
    dataset: str
    split: str
    primary_group: str = Field(description="The group that --min/--max thresholds apply to.")
    n_questions: int
    index_path: str
    index_built: bool
    index_seconds: float
    n_documents: int
    n_chunks: int
    model: str
    backends: str | None = Field(
        default=None, description="Embedding backends: documents', then questions' if other."
    )
    chunking: dict[str, int | str]
    k: int | None = Field(default=None, description="Passages an answer is composed from.")
    min_score: float | None = None
    answering: str | None = Field(
        default=None,
        description="How answers were found: the reader with its file, windows and threshold, "
        "or the sentence method.",
    )
    runs: list[RunResult]
    boundary: list[BoundaryRow] | None = Field(
        default=None,
        description="Gold answers in a document but in no single chunk, per chunk setting.",
    )


@dataclass(frozen=True, slots=True)
class Gate:
    metric: str
    value: float
    kind: Literal["min", "max"]

    def passes(self, actual: MetricValue) -> bool:
        if actual is None or (isinstance(actual, float) and math.isnan(actual)):
            return False
        return actual >= self.value if self.kind == "min" else actual <= self.value


def parse_gate(text: str, kind: Literal["min", "max"]) -> Gate:
    """`METRIC=VALUE`, e.g. `hit@5=0.9`."""
    metric, sep, value = text.partition("=")
    if not sep or not metric.strip():
        raise ValueError(f"expected METRIC=VALUE, got {text!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number (in {text!r})") from None
    return Gate(metric.strip(), number, kind)


def check_gates(report: EvalReport, gates: list[Gate]) -> list[str]:
    """A sentence for each gate a run fails, on the report's primary group; [] when all pass.

    Raises KeyError naming the metrics available when a gate names an unknown one."""
    failures = []
    for gate in gates:
        for run in report.runs:
            metrics = run.metrics.get(report.primary_group, {})
            if gate.metric not in metrics:
                known = ", ".join(sorted(metrics))
                raise KeyError(f"unknown metric {gate.metric!r}; this evaluation has: {known}")
            actual = metrics[gate.metric]
            if not gate.passes(actual):
                shown = "undefined" if actual is None else f"{actual:.4g}"
                op = "<" if gate.kind == "min" else ">"
                failures.append(
                    f"{gate.metric} = {shown} {op} {gate.value:g} "
                    f"(mode {run.mode}, {report.primary_group})"
                )
    return failures
