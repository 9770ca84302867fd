"""BEIR-format retrieval benchmarks: rank documents (by their best chunk) for every judged
query and score the run with ir-measures (nDCG@10, Recall@100, MRR@10)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rag import metrics as m
from rag.engine import Engine
from rag.evaluation.data import BeirData
from rag.evaluation.report import Metrics, Miss, RunResult
from rag.evaluation.retrieval import engine_variant, retrieve_documents

RUN_DEPTH = 100  # documents per query in the run
CHUNK_DEPTH = 200  # chunks retrieved first to fill them
CURVE_KS = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100)
METRIC_NAMES = ("queries", "ndcg@10", "recall@100", "mrr@10", "mean_search_ms")

Run = dict[str, list[tuple[str, float]]]  # query id -> documents best first, with scores


def ir_metrics(qrels: Mapping[str, Mapping[str, int]], run: Run) -> Metrics:
    """nDCG@10, Recall@100 and MRR@10 of `run`, computed by ir-measures."""
    import ir_measures
    from ir_measures import RR, R, nDCG

    measures = {"ndcg@10": nDCG @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10}
    scores = ir_measures.calc_aggregate(
        list(measures.values()), _plain_qrels(qrels), _run_dict(run)
    )
    return {name: float(scores[measure]) for name, measure in measures.items()}


def per_query_ndcg(qrels: Mapping[str, Mapping[str, int]], run: Run) -> dict[str, float]:
    import ir_measures
    from ir_measures import nDCG

    return {
        metric.query_id: float(metric.value)
        for metric in ir_measures.iter_calc([nDCG @ 10], _plain_qrels(qrels), _run_dict(run))
    }


def recall_curve(qrels: Mapping[str, Mapping[str, int]], run: Run) -> dict[int, float]:
    curve = {}
    for k in CURVE_KS:
        value = m.mean(
            m.recall_at_k(
                [doc_id for doc_id, _ in run.get(qid, [])],
                {d for d, grade in judged.items() if grade > 0},
                k,
            )
            for qid, judged in qrels.items()
        )
        if value is not None:
            curve[k] = value
    return curve


def retrieve_run(
    engine: Engine,
    queries: Mapping[str, str],
    *,
    mode: str | None = None,
    depth: int = RUN_DEPTH,
    progress: bool = False,
) -> Run:
    """The top-`depth` documents for every query, scored by their best chunk."""
    mode = mode or engine.settings.retrieval_mode
    engine = engine_variant(engine, retrieval_mode=mode)
    ids = list(queries)
    rankings = retrieve_documents(
        engine,
        [queries[q] for q in ids],
        depth,
        depth=max(CHUNK_DEPTH, depth),
        mode=mode,
        progress=progress,
    )
    return dict(zip(ids, rankings, strict=True))


def misses(data: BeirData, run: Run, per_query: Mapping[str, float]) -> list[Miss]:
    """Queries with nothing relevant in the top 10."""
    return [
        Miss(
            id=qid,
            question=data.queries[qid],
            reasons=["no relevant document in the top 10"],
            gold_doc_ids=sorted(d for d, g in data.qrels[qid].items() if g > 0),
            retrieved_doc_ids=[doc_id for doc_id, _ in run.get(qid, [])[:10]],
        )
        for qid in data.queries
        if per_query.get(qid, 0.0) == 0.0
    ]


def run_beir(
    engine: Engine,
    data: BeirData,
    *,
    mode: str | None = None,
    verbose: bool = False,
    progress: bool = False,
    group: str = "test",
) -> tuple[RunResult, Run]:
    mode = mode or engine.settings.retrieval_mode
    started = time.perf_counter()
    run = retrieve_run(engine, data.queries, mode=mode, progress=progress)
    seconds = time.perf_counter() - started
    scores: Metrics = {"queries": len(data.queries), **ir_metrics(data.qrels, run)}
    scores["mean_search_ms"] = round(1000 * seconds / max(1, len(data.queries)), 3)
    result = RunResult(
        mode=mode,
        metrics={group: scores},
        recall_curve=recall_curve(data.qrels, run),
        misses=misses(data, run, per_query_ndcg(data.qrels, run)) if verbose else None,
        seconds=round(seconds, 2),
    )
    return result, run


def _plain_qrels(qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {q: {d: int(g) for d, g in docs.items()} for q, docs in qrels.items()}


def _run_dict(run: Run) -> dict[str, dict[str, float]]:
    return {q: {d: float(s) for d, s in ranked} for q, ranked in run.items()}
