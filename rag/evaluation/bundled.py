"""The bundled question set: ask every question, record a prediction for each, and score the
predictions (retrieval, answers, citations, abstention, latency) per split."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from rag import metrics as m
from rag.engine import Engine
from rag.evaluation.data import BUNDLED_SPLITS, QAItem
from rag.evaluation.progress import track
from rag.evaluation.report import Metrics, Miss, RunResult, SweepRow
from rag.evaluation.retrieval import engine_variant, forget_cached_queries, retrieve_chunks
from rag.models import AskResponse, Citation

RETRIEVAL_DEPTH = 10  # passages retrieved for the document-level retrieval metrics
CURVE_KS = tuple(range(1, RETRIEVAL_DEPTH + 1))


@dataclass(frozen=True, slots=True)
class CitationCheck:
    doc_id: str
    chunk_id: str
    start: int
    end: int
    quote: str
    valid: bool  # quote == document.text[start:end]
    supported: bool | None = None  # the engine's support check (None: not checked)
    support: float | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the system did with one question, next to the gold data (one line of
    --save-predictions)."""

    id: str
    question: str
    split: str
    type: str
    gold_answerable: bool
    gold_answers: list[str]
    gold_doc_ids: list[str]
    answered: bool
    answer: str | None
    confidence: float
    retrieved_doc_ids: list[str]  # distinct documents of the top-10 passages, best first
    citations: list[CitationCheck] = field(default_factory=list)
    latency_ms: float = 0.0
    # The answer the system would give whatever the threshold (for --sweep-threshold);
    # None when it was not asked for or there is none.
    forced_answer: str | None = None
    short_answer: str | None = None  # the few words answering a typed question, if given

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> Prediction:
        citations = [CitationCheck(**c) for c in obj.get("citations", [])]
        return cls(**{**obj, "citations": citations})


# scoring (pure)


def is_correct(p: Prediction) -> bool:
    """Answered, and the answer contains a gold string."""
    return p.answered and m.contains_gold(p.answer, p.gold_answers)


def shortest(p: Prediction) -> str:
    """The shortest answer the system gave: the short answer when there is one, else the
    answer sentence ('' when abstaining)."""
    if not p.answered:
        return ""
    return p.short_answer or p.answer or ""


def score_predictions(predictions: Sequence[Prediction]) -> Metrics:
    """Every metric of the bundled evaluation over `predictions` (see eval/README.md)."""
    answerable = [p for p in predictions if p.gold_answerable]
    ranked = [(p.retrieved_doc_ids, set(p.gold_doc_ids)) for p in answerable]
    out: Metrics = {
        "questions": len(predictions),
        "answerable": len(answerable),
        "unanswerable": len(predictions) - len(answerable),
    }
    for k in (1, 3, 5):
        out[f"hit@{k}"] = m.mean(m.hit_at_k(r, gold, k) for r, gold in ranked)
    out["mrr@10"] = m.mean(m.reciprocal_rank(r, gold, 10) for r, gold in ranked)
    out["ndcg@10"] = m.mean(m.ndcg_at_k(r, dict.fromkeys(gold, 1), 10) for r, gold in ranked)
    out["answer_accuracy"] = m.mean(float(is_correct(p)) for p in answerable)
    out["token_f1"] = m.mean(
        m.token_f1(p.answer or "", p.gold_answers) if p.answered else 0.0 for p in answerable
    )
    out["short_answer_rate"] = m.mean(float(p.short_answer is not None) for p in answerable)
    out["short_answer_accuracy"] = m.mean(
        float(p.answered and m.contains_gold(shortest(p), p.gold_answers)) for p in answerable
    )
    out["short_token_f1"] = m.mean(m.token_f1(shortest(p), p.gold_answers) for p in answerable)
    gold_citations = [
        c.doc_id in p.gold_doc_ids for p in answerable if p.answered for c in p.citations
    ]
    out["citation_precision"] = m.mean(float(x) for x in gold_citations)
    out["citation_support"] = m.mean(
        float(c.supported)
        for p in predictions
        if p.answered
        for c in p.citations
        if c.supported is not None
    )
    out["citation_validity"] = m.mean(float(c.valid) for p in predictions for c in p.citations)
    precision, recall, f1 = m.precision_recall_f1(
        [not p.answered for p in predictions], [not p.gold_answerable for p in predictions]
    )
    out["abstention_precision"] = precision
    out["abstention_recall"] = recall
    out["abstention_f1"] = f1
    out["overall_accuracy"] = m.mean(
        float(is_correct(p) if p.gold_answerable else not p.answered) for p in predictions
    )
    latencies = [p.latency_ms for p in predictions]
    out["latency_p50_ms"] = m.percentile(latencies, 50)
    out["latency_p95_ms"] = m.percentile(latencies, 95)
    out["latency_p99_ms"] = m.percentile(latencies, 99)
    return out


def recall_curve(
    predictions: Sequence[Prediction], ks: Sequence[int] = CURVE_KS
) -> dict[int, float]:
    answerable = [p for p in predictions if p.gold_answerable]
    curve = {}
    for k in ks:
        value = m.mean(m.recall_at_k(p.retrieved_doc_ids, p.gold_doc_ids, k) for p in answerable)
        if value is not None:
            curve[k] = value
    return curve


def sweep_thresholds(
    confidences: Sequence[float], current: float | None = None, step: float = 0.05
) -> list[float]:
    """A grid of thresholds spanning the observed confidences (plus the current one)."""
    if not confidences:
        return [current] if current is not None else []
    lo = math.floor(min(confidences) / step) * step
    hi = math.ceil(max(confidences) / step) * step + step
    n = round((hi - lo) / step)
    grid = {round(lo + i * step, 4) for i in range(n + 1)}
    if current is not None and math.isfinite(current):
        grid.add(round(current, 4))
    return sorted(grid)


def threshold_sweep(
    predictions: Sequence[Prediction], thresholds: Sequence[float]
) -> list[SweepRow]:
    """Answer accuracy and abstention quality had the system answered exactly when
    `confidence >= threshold`, using each prediction's `forced_answer`."""
    rows = []
    for t in thresholds:
        answered = [p.forced_answer is not None and p.confidence >= t for p in predictions]
        correct = [
            a and m.contains_gold(p.forced_answer, p.gold_answers)
            for p, a in zip(predictions, answered, strict=True)
        ]
        precision, recall, f1 = m.precision_recall_f1(
            [not a for a in answered], [not p.gold_answerable for p in predictions]
        )
        rows.append(
            SweepRow(
                threshold=t,
                answered=sum(answered),
                answer_accuracy=m.mean(
                    float(c) for p, c in zip(predictions, correct, strict=True) if p.gold_answerable
                ),
                abstention_precision=precision,
                abstention_recall=recall,
                abstention_f1=f1,
                overall_accuracy=m.mean(
                    float(c if p.gold_answerable else not a)
                    for p, a, c in zip(predictions, answered, correct, strict=True)
                ),
            )
        )
    return rows


def misses(predictions: Sequence[Prediction], hit_k: int = 5) -> list[Miss]:
    out = []
    for p in predictions:
        reasons = []
        if p.gold_answerable:
            if not m.hit_at_k(p.retrieved_doc_ids, p.gold_doc_ids, hit_k):
                reasons.append(f"no gold document in the top {hit_k}")
            if not p.answered:
                reasons.append("abstained")
            elif not is_correct(p):
                reasons.append("answer lacks every gold string")
            if p.answered and any(c.doc_id not in p.gold_doc_ids for c in p.citations):
                reasons.append("cites a non-gold document")
        elif p.answered:
            reasons.append("answered an unanswerable question")
        if any(not c.valid for c in p.citations):
            reasons.append("a citation does not match its document's text")
        if any(c.supported is False for c in p.citations):
            reasons.append("a citation's quote does not support the answer")
        if reasons:
            out.append(
                Miss(
                    id=p.id,
                    question=p.question,
                    split=p.split,
                    reasons=reasons,
                    answer=p.answer,
                    gold_answers=p.gold_answers,
                    gold_doc_ids=p.gold_doc_ids,
                    retrieved_doc_ids=p.retrieved_doc_ids,
                    confidence=p.confidence,
                )
            )
    return out


def group_predictions(predictions: Sequence[Prediction], split: str) -> dict[str, list[Prediction]]:
    """`all` and each split when evaluating everything; else just the split."""
    if split != "all":
        return {split: [p for p in predictions if p.split == split]}
    groups = {"all": list(predictions)}
    for s in BUNDLED_SPLITS:
        groups[s] = [p for p in predictions if p.split == s]
    return groups


# running


def prediction(
    item: QAItem,
    r: AskResponse,
    *,
    retrieved_doc_ids: list[str],
    valid: Callable[[Citation], bool],
    latency_ms: float,
    forced_answer: str | None = None,
) -> Prediction:
    """One question's outcome: the gold of `item` beside the response `r` (in process or
    from a running service), each citation checked by `valid`."""
    return Prediction(
        id=item.id,
        question=item.question,
        split=item.split,
        type=item.type,
        gold_answerable=item.answerable,
        gold_answers=list(item.answers),
        gold_doc_ids=list(item.doc_ids),
        answered=r.answerable,
        answer=r.answer,
        confidence=r.confidence,
        retrieved_doc_ids=retrieved_doc_ids,
        citations=[
            CitationCheck(
                c.doc_id, c.chunk_id, c.start, c.end, c.quote, valid(c), c.supported, c.support
            )
            for c in r.citations
        ],
        latency_ms=round(latency_ms, 3),
        forced_answer=forced_answer,
        short_answer=r.short_answer,
    )


def predict(
    engine: Engine,
    items: Sequence[QAItem],
    *,
    mode: str | None = None,
    k: int | None = None,
    force_answers: bool = False,
    progress: bool = False,
) -> list[Prediction]:
    """Ask every question (retrieval mode `mode`, `k` passages per answer) and check its
    citations against the documents. `force_answers`: also record, for each abstention, the
    answer the system would have given (for threshold sweeps)."""
    mode = mode or engine.settings.retrieval_mode
    engine = engine_variant(engine, retrieval_mode=mode)
    retrieved = retrieve_chunks(engine, [it.question for it in items], RETRIEVAL_DEPTH, mode=mode)
    texts: dict[str, str] = {}

    def valid(c: Citation) -> bool:
        if c.doc_id not in texts:
            texts[c.doc_id] = engine.document(c.doc_id).text
        return texts[c.doc_id][c.start : c.end] == c.quote

    forced = (
        engine_variant(engine, min_score=-math.inf, min_answerable=0.0, min_dense=-math.inf)
        if force_answers
        else None
    )
    forget_cached_queries(engine)
    predictions = []
    for item, hits in track(
        list(zip(items, retrieved, strict=True)), f"ask ({mode})", bar=progress
    ):
        started = time.perf_counter()
        r = engine.ask(item.question, k=k)
        latency = (time.perf_counter() - started) * 1000
        forced_answer = r.answer if r.answerable else None
        if forced is not None and not r.answerable:
            forced_answer = forced.ask(item.question, k=k).answer
        predictions.append(
            prediction(
                item,
                r,
                retrieved_doc_ids=m.distinct(h.doc_id for h in hits),
                valid=valid,
                latency_ms=latency,
                forced_answer=forced_answer,
            )
        )
    return predictions


def run_bundled(
    engine: Engine,
    items: Sequence[QAItem],
    *,
    split: str = "all",
    mode: str | None = None,
    k: int | None = None,
    sweep: bool = False,
    verbose: bool = False,
    progress: bool = False,
) -> tuple[RunResult, list[Prediction]]:
    """One retrieval mode over the questions of `split` (tune, report or all)."""
    mode = mode or engine.settings.retrieval_mode
    started = time.perf_counter()
    chosen = [it for it in items if split == "all" or it.split == split]
    predictions = predict(engine, chosen, mode=mode, k=k, force_answers=sweep, progress=progress)
    groups = group_predictions(predictions, split)
    primary = next(iter(groups.values()))
    result = RunResult(
        mode=mode,
        metrics={name: score_predictions(group) for name, group in groups.items()},
        recall_curve=recall_curve(primary),
        sweep=threshold_sweep(
            primary,
            sweep_thresholds([p.confidence for p in primary], engine.settings.min_score),
        )
        if sweep
        else None,
        misses=misses(primary) if verbose else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    return result, predictions
