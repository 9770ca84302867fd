"""Choose RAG_MIN_ANSWERABLE: the reader's answerability against dev data, at every threshold.

Every question is answered with the threshold at 0 (so each gets the reader's best span and
its answerability); then each threshold t is scored as if the service had abstained under t:
- SQuAD 2.0 dev part A, open over its articles' paragraphs: official F1 (abstention right on
  unanswerable questions), HasAns F1, NoAns accuracy;
- the bundled set's tune split (calibration) and report split (held out): answer accuracy
  (answered and containing a gold answer, over answerable questions), and abstention
  precision and recall (abstaining is the positive: it should happen on unanswerable ones).

    python eval/reader_threshold.py [--reader FILE] [--windows N]

Prints the table and the threshold that maximises the mean of SQuAD 2.0 F1 and the tune
split's abstention F-score and answer accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from rag import metrics as m
from rag.config import PROJECT_ROOT, Settings
from rag.embed.embedding import Embedder
from rag.engine import Engine
from rag.evaluation.cache import prepare_index
from rag.evaluation.data import load_bundled
from rag.evaluation.runner import evaluate_squad
from rag.ingest.documents import load_corpus

SQUAD2_DEV = Path("/work/shared/data/squad2/dev-v2.0-part-a.json")
THRESHOLDS = [round(x, 2) for x in np.arange(0.1, 0.91, 0.1)] + [0.95, 0.97, 0.98, 0.99, 0.995]
# a type-check abstention (confidence set to 0) stays one at every threshold over 0


def squad_rows(
    settings: Settings, embedder: Embedder, path: Path
) -> list[tuple[float, bool, float]]:
    """(answerability, gold answerable, F1 of the span) per question; the answerability of
    a question the service abstains on whatever the threshold (the type check) is 0."""
    _, outputs = evaluate_squad(settings, embedder, path, modes=[settings.retrieval_mode])
    return [
        (
            p.confidence if p.answer else 0.0,
            p.gold_answerable,
            m.token_f1(p.answer or "", p.gold_answers),
        )
        for p in outputs[settings.retrieval_mode]
    ]


def bundled_rows(
    settings: Settings, embedder: Embedder
) -> dict[str, list[tuple[float, bool, bool]]]:
    """Per split: (answerability, gold answerable, answer contains a gold answer)."""
    documents = load_corpus(settings.corpus_dir)
    prepared = prepare_index(settings, embedder, documents, name="bundled")
    engine = Engine.load(prepared.settings, embedder)
    out: dict[str, list[tuple[float, bool, bool]]] = {"tune": [], "report": []}
    for item in load_bundled(PROJECT_ROOT / "eval" / "bundled.jsonl"):
        r = engine.ask(item.question)
        correct = bool(r.answer) and m.contains_gold(r.answer, item.answers)
        out[item.split].append((r.confidence if r.answer else 0.0, item.answerable, correct))
    return out


def squad_at(rows, t: float) -> tuple[float, float, float]:
    f1 = [(f if c >= t else 0.0) if has else float(c < t) for c, has, f in rows]
    has_f1 = [f if c >= t else 0.0 for c, has, f in rows if has]
    no = [float(c < t) for c, has, _ in rows if not has]
    return float(np.mean(f1)), float(np.mean(has_f1)), float(np.mean(no)) if no else float("nan")


def bundled_at(rows, t: float) -> tuple[float, float, float]:
    accuracy = np.mean([c >= t and ok for c, has, ok in rows if has])
    abstained = [(c < t, has) for c, has, _ in rows]
    tp = sum(a and not has for a, has in abstained)
    precision = tp / max(1, sum(a for a, _ in abstained))
    recall = tp / max(1, sum(not has for _, has in abstained))
    return float(accuracy), precision, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", type=Path, default=None)
    parser.add_argument("--windows", type=int, default=None)
    args = parser.parse_args()
    updates = {"answer_mode": "reader", "min_answerable": 0.0}
    if args.reader:
        updates["reader_path"] = args.reader
    if args.windows:
        updates["reader_windows"] = args.windows
    settings = Settings().model_copy(update=updates)
    embedder = Embedder.from_settings(settings, queries=True)
    squad = squad_rows(settings, embedder, SQUAD2_DEV)
    bundled = bundled_rows(settings, embedder)
    print(
        f"{'t':>5} | {'SQuAD2 F1':>9} {'HasAns':>7} {'NoAns':>6} | {'tune acc':>8} {'P':>5} "
        f"{'R':>5} | {'report acc':>10} {'P':>5} {'R':>5}"
    )
    best, best_t = -1.0, None
    for t in THRESHOLDS:
        f1, has_f1, no = squad_at(squad, t)
        tune = bundled_at(bundled["tune"], t)
        report = bundled_at(bundled["report"], t)
        abst_f = 2 * tune[1] * tune[2] / max(1e-9, tune[1] + tune[2])
        objective = (f1 + abst_f + tune[0]) / 3
        if objective > best:
            best, best_t = objective, t
        print(
            f"{t:5} | {f1:9.3f} {has_f1:7.3f} {no:6.3f} | {tune[0]:8.3f} {tune[1]:5.2f} "
            f"{tune[2]:5.2f} | {report[0]:10.3f} {report[1]:5.2f} {report[2]:5.2f}"
        )
    print(f"\nchosen on SQuAD 2.0 dev and the tune split: RAG_MIN_ANSWERABLE={best_t}")


if __name__ == "__main__":
    main()
