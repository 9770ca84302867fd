"""`rag eval --generate`: generated answers beside the extractive ones, on the bundled set.

Each question is asked twice on the same engine: extractively (the default path) and with
the generator. Reported: the share of generated sentences that pass their check (the
verifier's view of the model), how often the generated answer is given (not a fallback),
answer accuracy of both paths (contains a gold answer; on the answerable questions, and on
those where a generated answer was given), abstention, and latency of both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from rag import metrics as m
from rag.answer.generator import GeneratorError
from rag.engine import Engine
from rag.evaluation.data import QAItem
from rag.evaluation.progress import track


@dataclass(frozen=True, slots=True)
class Pair:
    """One question, answered both ways."""

    id: str
    answerable: bool
    golds: tuple[str, ...]
    extractive: str | None
    extractive_ms: float
    generated: str | None  # the answer given with generate=True (None: abstained or failed)
    generated_ms: float
    status: str  # generated, fallback, skipped, or error:<code>
    sentences: int  # sentences the model wrote
    supported: int  # of those, supported


def ask_both(
    engine: Engine, items: Sequence[QAItem], *, k: int | None = None, progress: bool = False
) -> list[Pair]:
    pairs = []
    for item in track(list(items), "ask (extractive, generated)", bar=progress):
        t = time.perf_counter()
        plain = engine.ask(item.question, k=k)
        plain_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        try:
            r = engine.ask(item.question, k=k, generate=True)
        except GeneratorError as exc:
            generated, status, written, supported = None, f"error:{exc.code}", 0, 0
        else:
            generation = r.generation
            generated = r.answer if r.answerable else None
            status = generation.status if generation else "skipped"
            sentences = generation.sentences if generation else []
            written, supported = len(sentences), sum(s.supported for s in sentences)
        pairs.append(
            Pair(
                id=item.id,
                answerable=item.answerable,
                golds=tuple(item.answers),
                extractive=plain.answer if plain.answerable else None,
                extractive_ms=round(plain_ms, 3),
                generated=generated,
                generated_ms=round((time.perf_counter() - t) * 1000, 3),
                status=status,
                sentences=written,
                supported=supported,
            )
        )
    return pairs


def score_pairs(pairs: Sequence[Pair]) -> dict[str, float | int | None]:
    """The figures of the module's docstring (pure)."""
    answerable = [p for p in pairs if p.answerable]
    generated = [p for p in answerable if p.status == "generated"]
    written = sum(p.sentences for p in pairs)

    def accuracy(ps: Sequence[Pair], which: str) -> float | None:
        return m.mean(float(m.contains_gold(getattr(p, which), p.golds)) for p in ps)

    unanswerable = [p for p in pairs if not p.answerable]
    asked = [p for p in pairs if p.status not in ("skipped",)]
    out: dict[str, float | int | None] = {
        "questions": len(pairs),
        "asked_generator": len(asked),
        "generated": sum(p.status == "generated" for p in pairs),
        "fallback": sum(p.status == "fallback" for p in pairs),
        "errors": sum(p.status.startswith("error") for p in pairs),
        "generated_sentences": written,
        "supported_sentence_share": (sum(p.supported for p in pairs) / written)
        if written
        else None,
        "answer_accuracy_extractive": accuracy(answerable, "extractive"),
        "answer_accuracy_generate": accuracy(answerable, "generated"),
        "generated_answer_accuracy": accuracy(generated, "generated"),
        "extractive_accuracy_same_questions": accuracy(generated, "extractive"),
        "abstention_recall_extractive": m.mean(float(p.extractive is None) for p in unanswerable),
        "abstention_recall_generate": m.mean(float(p.generated is None) for p in unanswerable),
    }
    for name, values in (
        ("extractive", [p.extractive_ms for p in pairs]),
        ("generate", [p.generated_ms for p in pairs]),
    ):
        out[f"latency_p50_ms_{name}"] = m.percentile(values, 50)
        out[f"latency_p95_ms_{name}"] = m.percentile(values, 95)
    return out


def render_scores(scores: dict, *, header: str) -> str:
    lines = [header]
    for key, value in scores.items():
        shown = "-" if value is None else f"{value:.3f}" if isinstance(value, float) else value
        lines.append(f"  {key:36s} {shown}")
    return "\n".join(lines)


def pairs_json(pairs: Sequence[Pair]) -> list[dict]:
    return [asdict(p) for p in pairs]
