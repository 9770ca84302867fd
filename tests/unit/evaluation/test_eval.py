"""`rag eval` end to end on tiny data sets the tests write: the bundled format (on the session's
real index of the bundled corpus), BEIR and SQuAD v1.1, with the real model and FAISS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rag import metrics as m
from rag.cli import main
from rag.engine import RETRIEVAL_MODES
from rag.evaluation.bundled import CitationCheck, Prediction, threshold_sweep
from rag.evaluation.data import EvalDataError, load_beir, load_bundled, read_trec_run
from rag.evaluation.report import EvalReport
from rag.evaluation.retrieval import rank_documents, retrieve_chunks
from tests.conftest import STORES

BUNDLED_LINES = [
    {
        "id": "q001",
        "question": "What minerals does the Chirchik center target?",
        "answers": ["molybdenum and tungsten"],
        "doc_ids": ["001_747dad745748a0c8"],
        "answerable": True,
        "type": "direct",
        "split": "tune",
    },
    {
        "id": "q003",
        "question": "Who is South Korea's foreign minister who spoke at the South Korea-Central "
        "Asia forum?",
        "answers": ["Cho Tae-yul"],
        "doc_ids": ["002_5b0ba33d9b196134"],
        "answerable": True,
        "type": "direct",
        "split": "tune",
    },
    {
        "id": "q004",
        "question": "Who did President Yoon meet during his visit to Kazakhstan?",
        "answers": ["Kassym-Jomart Tokayev", "Tokayev"],
        "doc_ids": ["003_fbb2cdbfd2149aa7"],
        "answerable": True,
        "type": "direct",
        "split": "report",
    },
    {
        "id": "q008",
        "question": "Which mineral's exploration and commercialization were covered by the MOUs "
        "Yoon signed in Kazakhstan?",
        "answers": ["lithium"],
        "doc_ids": ["003_fbb2cdbfd2149aa7"],
        "answerable": True,
        "type": "direct",
        "split": "tune",
    },
    {
        "id": "q009",
        "question": "Who wrote the Trend report on Uzbekistan and South Korea developing a "
        "regional high-tech cluster?",
        "answers": ["Kamol Ismailov"],
        "doc_ids": ["004_a42af59a74583b78"],
        "answerable": True,
        "type": "direct",
        "split": "report",
    },
    {
        "id": "x01",
        "question": "What is a good recipe for chocolate chip cookies?",
        "answers": [],
        "doc_ids": [],
        "answerable": False,
        "type": "unanswerable",
        "split": "report",
    },
    {
        "id": "x02",
        "question": "Who won the 1998 football World Cup final?",
        "answers": [],
        "doc_ids": [],
        "answerable": False,
        "type": "unanswerable",
        "split": "tune",
    },
]


@pytest.fixture(scope="module")
def bundled_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("evalset") / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in BUNDLED_LINES) + "\n", encoding="utf-8")
    return path


def rag_eval(embedder, *args: str | Path) -> tuple[int, str, str]:
    """Run `rag eval ARGS` in-process with the session's model."""
    result = CliRunner().invoke(
        main, ["eval", *map(str, args)], obj={"embedder": embedder}, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module", params=STORES)
def bundled_run(request, embedder, bundled_file, tmp_path_factory):
    """One --json run of the tiny bundled-format file, with its saved predictions, on the
    bundled index in each vector store (FAISS, Milvus)."""
    settings = request.getfixturevalue(
        "bundled_settings" if request.param == "faiss" else "milvus_settings"
    )
    out = tmp_path_factory.mktemp("bundled-out")
    code, stdout, stderr = rag_eval(
        embedder,
        bundled_file,
        "--index",
        settings.index_path,
        "--json",
        "--sweep-threshold",
        "--save-predictions",
        out / "pred.jsonl",
    )
    assert code == 0, stderr
    report = EvalReport.model_validate_json(stdout)
    lines = (out / "pred.jsonl").read_text(encoding="utf-8").splitlines()
    predictions = [Prediction.from_json(json.loads(line)) for line in lines]
    return report, predictions


# bundled format


def test_bundled_report_matches_what_the_predictions_say(bundled_run, engine):
    report, predictions = bundled_run
    assert report.kind == "bundled" and report.n_questions == len(BUNDLED_LINES)
    assert [p.id for p in predictions] == [x["id"] for x in BUNDLED_LINES]
    (run,) = report.runs
    assert set(run.metrics) == {"all", "tune", "report"}
    got = run.metrics["all"]

    answerable = [p for p in predictions if p.gold_answerable]
    unanswerable = [p for p in predictions if not p.gold_answerable]
    first_gold = [
        next((i for i, d in enumerate(p.retrieved_doc_ids, 1) if d in p.gold_doc_ids), None)
        for p in answerable
    ]
    assert got["questions"] == 7 and got["answerable"] == 5 and got["unanswerable"] == 2
    for k in (1, 3, 5):
        expected = sum(1 for r in first_gold if r is not None and r <= k) / len(answerable)
        assert got[f"hit@{k}"] == pytest.approx(expected)
    assert got["mrr@10"] == pytest.approx(sum(1 / r for r in first_gold if r) / len(answerable))
    # One gold document per question: nDCG@10 is 1 / log2(1 + rank of it).
    assert got["ndcg@10"] == pytest.approx(
        sum(1 / np.log2(1 + r) for r in first_gold if r) / len(answerable)
    )
    correct = [
        p.answered and any(g.lower() in " ".join(p.answer.lower().split()) for g in p.gold_answers)
        for p in answerable
    ]
    assert got["answer_accuracy"] == pytest.approx(sum(correct) / len(answerable))
    assert got["token_f1"] == pytest.approx(
        sum(m.token_f1(p.answer or "", p.gold_answers) for p in answerable) / len(answerable)
    )
    cited = [c.doc_id in p.gold_doc_ids for p in answerable if p.answered for c in p.citations]
    assert got["citation_precision"] == pytest.approx(sum(cited) / len(cited))
    abstained = [p for p in predictions if not p.answered]
    if abstained:
        assert got["abstention_precision"] == pytest.approx(
            sum(not p.gold_answerable for p in abstained) / len(abstained)
        )
    else:
        assert got["abstention_precision"] is None
    assert got["abstention_recall"] == pytest.approx(
        sum(not p.answered for p in unanswerable) / len(unanswerable)
    )
    latencies = [p.latency_ms for p in predictions]
    assert got["latency_p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert got["latency_p95_ms"] == pytest.approx(np.percentile(latencies, 95))

    # The per-split groups hold exactly that split's questions.
    assert run.metrics["tune"]["questions"] == 4 and run.metrics["report"]["questions"] == 3


def test_bundled_citations_are_checked_against_the_documents(bundled_run, engine):
    report, predictions = bundled_run
    citations = [c for p in predictions for c in p.citations]
    assert citations, "the answerable questions should be answered with citations"
    for c in citations:
        assert c.valid == (engine.document(c.doc_id).text[c.start : c.end] == c.quote)
    assert report.runs[0].metrics["all"]["citation_validity"] == pytest.approx(
        sum(c.valid for c in citations) / len(citations)
    )


def test_chirchik_question_is_answered_and_retrieved(bundled_run):
    _, predictions = bundled_run
    q001 = next(p for p in predictions if p.id == "q001")
    assert q001.retrieved_doc_ids[0] == "001_747dad745748a0c8"
    assert q001.answered and m.contains_gold(q001.answer, q001.gold_answers)


def test_sweep_at_the_current_threshold_reproduces_the_run(bundled_run):
    report, predictions = bundled_run
    run = report.runs[0]
    assert run.sweep and [r.threshold for r in run.sweep] == sorted(r.threshold for r in run.sweep)
    current = next(r for r in run.sweep if r.threshold == pytest.approx(report.min_score))
    assert current.answered == sum(p.answered for p in predictions)
    assert current.answer_accuracy == pytest.approx(run.metrics["all"]["answer_accuracy"])
    assert current.abstention_recall == pytest.approx(run.metrics["all"]["abstention_recall"])
    # The lowest threshold answers every question; every abstention has its would-be answer.
    assert run.sweep[0].answered == len(predictions)
    assert all(p.forced_answer for p in predictions)


def test_threshold_sweep_by_hand():
    def pred(answerable, confidence, answer):
        return Prediction(
            id="x",
            question="?",
            split="tune",
            type="t",
            gold_answerable=answerable,
            gold_answers=["gold"] if answerable else [],
            gold_doc_ids=["d"] if answerable else [],
            answered=True,
            answer=answer,
            confidence=confidence,
            retrieved_doc_ids=["d"],
            citations=[CitationCheck("d", "d:0", 0, 4, "gold", True)],
            forced_answer=answer,
        )

    predictions = [
        pred(True, 0.9, "the gold answer"),
        pred(True, 0.5, "wrong"),
        pred(False, 0.6, "something"),
        pred(False, 0.2, "something"),
    ]
    rows = {r.threshold: r for r in threshold_sweep(predictions, [0.0, 0.3, 0.7])}
    assert rows[0.0].answered == 4 and rows[0.0].abstention_precision is None
    assert rows[0.0].answer_accuracy == 0.5 and rows[0.0].overall_accuracy == 0.25
    # 0.3: abstains on the 0.2 unanswerable question only.
    assert rows[0.3].abstention_precision == 1.0 and rows[0.3].abstention_recall == 0.5
    assert rows[0.3].overall_accuracy == 0.5
    # 0.7: answers only the 0.9 question (right); abstains on 1 answerable + 2 unanswerable.
    r = rows[0.7]
    assert r.answered == 1 and r.answer_accuracy == 0.5
    assert r.abstention_precision == pytest.approx(2 / 3) and r.abstention_recall == 1.0
    assert r.abstention_f1 == pytest.approx(0.8) and r.overall_accuracy == 0.75


def test_split_option_runs_only_that_split(embedder, bundled_settings, bundled_file):
    code, stdout, _ = rag_eval(
        embedder, bundled_file, "--index", bundled_settings.index_path, "--split", "report"
    )
    assert code == 0
    assert "split report, 3 questions" in stdout
    assert "hit@5" in stdout and "answer_accuracy" in stdout


def test_min_gate_sets_the_exit_code(embedder, bundled_settings, bundled_file):
    base = [bundled_file, "--index", bundled_settings.index_path, "--split", "report"]
    code, _, stderr = rag_eval(embedder, *base, "--min", "hit@5=1.01")
    assert code == 1 and "FAIL: hit@5" in stderr
    code, _, stderr = rag_eval(embedder, *base, "--min", "hit@5=0", "--min", "questions=3")
    assert code == 0, stderr
    code, _, stderr = rag_eval(embedder, *base, "--max", "latency_p50_ms=0.000001")
    assert code == 1 and "latency_p50_ms" in stderr
    code, _, stderr = rag_eval(embedder, *base, "--min", "no_such_metric=1")
    assert code == 2 and "unknown metric" in stderr


def test_verbose_lists_misses(embedder, bundled_settings, bundled_file):
    code, stdout, _ = rag_eval(
        embedder, bundled_file, "--index", bundled_settings.index_path, "--json", "--verbose"
    )
    assert code == 0
    misses = EvalReport.model_validate_json(stdout).runs[0].misses
    # q009 asks for the byline, which the cleaner drops: a miss whatever else changes
    assert misses and "q009" in {x.id for x in misses}
    assert all(x.reasons for x in misses)


def test_without_index_a_cached_index_is_built_then_reused(embedder, bundled_file, tmp_path):
    args = [bundled_file, "--cache-dir", tmp_path, "--json", "--split", "report"]
    code, stdout, stderr = rag_eval(embedder, *args)
    assert code == 0, stderr
    first = EvalReport.model_validate_json(stdout)
    assert first.index_built and Path(first.index_path).parent == tmp_path
    assert Path(first.index_path).name.startswith("bundled-")
    code, stdout, _ = rag_eval(embedder, *args)
    second = EvalReport.model_validate_json(stdout)
    assert not second.index_built and second.index_path == first.index_path
    # Other chunk settings: another index.
    code, stdout, _ = rag_eval(embedder, *args, "--chunk-tokens", "64")
    third = EvalReport.model_validate_json(stdout)
    assert third.index_built and third.index_path != first.index_path
    assert third.chunking["max_tokens"] == 64


def test_bundled_loader_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(BUNDLED_LINES[0])
    path.write_text(good + "\n{not json\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match="line 2"):
        load_bundled(path)
    path.write_text(json.dumps({**BUNDLED_LINES[0], "split": "dev"}) + "\n", encoding="utf-8")
    with pytest.raises(EvalDataError, match="split"):
        load_bundled(path)


def test_unknown_mode_is_refused(embedder, bundled_settings, bundled_file):
    code, _, stderr = rag_eval(embedder, bundled_file, "--mode", "telepathy")
    assert code == 2 and "telepathy" in stderr


# BEIR

BEIR_DOCS = {
    "d1": ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into glucose."),
    "d2": ("Chlorophyll", "Chlorophyll absorbs red and blue light in the leaves of plants."),
    "d3": ("Volcanoes", "Magma rises through the crust and erupts as lava from volcanoes."),
    "d4": ("Plate tectonics", "Earthquakes happen where tectonic plates slide past each other."),
    "d5": ("Insulin", "The pancreas releases insulin to lower the level of sugar in the blood."),
    "d6": ("Diabetes", "In type 1 diabetes the immune system destroys insulin-producing cells."),
    "d7": ("Black holes", "A black hole's gravity is so strong that not even light escapes."),
    "d8": ("Neutron stars", "Neutron stars are collapsed cores of massive stars."),
    "d9": ("Bread", "Yeast ferments sugar and the carbon dioxide makes bread dough rise."),
    "d10": ("Cheese", "Advertisement\nCheese is made by curdling milk with rennet."),
}
BEIR_QUERIES = {
    "q1": "How do plants make sugar from light?",
    "q2": "What causes earthquakes?",
    "q3": "Which hormone controls blood sugar?",
    "q4": "Can light escape a black hole?",
}
BEIR_QRELS = [
    ("q1", "d1", 2),
    ("q1", "d2", 1),
    ("q2", "d4", 2),
    ("q2", "d3", 1),
    ("q3", "d5", 2),
    ("q3", "d6", 1),
    ("q4", "d7", 1),
]


@pytest.fixture(scope="module")
def beir_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("beir") / "tiny"
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc_id, (title, text) in BEIR_DOCS.items():
            f.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in {**BEIR_QUERIES, "q9": "not judged"}.items():
            f.write(json.dumps({"_id": qid, "text": text, "metadata": {}}) + "\n")
    lines = ["query-id\tcorpus-id\tscore", *(f"{q}\t{d}\t{s}" for q, d, s in BEIR_QRELS)]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_beir_loader_keeps_the_text_as_is(beir_dir):
    data = load_beir(beir_dir, "test")
    assert set(data.queries) == set(BEIR_QUERIES)  # q9 is not judged
    assert data.qrels["q1"] == {"d1": 2, "d2": 1}
    cheese = next(d for d in data.documents if d.id == "d10")
    # Title, blank line, text; the news cleaner (which drops "Advertisement") is not run.
    assert cheese.title == "Cheese"
    assert cheese.text == "Cheese\n\nAdvertisement\nCheese is made by curdling milk with rennet."
    with pytest.raises(EvalDataError, match="splits available: test"):
        load_beir(beir_dir, "train")


def test_beir_run_agrees_with_ir_measures_and_writes_a_trec_run(embedder, beir_dir, tmp_path):
    import ir_measures
    from ir_measures import RR, R, nDCG

    run_file = tmp_path / "tiny.run"
    code, stdout, stderr = rag_eval(
        embedder,
        "--beir", beir_dir, "--mode", "dense", "--cache-dir", tmp_path / "cache",
        "--save-run", run_file, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    report = EvalReport.model_validate_json(stdout)
    assert report.kind == "beir" and report.n_questions == 4 and report.n_documents == 10
    got = report.runs[0].metrics["test"]

    # The run file: qid Q0 docid rank score tag, ranks 1.. in order, scores not increasing.
    rows = [line.split() for line in run_file.read_text(encoding="utf-8").splitlines()]
    assert all(len(r) == 6 and r[1] == "Q0" and r[5] == "rag-dense" for r in rows)
    by_query: dict[str, list[list[str]]] = {}
    for r in rows:
        by_query.setdefault(r[0], []).append(r)
    assert set(by_query) == set(BEIR_QUERIES)
    for ranked in by_query.values():
        assert [int(r[3]) for r in ranked] == list(range(1, len(ranked) + 1))
        scores = [float(r[4]) for r in ranked]
        assert scores == sorted(scores, reverse=True)
        # Enough chunks were retrieved to rank every document of this tiny corpus once.
        assert sorted(r[2] for r in ranked) == sorted(BEIR_DOCS)

    qrels = {}
    for q, d, s in BEIR_QRELS:
        qrels.setdefault(q, {})[d] = s
    theirs = ir_measures.calc_aggregate(
        [nDCG @ 10, R @ 100, RR @ 10], qrels, read_trec_run(run_file)
    )
    assert got["ndcg@10"] == pytest.approx(theirs[nDCG @ 10], abs=1e-6)
    assert got["recall@100"] == pytest.approx(theirs[R @ 100], abs=1e-6)
    assert got["mrr@10"] == pytest.approx(theirs[RR @ 10], abs=1e-6)
    # ...and with our own nDCG over the same ranking.
    ours = np.mean([m.ndcg_at_k([r[2] for r in by_query[q]], qrels[q], 10) for q in qrels])
    assert got["ndcg@10"] == pytest.approx(ours, abs=1e-6)
    assert got["recall@100"] == 1.0  # every document is in every query's run
    assert got["ndcg@10"] > 0.8  # these queries are easy


def test_compare_runs_every_mode_and_plots(embedder, beir_dir, tmp_path):
    plot = tmp_path / "recall.png"
    code, stdout, stderr = rag_eval(
        embedder,
        "--beir", beir_dir, "--compare", "--cache-dir", tmp_path / "cache",
        "--save-run", tmp_path / "tiny.run", "--plot", plot,
    )  # fmt: skip
    assert code == 0, stderr
    assert len(RETRIEVAL_MODES) > 1
    for mode in RETRIEVAL_MODES:
        assert mode in stdout.splitlines()[4]  # the modes' header line, side by side
        assert (tmp_path / f"tiny.{mode}.run").is_file()
    assert "ndcg@10" in stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("mode", RETRIEVAL_MODES)
def test_batched_retrieval_matches_the_engine_one_question_at_a_time(any_engine, mode):
    questions = [x["question"] for x in BUNDLED_LINES]
    batched = retrieve_chunks(any_engine, questions, 8, mode=mode)
    for question, hits in zip(questions, batched, strict=True):
        one = any_engine.retrieve(question, 8, mode=mode)
        assert [h.chunk_id for h in hits] == [p.chunk_id for p in one]
        assert [h.score for h in hits] == pytest.approx([p.score for p in one], abs=1e-5)


def test_rank_documents_scores_each_by_its_best_chunk():
    hits = [("a", 0.5), ("b", 0.9), ("a", 0.95), ("c", 0.1), ("b", 0.2)]
    assert rank_documents(hits) == [("a", 0.95), ("b", 0.9), ("c", 0.1)]


# SQuAD

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Super_Bowl_50",
            "paragraphs": [
                {
                    "context": "Super Bowl 50 was an American football game. The Denver "
                    "Broncos defeated the Carolina Panthers 24 to 10 to earn their third title.",
                    "qas": [
                        {
                            "id": "s1",
                            "question": "Which team won Super Bowl 50?",
                            "answers": [
                                {"answer_start": 50, "text": "Denver Broncos"},
                                {"answer_start": 54, "text": "The Denver Broncos"},
                            ],
                        },
                        {
                            "id": "s2",
                            "question": "What was the final score of Super Bowl 50?",
                            "answers": [{"answer_start": 0, "text": "24 to 10"}],
                        },
                    ],
                },
                {
                    "context": "The game was played at Levi's Stadium in Santa Clara, "
                    "California, on February 7, 2016.",
                    "qas": [
                        {
                            "id": "s3",
                            "question": "Where was Super Bowl 50 played?",
                            "answers": [{"answer_start": 0, "text": "Levi's Stadium"}],
                        }
                    ],
                },
            ],
        },
        {
            "title": "Oxygen",
            "paragraphs": [
                {
                    "context": "Oxygen is a chemical element with symbol O and atomic number 8. "
                    "It is a highly reactive nonmetal and oxidizing agent.",
                    "qas": [
                        {
                            "id": "o1",
                            "question": "What is the atomic number of oxygen?",
                            "answers": [{"answer_start": 0, "text": "8"}],
                        }
                    ],
                },
                {
                    "context": "Joseph Priestley and Carl Wilhelm Scheele independently "
                    "discovered oxygen in the 1770s.",
                    "qas": [
                        {
                            "id": "o2",
                            "question": "Who discovered oxygen?",
                            "answers": [{"answer_start": 0, "text": "Joseph Priestley"}],
                        }
                    ],
                },
            ],
        },
    ],
}


def test_squad_runner_scores_with_the_official_normalisation(embedder, tmp_path):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    predictions_file = tmp_path / "predictions.json"
    code, stdout, stderr = rag_eval(
        embedder,
        "--squad", path, "--cache-dir", tmp_path / "cache",
        "--save-predictions", predictions_file, "--json",
    )  # fmt: skip
    assert code == 0, stderr
    report = EvalReport.model_validate_json(stdout)
    assert report.kind == "squad" and report.n_documents == 4 and report.n_questions == 5
    got = report.runs[0].metrics["all"]

    predictions = json.loads(predictions_file.read_text(encoding="utf-8"))
    golds = {
        qa["id"]: [a["text"] for a in qa["answers"]]
        for article in SQUAD["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }
    assert set(predictions) == set(golds)
    assert all(isinstance(v, str) for v in predictions.values())
    n = len(golds)
    assert got["exact_match"] == pytest.approx(
        sum(m.exact_match(predictions[q], g) for q, g in golds.items()) / n
    )
    assert got["f1"] == pytest.approx(
        sum(m.token_f1(predictions[q], g) for q, g in golds.items()) / n
    )
    assert got["answer_contains"] == pytest.approx(
        sum(m.contains_gold(predictions[q], g) for q, g in golds.items()) / n
    )
    assert got["hit@10"] == 1.0  # four paragraphs: the gold one is always in the top 10
    assert got["hit@1"] >= 0.6


def test_squad_limit_asks_only_the_first_questions(embedder, tmp_path):
    path = tmp_path / "tiny-squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    code, stdout, stderr = rag_eval(
        embedder, "--squad", path, "--cache-dir", tmp_path / "cache", "--limit", "2", "--json"
    )
    assert code == 0, stderr
    report = EvalReport.model_validate_json(stdout)
    assert report.n_questions == 2 and report.n_documents == 4
    assert report.runs[0].metrics["all"]["questions"] == 2


def test_options_for_another_format_are_refused(embedder, tmp_path, bundled_file):
    code, _, stderr = rag_eval(embedder, bundled_file, "--save-run", tmp_path / "x.run")
    assert code == 2 and "--save-run" in stderr
    code, _, stderr = rag_eval(embedder, "--squad", bundled_file, "--sweep-threshold")
    assert code == 2 and "--sweep-threshold" in stderr
