"""The generation stage of `Engine.ask(generate=True)`: prompt, generator, check, answer.

It starts from the extractive response (already computed, and the fallback): when that
abstains, the generator is not asked (the reader's answerability stays the abstention
decision). Otherwise the generator writes from numbered sentences of the best passages
(`prompt.py`), each generated sentence is checked against the sentences it cites
(`generate.py`, with the reader as the signal), and the answer is the supported sentences
with their citations. No supported sentence, or `NO_ANSWER`: the extractive answer, with
`generation.status == "fallback"` saying why. A generator failure raises, carrying the
extractive response for the edges to offer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from rag.answer import generate as g
from rag.answer.generator import Completion, Generator, GeneratorError
from rag.answer.prompt import PROMPT_VERSION, Prompt, build_prompt
from rag.answer.reader import Reader
from rag.answer.verify import support_score, term_recall
from rag.models import AskResponse, Generation

logger = logging.getLogger(__name__)

Embed = Callable[[Sequence[str]], np.ndarray]


def prompt_for(settings, response: AskResponse) -> Prompt:
    return build_prompt(
        response.question,
        response.passages[: settings.generator_passages],
        context_tokens=settings.generator_context_tokens,
        max_tokens=settings.generator_max_tokens,
        encoding=settings.tokenizer,
    )


def skipped(settings, response: AskResponse) -> AskResponse | None:
    """The extractive abstention, said to be why the generator was not asked; None when the
    extractive stage answered."""
    if response.answerable:
        return None
    generation = Generation(
        status="skipped",
        reason=f"the extractive stage abstained ({response.reason or 'weak evidence'}): "
        "the generator was not asked",
        prompt_version=PROMPT_VERSION,
        numbered_sentences=0,
        unsupported=settings.generator_unsupported,
    )
    return response.model_copy(update={"generation": generation})


def generate_answer(
    settings,
    generator: Generator,
    response: AskResponse,
    *,
    reader: Reader | None,
    embed: Embed,
    weight: Callable[[str], float] | None,
    started: float,
) -> AskResponse:
    """`response` (extractive) with the generator's checked answer in its place."""
    done = skipped(settings, response)
    if done is not None:
        return done
    prompt = prompt_for(settings, response)
    t = time.perf_counter()
    try:
        completion = generator.complete(prompt.messages)
    except GeneratorError as exc:
        logger.warning("generation failed (%s): %s", exc.code, exc.message)
        exc.extractive = _timed(response, generate=t, started=started)
        raise
    timings = {"generate": t}
    return finish(
        settings,
        response,
        prompt,
        completion,
        reader=reader,
        embed=embed,
        weight=weight,
        timings=timings,
        started=started,
    )


def finish(
    settings,
    response: AskResponse,
    prompt: Prompt,
    completion: Completion,
    *,
    reader: Reader | None,
    embed: Embed,
    weight: Callable[[str], float] | None,
    timings: dict[str, float],
    started: float,
) -> AskResponse:
    """Check the generator's text and make the response (shared with streaming)."""
    t_verify = time.perf_counter()
    sources = {s.number: s for s in prompt.sources}
    base = dict(
        model=completion.model or settings.generator_model,
        prompt_version=prompt.version,
        text=completion.text,
        numbered_sentences=len(prompt.sources),
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        unsupported=settings.generator_unsupported,
    )
    marks = dict(timings)
    marks["verify"] = t_verify
    if g.is_no_answer(completion.text):
        generation = Generation(
            status="fallback",
            reason="the generator said the passages do not answer: the extractive answer is given",
            **base,
        )
        return _timed(
            response.model_copy(update={"generation": generation}), **marks, started=started
        )
    claims = g.parse_answer(completion.text)
    judged = g.judge_claims(
        claims,
        sources,
        overlap=lambda claim, evidence: term_recall(claim, evidence, weight),
        signal=_signal(response.question, reader, embed, weight),
        min_overlap=settings.generator_min_overlap,
        min_signal=settings.generator_min_support if reader is not None else settings.min_support,
        signal_name=(
            "the reader's probability that they answer the question"
            if reader is not None
            else "the citation support score (rag.answer.verify)"
        ),
    )
    composed = g.compose(judged, sources, unsupported=settings.generator_unsupported)
    if composed.answer is None:
        why = (
            "the generator wrote no sentence"
            if not claims
            else f"none of the {len(claims)} generated sentence(s) is supported by the "
            "sentences it cites"
        )
        generation = Generation(
            status="fallback",
            reason=f"{why}: the extractive answer is given",
            sentences=composed.sentences,
            **base,
        )
        return _timed(
            response.model_copy(update={"generation": generation}), **marks, started=started
        )
    generation = Generation(status="generated", sentences=composed.sentences, **base)
    answered = response.model_copy(
        update={
            "answer": composed.answer,
            "short_answer": None,
            "citations": composed.citations,
            "support": composed.support,
            "answer_mode": "generator",
            "generation": generation,
        }
    )
    return _timed(answered, **marks, started=started)


def _signal(
    question: str,
    reader: Reader | None,
    embed: Embed,
    weight: Callable[[str], float] | None,
) -> g.Signal:
    """The support signal: the reader's answerability of the question on each claim's cited
    sentences, in one batch; without a reader, the citation check of rag.answer.verify (embedding
    cosine and term recall of claim and cited sentences)."""
    if reader is not None:

        def read(pairs: Sequence[tuple[str, str]]) -> list[float]:
            return list(
                reader.read(question, [evidence for _, evidence in pairs]).context_answerable
            )

        return read

    def check(pairs: Sequence[tuple[str, str]]) -> list[float]:
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))
        vectors = dict(zip(texts, np.asarray(embed(texts), dtype=np.float32), strict=True))
        return [support_score(c, e, float(vectors[c] @ vectors[e]), weight) for c, e in pairs]

    return check


def _timed(response: AskResponse, *, started: float, **marks: float) -> AskResponse:
    """`response` with the stages that began at `marks` (perf_counter values, in order)
    timed: each runs until the next begins, the last until now; `total` from `started`."""
    now = time.perf_counter()
    timings = dict(response.timings_ms)
    points = sorted(marks.items(), key=lambda kv: kv[1])
    for (name, t), nxt in zip(points, [*(t for _, t in points[1:]), now], strict=True):
        timings[name] = round((nxt - t) * 1000, 3)
    timings["total"] = round((now - started) * 1000, 3)
    return response.model_copy(update={"timings_ms": timings})
