"""SQuAD v1.1 and v2.0, open-domain: every paragraph is a document of one corpus; each
question is asked of the whole corpus. Scores whether the gold paragraph is retrieved and how
the answer compares with the gold answers (contains-gold, official EM and F1).

SQuAD 2.0's unanswerable questions are expected abstentions, scored as the official script
does: an abstention ("") scores 1 on them and 0 on an answerable question. `squad_exact` and
`squad_f1` average both kinds; `has_ans_*` and `no_ans_accuracy` report them apart. Retrieval
figures (hit@k, MRR) count the answerable questions only."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rag import metrics as m
from rag.engine import Engine
from rag.evaluation.data import SquadQuestion
from rag.evaluation.progress import track
from rag.evaluation.report import Metrics, Miss, RunResult
from rag.evaluation.retrieval import engine_variant, forget_cached_queries, retrieve_documents

HIT_KS = (1, 5, 10)
CURVE_KS = tuple(range(1, max(HIT_KS) + 1))


@dataclass(frozen=True, slots=True)
class SquadPrediction:
    id: str
    question: str
    gold_answers: list[str]
    gold_doc_id: str
    answered: bool
    answer: str | None
    confidence: float
    retrieved_doc_ids: list[str]  # top 10 paragraphs, best first
    latency_ms: float
    short_answer: str | None = None  # the few words answering a typed question, if given
    gold_answerable: bool = True

    def to_json(self) -> dict:
        return asdict(self)


def shortest(p: SquadPrediction) -> str:
    """The shortest answer given: the short answer when there is one, else the answer
    sentence ('' when abstaining)."""
    if not p.answered:
        return ""
    return p.short_answer or p.answer or ""


def official_predictions(predictions: Sequence[SquadPrediction]) -> dict[str, str]:
    """The official SQuAD predictions format: question id -> the shortest answer given ('' when
    abstaining), so the official script's EM and F1 are `short_exact_match` and `short_f1`."""
    return {p.id: shortest(p) for p in predictions}


def official_scores(p: SquadPrediction) -> tuple[float, float]:
    """(EM, F1) of the shortest answer as the official SQuAD 2.0 script scores it."""
    given = shortest(p)
    if not p.gold_answerable:
        return (float(given == ""),) * 2
    return m.exact_match(given, p.gold_answers), m.token_f1(given, p.gold_answers)


def score_predictions(predictions: Sequence[SquadPrediction]) -> Metrics:
    out: Metrics = {"questions": len(predictions)}
    has = [p for p in predictions if p.gold_answerable]
    no = [p for p in predictions if not p.gold_answerable]
    out["unanswerable_questions"] = len(no)
    official = [official_scores(p) for p in predictions]
    out["squad_exact"] = m.mean(e for e, _ in official)
    out["squad_f1"] = m.mean(f for _, f in official)
    out["has_ans_exact"] = m.mean(official_scores(p)[0] for p in has)
    out["has_ans_f1"] = m.mean(official_scores(p)[1] for p in has)
    out["no_ans_accuracy"] = m.mean(float(not p.answered) for p in no)
    latencies = [p.latency_ms for p in predictions]
    predictions = has  # the rest are about answers and retrieval: answerable questions
    for k in HIT_KS:
        out[f"hit@{k}"] = m.mean(
            m.hit_at_k(p.retrieved_doc_ids, {p.gold_doc_id}, k) for p in predictions
        )
    out["mrr@10"] = m.mean(
        m.reciprocal_rank(p.retrieved_doc_ids, {p.gold_doc_id}, 10) for p in predictions
    )
    answers = [(p.answer or "") if p.answered else "" for p in predictions]
    out["answer_contains"] = m.mean(
        float(m.contains_gold(a, p.gold_answers)) for a, p in zip(answers, predictions, strict=True)
    )
    out["exact_match"] = m.mean(
        m.exact_match(a, p.gold_answers) for a, p in zip(answers, predictions, strict=True)
    )
    out["f1"] = m.mean(
        m.token_f1(a, p.gold_answers) for a, p in zip(answers, predictions, strict=True)
    )
    shorts = [shortest(p) for p in predictions]
    out["short_answer_rate"] = m.mean(float(p.short_answer is not None) for p in predictions)
    out["short_answer_contains"] = m.mean(
        float(m.contains_gold(a, p.gold_answers)) for a, p in zip(shorts, predictions, strict=True)
    )
    out["short_exact_match"] = m.mean(
        m.exact_match(a, p.gold_answers) for a, p in zip(shorts, predictions, strict=True)
    )
    out["short_f1"] = m.mean(
        m.token_f1(a, p.gold_answers) for a, p in zip(shorts, predictions, strict=True)
    )
    out["abstention_rate"] = m.mean(float(not p.answered) for p in predictions)  # answerable
    out["latency_p50_ms"] = m.percentile(latencies, 50)
    out["latency_p95_ms"] = m.percentile(latencies, 95)
    return out


def recall_curve(predictions: Sequence[SquadPrediction]) -> dict[int, float]:
    predictions = [p for p in predictions if p.gold_answerable]
    curve = {}
    for k in CURVE_KS:
        value = m.mean(m.hit_at_k(p.retrieved_doc_ids, {p.gold_doc_id}, k) for p in predictions)
        if value is not None:
            curve[k] = value
    return curve


def misses(predictions: Sequence[SquadPrediction]) -> list[Miss]:
    out = []
    for p in predictions:
        reasons = []
        if not p.gold_answerable:
            if p.answered:
                reasons.append("answered an unanswerable question")
        elif p.gold_doc_id not in p.retrieved_doc_ids:
            reasons.append("gold paragraph not in the top 10")
        if p.gold_answerable and not p.answered:
            reasons.append("abstained")
        elif p.gold_answerable and not m.contains_gold(p.answer, p.gold_answers):
            reasons.append("answer lacks every gold answer")
        if reasons:
            out.append(
                Miss(
                    id=p.id,
                    question=p.question,
                    reasons=reasons,
                    answer=p.answer,
                    gold_answers=p.gold_answers,
                    gold_doc_ids=[p.gold_doc_id],
                    retrieved_doc_ids=p.retrieved_doc_ids,
                    confidence=p.confidence,
                )
            )
    return out


def predict(
    engine: Engine,
    questions: Sequence[SquadQuestion],
    *,
    mode: str | None = None,
    k: int | None = None,
    progress: bool = False,
) -> list[SquadPrediction]:
    mode = mode or engine.settings.retrieval_mode
    engine = engine_variant(engine, retrieval_mode=mode)
    rankings = retrieve_documents(
        engine, [q.question for q in questions], max(HIT_KS), mode=mode, progress=progress
    )
    forget_cached_queries(engine)
    out = []
    for q, ranking in track(
        list(zip(questions, rankings, strict=True)), f"ask ({mode})", bar=progress
    ):
        started = time.perf_counter()
        r = engine.ask(q.question, k=k)
        latency = (time.perf_counter() - started) * 1000
        out.append(
            SquadPrediction(
                id=q.id,
                question=q.question,
                gold_answers=list(q.answers),
                gold_doc_id=q.doc_id,
                answered=r.answerable,
                answer=r.answer,
                confidence=r.confidence,
                retrieved_doc_ids=[doc_id for doc_id, _ in ranking],
                latency_ms=round(latency, 3),
                short_answer=r.short_answer,
                gold_answerable=q.answerable,
            )
        )
    return out


def run_squad(
    engine: Engine,
    questions: Sequence[SquadQuestion],
    *,
    mode: str | None = None,
    k: int | None = None,
    verbose: bool = False,
    progress: bool = False,
) -> tuple[RunResult, list[SquadPrediction]]:
    mode = mode or engine.settings.retrieval_mode
    started = time.perf_counter()
    predictions = predict(engine, questions, mode=mode, k=k, progress=progress)
    result = RunResult(
        mode=mode,
        metrics={"all": score_predictions(predictions)},
        recall_curve=recall_curve(predictions),
        misses=misses(predictions) if verbose else None,
        seconds=round(time.perf_counter() - started, 2),
    )
    return result, predictions
