"""The eval runner's additions: chunk-boundary report, --save-report/--diff, citation
support rate, and --url against a real `rag serve`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from index import Document
from rag.cli import main
from rag.config import PROJECT_ROOT, Settings
from rag.engine import Engine
from rag.evaluation import bundled
from rag.evaluation.boundary import GoldItem, answer_spans, boundary_row, parse_chunk_sizes
from rag.evaluation.data import load_bundled
from rag.evaluation.diff import load_report
from rag.evaluation.report import EvalReport
from rag.evaluation.runner import boundary_rows
from rag.text.chunking import chunk_text
from tests.servers import start_api, wait_until

SENTENCES = [
    "The Aral basin project opened a new pumping station near the old harbour.",
    "Engineers from three countries inspected the canals during the dry season.",
    "The final budget of the programme reached forty two million dollars.",
    "Local farmers expect the water supply to stabilise by the next harvest.",
]
TEXT = " ".join(SENTENCES)


def rag_eval(embedder, *args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["eval", *map(str, args)], obj={"embedder": embedder}, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def test_answer_spans_ignore_case_and_white_space():
    assert answer_spans("Forty  two\nmillion dollars", "forty two million") == [(0, 18)]
    assert answer_spans("nothing here", "forty") == []


def test_constructed_answer_straddling_two_chunks_is_counted(embedder, tmp_path):
    chunks = chunk_text("aral", TEXT, max_tokens=20, overlap=0)
    assert len(chunks) >= 2
    first, second = chunks[0], chunks[1]
    across = TEXT[first.end - 12 : second.start + 14]  # the end of one chunk, the start of the next
    inside = TEXT[first.start + 4 : first.start + 30]
    items = [
        GoldItem("across", (across,), ("aral",)),
        GoldItem("inside", (inside,), ("aral",)),
        GoldItem("absent", ("not in the text",), ("aral",)),
    ]
    spans = {"aral": [(c.start, c.end) for c in chunks]}
    row = boundary_row(items, {"aral": TEXT}, spans, chunking="20/0", source="rechunked")
    assert (row.answer_in_document, row.in_one_chunk, row.across_boundary) == (2, 1, 1)
    assert row.across_ids == ["across"]
    # the same through a real index built with that chunk setting, and re-chunked larger
    from rag.indexing import build_index

    settings = Settings(index_path=tmp_path / "index", chunk_tokens=20, chunk_overlap=0)
    doc = Document(id="aral", text=TEXT, title="Aral")
    build_index(settings, embedder, [doc])
    engine = Engine.load(settings, embedder)
    rows = boundary_rows(engine, [doc], items, [(256, 0)])
    assert [(r.chunking, r.source, r.across_boundary) for r in rows] == [
        ("20/0", "index", 1),
        ("256/0", "rechunked", 0),
    ]


def test_parse_chunk_sizes():
    assert parse_chunk_sizes("64/16, 128/32,256") == [(64, 16), (128, 32), (256, 0)]
    with pytest.raises(ValueError):
        parse_chunk_sizes("big/small")


@pytest.fixture(scope="module")
def small_file(tmp_path_factory) -> Path:
    """Ten tune questions of the bundled set (answerable and not)."""
    lines = (PROJECT_ROOT / "eval" / "bundled.jsonl").read_text(encoding="utf-8").splitlines()
    tune = [line for line in lines if json.loads(line)["split"] == "tune"]
    path = tmp_path_factory.mktemp("small") / "small.jsonl"
    path.write_text("\n".join(tune[:8] + tune[-2:]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def saved(embedder, bundled_settings, small_file, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reports") / "A.json"
    code, stdout, stderr = rag_eval(
        embedder,
        small_file,
        "--index",
        bundled_settings.index_path,
        "--chunk-sizes",
        "64/16,256/64",
        "--save-report",
        path,
    )
    assert code == 0, stderr
    assert "citation_support" in stdout and "Chunk boundaries" in stdout
    return path


def test_saved_report_has_support_boundary_and_outcomes(saved):
    data = load_report(saved)
    metrics = data.report.runs[0].metrics["all"]
    # the reader's answerability of each cited passage: high for nearly all answers given
    assert 0.8 <= metrics["citation_support"] <= 1.0
    assert [r.chunking for r in data.report.boundary] == ["128/32", "64/16", "256/64"]
    assert data.report.boundary[0].across_boundary == 0
    outcomes = data.questions[data.report.runs[0].mode]
    assert len(outcomes) == 10 and any(o.correct for o in outcomes)


def test_diff_of_a_run_with_itself_reports_no_change(embedder, saved):
    code, stdout, _ = rag_eval(embedder, "--diff", saved, saved)
    assert code == 0 and "no change" in stdout
    code, stdout, _ = rag_eval(embedder, "--diff", saved, saved, "--json")
    diff = json.loads(stdout)
    assert diff["better"] == [] and diff["worse"] == []
    assert diff["metrics"] and all(d["delta"] in (0, None) for d in diff["metrics"])


def test_diff_lists_questions_that_changed(embedder, saved, tmp_path):
    data = json.loads(saved.read_text(encoding="utf-8"))
    mode = data["report"]["runs"][0]["mode"]
    flipped = next(o for o in data["questions"][mode] if o["correct"])
    flipped["correct"] = False
    data["report"]["runs"][0]["metrics"]["all"]["answer_accuracy"] -= 0.1
    worse = tmp_path / "B.json"
    worse.write_text(json.dumps(data), encoding="utf-8")
    code, stdout, _ = rag_eval(embedder, "--diff", saved, worse)
    assert code == 0
    assert "worse in B: 1" in stdout and flipped["id"] in stdout
    assert "better in B: 0" in stdout and "-0.100" in stdout


def test_diff_refuses_a_file_that_is_not_a_report(embedder, saved, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "bundled"}', encoding="utf-8")
    code, _, stderr = rag_eval(embedder, "--diff", saved, bad)
    assert code == 1 and "not a report written by" in stderr


def test_url_against_a_real_server_matches_the_in_process_run(
    embedder, engine, bundled_settings, small_file, tmp_path
):
    shutil.copytree(bundled_settings.index_path, tmp_path / "index")
    server = start_api(tmp_path, "eval", serve_args=["--index", str(tmp_path / "index")])
    try:
        wait_until(server, "/ready")
        code, stdout, stderr = rag_eval(embedder, "--url", server.url, small_file, "--json")
    finally:
        server.process.terminate()
        server.process.wait(timeout=30)
    assert code == 0, stderr
    remote = EvalReport.model_validate_json(stdout).runs[0].metrics["all"]
    run, _ = bundled.run_bundled(engine, load_bundled(small_file))
    local = run.metrics["all"]
    for name in ("answer_accuracy", "hit@5", "mrr@10", "citation_precision", "overall_accuracy"):
        assert remote[name] == local[name], name
    assert remote["citation_support"] == local["citation_support"]
    assert remote["latency_p50_ms"] > 0 and remote["latency_p99_ms"] >= remote["latency_p95_ms"]


def test_url_names_an_unreachable_server(embedder, small_file):
    code, _, stderr = rag_eval(embedder, "--url", "http://127.0.0.1:9", small_file)
    assert code == 1 and "cannot reach" in stderr
