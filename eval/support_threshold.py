"""Choose RAG_MIN_SUPPORT: support scores of real citations against swapped ones.

For each answerable question of the bundled set (default: the tune split) the engine
answers; then its citation is scored as given (`as_given`), against the gold answer string
as the claim when the quote contains it (`span_claim`: a short extracted answer), swapped
for a random chunk of another document (`random_swap`, the unsupported case) and swapped
for the best other retrieved passage that does not hold the cited sentence (`near_swap`:
a hard case, often on-topic). Prints the distributions and each threshold's rates.

    python eval/support_threshold.py [--split tune] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import statistics

from rag.config import PROJECT_ROOT, Settings
from rag.embed.embedding import Embedder
from rag.engine import Engine
from rag.evaluation.cache import prepare_index
from rag.evaluation.data import load_bundled
from rag.ingest.documents import load_corpus
from rag.models import Citation


def _summary(name: str, xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=20) if len(xs) > 1 else xs * 19
    return (
        f"{name:12s} n={len(xs):3d}  min {min(xs):.3f}  p5 {q[0]:.3f}  median "
        f"{statistics.median(xs):.3f}  p95 {q[-1]:.3f}  max {max(xs):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="tune")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = Settings(torch_threads=1)
    embedder = Embedder(threads=1)
    documents = load_corpus(settings.corpus_dir)
    prepared = prepare_index(settings, embedder, documents, name="bundled")
    engine = Engine.load(prepared.settings, embedder)
    chunks = [c for _, c in engine.index.store.iter_chunks()]
    rng = random.Random(args.seed)
    items = [
        it
        for it in load_bundled(PROJECT_ROOT / "eval" / "bundled.jsonl")
        if it.answerable and (args.split == "all" or it.split == args.split)
    ]
    scores: dict[str, list[float]] = {
        "as_given": [],
        "span_claim": [],
        "random_swap": [],
        "near_swap": [],
    }
    for item in items:
        r = engine.ask(item.question)
        if not r.answerable or not r.citations:
            continue
        cited = r.citations[0]
        answer = r.answer or ""

        def score(claim: str, quote: str, cited: Citation = cited) -> float:
            swapped = cited.model_copy(update={"quote": quote})
            return engine.check_support(claim, [swapped]).citations[0].support or 0.0

        scores["as_given"].append(score(answer, cited.quote))
        gold = next((g for g in item.answers if g.casefold() in cited.quote.casefold()), None)
        if gold:
            scores["span_claim"].append(score(gold, cited.quote))
        other = rng.choice([c for c in chunks if c.doc_id != cited.doc_id])
        scores["random_swap"].append(score(answer, other.text))
        near = next((p for p in r.passages if cited.quote not in p.text), None)
        if near is not None:
            scores["near_swap"].append(score(answer, near.text))
    for name, xs in scores.items():
        print(_summary(name, xs))
    print("\nthreshold  as_given  span_claim  (flagged)  random_swap  near_swap  (caught)")
    for t in sorted({x / 20 for x in range(4, 17)} | {Settings().min_support}):
        rates = [sum(s < t for s in xs) / len(xs) for xs in scores.values()]
        print(f"{t:9.2f}  " + "  ".join(f"{r:9.3f}" for r in rates))


if __name__ == "__main__":
    main()
