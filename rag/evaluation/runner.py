"""Evaluations end to end: data and index in, an `EvalReport` (and each mode's raw outputs) out.

The embedding model is passed in, loaded once by the caller; indexes are built or reused
under the cache directory unless an existing index is named.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from index import Document
from rag.config import Settings
from rag.embed.embedding import Embedder
from rag.engine import Engine
from rag.evaluation import beir, bundled, squad
from rag.evaluation.boundary import BoundaryRow, GoldItem, boundary_row, rechunk
from rag.evaluation.cache import DEFAULT_CACHE_DIR, prepare_index
from rag.evaluation.data import (
    EvalDataError,
    load_beir,
    load_bundled,
    load_squad,
    write_json,
    write_jsonl,
    write_trec_run,
)
from rag.evaluation.report import EvalReport, RunResult
from rag.ingest.documents import corpus_hash, load_corpus

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Opened:
    engine: Engine
    built: bool
    seconds: float


def open_engine(
    settings: Settings,
    embedder: Embedder,
    documents: Sequence[Document],
    *,
    name: str,
    index_path: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> Opened:
    """An engine over `index_path` if given (it should hold `documents`), else over a cached
    index of `documents` under `cache_dir`, built if need be."""
    if index_path is not None:
        engine = Engine.load(settings.model_copy(update={"index_path": index_path}), embedder)
        if engine.index.manifest.corpus_hash != corpus_hash(documents):
            logger.warning(
                "the index at %s does not hold exactly the evaluation corpus (%d documents); "
                "figures may not be comparable",
                index_path,
                len(documents),
            )
        return Opened(engine, False, 0.0)
    prepared = prepare_index(settings, embedder, documents, name=name, cache_dir=cache_dir)
    return Opened(Engine.load(prepared.settings, embedder), prepared.built, prepared.seconds)


def _report(
    kind: Literal["bundled", "beir", "squad"],
    opened: Opened,
    runs: list[RunResult],
    *,
    dataset: str,
    split: str,
    primary_group: str,
    n_questions: int,
    k: int | None = None,
    min_score: float | None = None,
) -> EvalReport:
    manifest = opened.engine.index.manifest
    embedder = opened.engine.embedder
    backends = getattr(embedder, "backend", None)
    if backends and getattr(embedder, "query_backend", backends) != backends:
        backends += f", questions {embedder.query_backend}"
    return EvalReport(
        kind=kind,
        dataset=dataset,
        split=split,
        primary_group=primary_group,
        n_questions=n_questions,
        index_path=str(opened.engine.index.path.parent),
        index_built=opened.built,
        index_seconds=opened.seconds,
        n_documents=manifest.n_documents,
        n_chunks=manifest.n_chunks,
        model=manifest.model,
        backends=backends,
        chunking=manifest.chunking,
        k=k,
        min_score=min_score,
        answering=answering(opened.engine) if kind != "beir" else None,
        runs=runs,
    )


def answering(engine: Engine) -> str:
    s = engine.settings
    if engine.reader is None or s.answer_mode != "reader":
        return f"sentence method, min_score {s.min_score:g}"
    return (
        f"reader {engine.reader.name}, {s.reader_windows} windows of {engine.reader.max_length} "
        f"tokens, min_answerable {s.min_answerable:g}"
    )


def boundary_rows(
    engine: Engine,
    documents: Sequence[Document],
    items: Sequence[GoldItem],
    chunk_sizes: Sequence[tuple[int, int]] = (),
) -> list[BoundaryRow]:
    """The boundary report for the evaluated index's chunks, then for each of `chunk_sizes`
    (documents re-chunked, not embedded)."""
    doc_ids = sorted({d for it in items for d in it.doc_ids})
    store = engine.index.store
    known = {s.id for s in store.summaries(ids=doc_ids)}
    texts = {d: store.get_document(d).text for d in doc_ids if d in known}
    chunks = {d: [(c.start, c.end) for c in store.chunks_of(d)] for d in texts}
    setting = engine.index.manifest.chunking
    label = f"{setting.get('max_tokens')}/{setting.get('overlap')}"
    rows = [boundary_row(items, texts, chunks, chunking=label, source="index")]
    wanted = [d for d in documents if d.id in texts]
    for size, overlap in chunk_sizes:
        spans = rechunk(wanted, size, overlap, engine.index.manifest.tokenizer)
        rows.append(
            boundary_row(items, texts, spans, chunking=f"{size}/{overlap}", source="rechunked")
        )
    return rows


def evaluate_bundled(
    settings: Settings,
    embedder: Embedder,
    path: Path,
    *,
    modes: Sequence[str],
    split: str = "all",
    k: int | None = None,
    sweep: bool = False,
    verbose: bool = False,
    index_path: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: bool = False,
    chunk_sizes: Sequence[tuple[int, int]] = (),
) -> tuple[EvalReport, dict[str, list[bundled.Prediction]]]:
    """The bundled-format question set at `path` over the bundled corpus (or `index_path`)."""
    items = load_bundled(path)
    documents = load_corpus(settings.corpus_dir, max_file_bytes=settings.max_file_bytes)
    opened = open_engine(
        settings, embedder, documents, name="bundled", index_path=index_path, cache_dir=cache_dir
    )
    runs, outputs = [], {}
    for mode in modes:
        run, predictions = bundled.run_bundled(
            opened.engine,
            items,
            split=split,
            mode=mode,
            k=k,
            sweep=sweep,
            verbose=verbose,
            progress=progress,
        )
        runs.append(run)
        outputs[mode] = predictions
    n = sum(1 for it in items if split == "all" or it.split == split)
    report = _report(
        "bundled",
        opened,
        runs,
        dataset=str(path),
        split=split,
        primary_group=split,
        n_questions=n,
        k=k or opened.engine.settings.k,
        min_score=opened.engine.settings.min_score,
    )
    gold = [
        GoldItem(it.id, it.answers, it.doc_ids)
        for it in items
        if it.answerable and (split == "all" or it.split == split)
    ]
    report.boundary = boundary_rows(opened.engine, documents, gold, chunk_sizes)
    return report, outputs


def evaluate_beir(
    settings: Settings,
    embedder: Embedder,
    directory: Path,
    *,
    modes: Sequence[str],
    split: str = "test",
    limit: int | None = None,
    verbose: bool = False,
    index_path: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: bool = False,
) -> tuple[EvalReport, dict[str, beir.Run]]:
    """A BEIR-format dataset: retrieval only, scored with ir-measures; `limit`: the first N
    judged queries."""
    data = load_beir(directory, split)
    if limit is not None:
        queries = dict(list(data.queries.items())[:limit])
        data = replace(data, queries=queries, qrels={q: data.qrels[q] for q in queries})
    opened = open_engine(
        settings,
        embedder,
        data.documents,
        name=f"beir-{data.name}",
        index_path=index_path,
        cache_dir=cache_dir,
    )
    runs, outputs = [], {}
    for mode in modes:
        run, ranked = beir.run_beir(
            opened.engine, data, mode=mode, verbose=verbose, progress=progress, group=split
        )
        runs.append(run)
        outputs[mode] = ranked
    report = _report(
        "beir",
        opened,
        runs,
        dataset=str(directory),
        split=split if limit is None else f"{split}, first {limit}",
        primary_group=split,
        n_questions=len(data.queries),
    )
    return report, outputs


def evaluate_squad(
    settings: Settings,
    embedder: Embedder,
    path: Path,
    *,
    modes: Sequence[str],
    k: int | None = None,
    limit: int | None = None,
    verbose: bool = False,
    index_path: Path | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: bool = False,
    chunk_sizes: Sequence[tuple[int, int]] = (),
    articles: Sequence[str] | None = None,
) -> tuple[EvalReport, dict[str, list[squad.SquadPrediction]]]:
    """A SQuAD v1.1 or v2.0 file, open-domain over all its paragraphs; `limit`: the first N
    questions; `articles`: only the questions of these articles."""
    data = load_squad(path)
    questions = data.questions
    if articles:
        unknown = set(articles) - {q.article for q in questions}
        if unknown:
            raise EvalDataError(f"{path} has no article titled {sorted(unknown)}")
        questions = [q for q in questions if q.article in set(articles)]
    questions = questions[:limit] if limit is not None else questions
    opened = open_engine(
        settings,
        embedder,
        data.documents,
        name=f"squad-{data.name}",
        index_path=index_path,
        cache_dir=cache_dir,
    )
    runs, outputs = [], {}
    for mode in modes:
        run, predictions = squad.run_squad(
            opened.engine, questions, mode=mode, k=k, verbose=verbose, progress=progress
        )
        runs.append(run)
        outputs[mode] = predictions
    report = _report(
        "squad",
        opened,
        runs,
        dataset=str(path),
        split=("all" if not articles else f"articles {', '.join(articles)}")
        + ("" if limit is None else f", first {limit}"),
        primary_group="all",
        n_questions=len(questions),
        k=k or opened.engine.settings.k,
        min_score=opened.engine.settings.min_score,
    )
    gold = [GoldItem(q.id, q.answers, (q.doc_id,)) for q in questions]
    report.boundary = boundary_rows(opened.engine, data.documents, gold, chunk_sizes)
    return report, outputs


def metric_names(kind: Literal["bundled", "beir", "squad"]) -> list[str]:
    """The metrics an evaluation of `kind` reports (what --min/--max may name)."""
    if kind == "bundled":
        return list(bundled.score_predictions([]))
    if kind == "squad":
        return list(squad.score_predictions([]))
    return list(beir.METRIC_NAMES)


def output_paths(path: Path, modes: Sequence[str]) -> dict[str, Path]:
    """`path` for a single mode; `<stem>.<mode><suffix>` beside it for each of several."""
    path = Path(path)
    if len(modes) == 1:
        return {modes[0]: path}
    return {mode: path.with_name(f"{path.stem}.{mode}{path.suffix}") for mode in modes}


def save_predictions(
    kind: Literal["bundled", "squad"], outputs: dict[str, list], path: Path
) -> list[Path]:
    """Bundled: one JSON object per question (JSONL). SQuAD: the official `{id: answer}`."""
    written = []
    for mode, target in output_paths(path, list(outputs)).items():
        if kind == "squad":
            write_json(target, squad.official_predictions(outputs[mode]))
        else:
            write_jsonl(target, (p.to_json() for p in outputs[mode]))
        written.append(target)
    return written


def save_runs(outputs: dict[str, beir.Run], path: Path) -> list[Path]:
    """TREC run files, tagged `rag-<mode>`."""
    written = []
    for mode, target in output_paths(path, list(outputs)).items():
        write_trec_run(target, outputs[mode], tag=f"rag-{mode}")
        written.append(target)
    return written
