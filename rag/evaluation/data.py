"""Evaluation data in and results out: the bundled JSONL set, BEIR and SQuAD v1.1 files,
TREC run files and prediction files. Loaders return plain frozen dataclasses."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.records import Document
from rag.ingest.cleaning import normalize

logger = logging.getLogger(__name__)

BUNDLED_SPLITS = ("tune", "report")


class EvalDataError(ValueError):
    """An evaluation file that cannot be read; the message names the file (and line)."""


# the bundled format


@dataclass(frozen=True, slots=True)
class QAItem:
    """One question of the bundled format (see eval/README.md)."""

    id: str
    question: str
    answers: tuple[str, ...]
    doc_ids: tuple[str, ...]
    answerable: bool
    type: str
    split: str


def load_bundled(path: Path) -> list[QAItem]:
    """The questions of a bundled-format JSONL file, in file order."""
    path = Path(path)
    items: list[QAItem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{where}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise EvalDataError(f"{where}: expected a JSON object")
        item = _qa_item(obj, where)
        if item.id in seen:
            raise EvalDataError(f"{where}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise EvalDataError(f"{path} holds no questions")
    return items


def _qa_item(obj: dict, where: str) -> QAItem:
    for key in ("id", "question"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise EvalDataError(f'{where}: "{key}" must be a non-empty string')
    answers = obj.get("answers", [])
    doc_ids = obj.get("doc_ids", [])
    for key, value in (("answers", answers), ("doc_ids", doc_ids)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise EvalDataError(f'{where}: "{key}" must be a list of strings')
    answerable = obj.get("answerable", bool(answers))
    if not isinstance(answerable, bool):
        raise EvalDataError(f'{where}: "answerable" must be true or false')
    if answerable and not answers:
        raise EvalDataError(f"{where}: an answerable question needs at least one answer")
    split = obj.get("split", "report")
    if split not in BUNDLED_SPLITS:
        raise EvalDataError(f'{where}: "split" must be one of {", ".join(BUNDLED_SPLITS)}')
    return QAItem(
        id=obj["id"],
        question=obj["question"],
        answers=tuple(answers),
        doc_ids=tuple(doc_ids),
        answerable=answerable,
        type=str(obj.get("type", "unanswerable" if not answerable else "")),
        split=split,
    )


# BEIR


@dataclass(frozen=True, slots=True)
class BeirData:
    name: str
    documents: list[Document]
    queries: dict[str, str]  # only the queries judged in the split, in file order
    qrels: dict[str, dict[str, int]]  # query id -> document id -> grade


def beir_document(obj: Mapping) -> Document:
    """A BEIR corpus record as a document: title and abstract, normalised but not run
    through the news cleaner (its header rules would cut scientific text)."""
    title = str(obj.get("title") or "").strip()
    body = str(obj.get("text") or "")
    text = normalize(f"{title}\n\n{body}" if title else body)
    return Document(id=str(obj["_id"]), title=title, text=text)


def load_beir(directory: Path, split: str = "test") -> BeirData:
    """A BEIR dataset: `corpus.jsonl`, `queries.jsonl` and `qrels/<split>.tsv`."""
    directory = Path(directory)
    qrels_path = directory / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (directory / "qrels").glob("*.tsv"))
        raise EvalDataError(
            f"{qrels_path} does not exist"
            + (f"; splits available: {', '.join(available)}" if available else "")
        )
    documents: list[Document] = []
    for where, obj in _jsonl(directory / "corpus.jsonl"):
        if "_id" not in obj:
            raise EvalDataError(f'{where}: no "_id"')
        doc = beir_document(obj)
        if doc.text.strip():
            documents.append(doc)
        else:
            logger.warning("skipping %s: empty document %r", where, doc.id)
    if not documents:
        raise EvalDataError(f"{directory / 'corpus.jsonl'} holds no documents")
    qrels = read_qrels(qrels_path)
    all_queries = {
        str(obj["_id"]): str(obj.get("text", "")) for _, obj in _jsonl(directory / "queries.jsonl")
    }
    missing = [q for q in qrels if q not in all_queries]
    if missing:
        logger.warning("%d judged queries have no text in queries.jsonl; skipped", len(missing))
    queries = {q: t for q, t in all_queries.items() if q in qrels and t.strip()}
    if not queries:
        raise EvalDataError(f"no query of {directory / 'queries.jsonl'} is judged in {qrels_path}")
    return BeirData(
        name=directory.resolve().name,
        documents=documents,
        queries=queries,
        qrels={q: qrels[q] for q in queries},
    )


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """A BEIR qrels TSV (`query-id corpus-id score`, with a header line)."""
    qrels: dict[str, dict[str, int]] = {}
    rows = list(csv.reader(_read_text(path).splitlines(), delimiter="\t"))
    for lineno, row in enumerate(rows, start=1):
        if not row or (lineno == 1 and not _is_int(row[-1])):
            continue  # the header
        if len(row) < 3 or not _is_int(row[2]):
            raise EvalDataError(f"{path} line {lineno}: expected query-id, corpus-id, score")
        qrels.setdefault(row[0], {})[row[1]] = int(row[2])
    return qrels


# SQuAD v1.1


@dataclass(frozen=True, slots=True)
class SquadQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # empty for an unanswerable question (SQuAD 2.0)
    doc_id: str  # the paragraph it was written on
    article: str = ""  # the article's title as in the file ("Super_Bowl_50")
    answerable: bool = True


@dataclass(frozen=True, slots=True)
class SquadData:
    name: str
    documents: list[Document]
    questions: list[SquadQuestion]


def squad_doc_id(article: int, paragraph: int) -> str:
    return f"squad-{article}-{paragraph}"


def load_squad(path: Path) -> SquadData:
    """Every paragraph of a SQuAD v1.1 or v2.0 file as a document (`squad-<article>-
    <paragraph>`, both counted from 1, titled with the article's title), and every question
    (v2.0's `is_impossible` ones unanswerable, with no answers)."""
    path = Path(path)
    try:
        data = json.loads(_read_text(path))
        articles = data["data"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise EvalDataError(f"{path} is not a SQuAD v1.1 or v2.0 JSON file ({exc})") from exc
    documents: list[Document] = []
    questions: list[SquadQuestion] = []
    for a, article in enumerate(articles, start=1):
        title = str(article.get("title", "")).replace("_", " ")
        for p, paragraph in enumerate(article.get("paragraphs", []), start=1):
            doc_id = squad_doc_id(a, p)
            documents.append(Document(id=doc_id, title=title, text=normalize(paragraph["context"])))
            for qa in paragraph.get("qas", []):
                impossible = bool(qa.get("is_impossible", False))
                answers = () if impossible else tuple(str(x["text"]) for x in qa.get("answers", []))
                questions.append(
                    SquadQuestion(
                        id=str(qa["id"]),
                        question=str(qa["question"]),
                        answers=answers,
                        doc_id=doc_id,
                        article=str(article.get("title", "")),
                        answerable=not impossible,
                    )
                )
    if not documents or not questions:
        raise EvalDataError(f"{path} holds no paragraphs or no questions")
    return SquadData(name=path.stem, documents=documents, questions=questions)


# results out


def write_trec_run(
    path: Path, run: Mapping[str, Sequence[tuple[str, float]]], *, tag: str = "rag"
) -> None:
    """A TREC run file: `qid Q0 docid rank score tag`, documents best first per query."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for qid, ranked in run.items():
            for rank, (doc_id, score) in enumerate(ranked, start=1):
                f.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")


def read_trec_run(path: Path) -> dict[str, dict[str, float]]:
    run: dict[str, dict[str, float]] = {}
    for line in _read_text(Path(path)).splitlines():
        qid, _, doc_id, _, score, _ = line.split()
        run.setdefault(qid, {})[doc_id] = float(score)
    return run


def write_jsonl(path: Path, rows: Iterable[Mapping]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_json(path: Path, value: object) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# helpers


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise EvalDataError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalDataError(f"cannot read {path}: {exc}") from exc


def _jsonl(path: Path) -> Iterable[tuple[str, dict]]:
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalDataError(f"{path} line {lineno}: invalid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise EvalDataError(f"{path} line {lineno}: expected a JSON object")
        yield f"{path} line {lineno}", obj


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
