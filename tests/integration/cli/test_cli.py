"""The command line as a newcomer meets it: the footguns refused, the readable views."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from rag.cli import main
from rag.config import PROJECT_ROOT
from tests.conftest import UZBEK_DOC, write_corpus


def _run(*args: str):
    result = CliRunner().invoke(main, list(args))
    return result


def test_indexing_another_folder_into_an_index_refuses_and_names_replace(tmp_path):
    index = str(tmp_path / "index")
    first = write_corpus(
        tmp_path / "a", {"reservoir.txt": "The Kair reservoir holds 40 million cubic metres."}
    )
    second = write_corpus(
        tmp_path / "b", {"council.txt": "The council voted nine to two for the bridge."}
    )
    assert _run("index", str(first), "--index", index).exit_code == 0
    again = _run("index", str(first), "--index", index)  # the same folder: an update
    assert again.exit_code == 0, again.output

    refused = _run("index", str(second), "--index", index)
    assert refused.exit_code == 1
    assert "--replace" in refused.output and str(first.resolve()) in refused.output
    docs = _run("docs", "--index", index)
    assert "reservoir" in docs.output and "council" not in docs.output  # nothing was lost

    replaced = _run("index", str(second), "--index", index, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert "1 removed" in replaced.output
    docs = _run("docs", "--index", index)
    assert "council" in docs.output and "reservoir" not in docs.output


def test_serve_without_an_index_fails_fast_with_one_sentence(tmp_path):
    missing = tmp_path / "nothing-here"
    result = subprocess.run(
        [sys.executable, "-m", "rag.cli", "serve", "--index", str(missing), "--port", "0"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "there is no index at" in result.stderr and "--allow-empty" in result.stderr
    assert "Traceback" not in result.stderr


def test_readable_views(bundled_settings):
    index = str(bundled_settings.index_path)
    stats = _run("stats", "--index", index)
    assert stats.exit_code == 0
    assert "build_seconds" in stats.output and " s\n" in stats.output  # "1.3 s", not 1.34113...
    assert "{" not in stats.output  # no raw dicts

    docs = _run("docs", "--index", index)
    rows = [line for line in docs.output.splitlines() if line.strip()]
    column = rows[0].index("date")  # every row's date starts under the header's
    assert all(row[column - 2 : column] == "  " and row[column] != " " for row in rows), docs.output

    shown = _run("show", f"{UZBEK_DOC}:3", "--index", index)
    assert shown.exit_code == 0 and "None" not in shown.output

    unknown = _run("show", f"{UZBEK_DOC}:999", "--index", index)
    assert unknown.exit_code == 1 and "no chunk with id" in unknown.output

    search = _run("search", "tungsten molybdenum", "--index", index)
    first = search.output.splitlines()[0]
    assert "score" in first and "dense" in first and "bm25" in first


def test_index_counts_skipped_files_by_reason_and_lists_them_with_v(tmp_path):
    from tests.making import QUARRY_QUESTION, quarry_pdf, scan_pdf_bytes, write

    folder = tmp_path / "docs"
    write(folder / "quarry.pdf", quarry_pdf())
    write(folder / "scan.pdf", scan_pdf_bytes())
    write(folder / "notes.xyz", b"not a format")
    write(
        folder / "latin.txt", "Le café de la gare a rouvert ses portes à Genève.".encode("latin-1")
    )
    index = str(tmp_path / "index")
    quiet = _run("index", str(folder), "--index", index)
    assert quiet.exit_code == 0, quiet.output
    assert "Indexed 2 documents" in quiet.output  # the PDF and the Latin-1 file
    assert "skipped 2 files (1 no text layer, 1 unsupported file type)" in quiet.output
    assert "scan.pdf" not in quiet.output

    listed = _run("index", str(folder), "--index", index, "-v")
    assert listed.exit_code == 0, listed.output
    assert "skipped 2 files" in listed.output
    assert "  skipped scan.pdf: no text layer in 2 page(s)" in listed.output
    assert "  skipped notes.xyz: unsupported file type '.xyz'" in listed.output

    as_json = _run("index", str(folder), "--index", index, "--json")
    report = json.loads(as_json.output)
    assert {(s["path"], s["reason"]) for s in report["skipped"]} == {
        ("scan.pdf", "no text layer"),
        ("notes.xyz", "unsupported file type"),
    }

    answer = _run("ask", QUARRY_QUESTION, "--index", index)
    assert answer.exit_code == 0, answer.output
    assert "48,000" in answer.output and "quarry  p. 2  chunk quarry:" in answer.output


def test_a_folder_with_nothing_readable_says_what_was_skipped(tmp_path):
    from tests.making import scan_pdf_bytes, write

    write(tmp_path / "docs" / "scan.pdf", scan_pdf_bytes())
    result = _run("index", str(tmp_path / "docs"), "--index", str(tmp_path / "index"))
    assert result.exit_code == 1
    assert "no documents found" in result.output and "1 no text layer" in result.output


def test_indexing_an_unchanged_folder_writes_nothing(tmp_path):
    """Issue #20.5: `rag index` on a folder that has not changed finds so before it writes:
    no temporary store appears in the index directory (its mtime stays), no generation."""
    import time

    index = tmp_path / "index"
    folder = write_corpus(
        tmp_path / "notes",
        {
            f"note{n}.txt": f"Survey note {n}: the Kair reservoir held {n * 10} million cubic "
            "metres after the spring floods."
            for n in range(4)
        },
    )
    first = _run("index", str(folder), "--index", str(index))
    assert first.exit_code == 0, first.output
    before = sorted(p.name for p in index.iterdir())
    stamp = index.stat().st_mtime_ns
    time.sleep(0.05)  # so that a directory entry made and removed now changes the mtime

    again = _run("index", str(folder), "--index", str(index))
    assert again.exit_code == 0, again.output
    assert "0 new, 0 changed, 4 unchanged, 0 removed; 0 chunks embedded" in again.output
    assert sorted(p.name for p in index.iterdir()) == before
    assert index.stat().st_mtime_ns == stamp, "something was written in the index directory"
