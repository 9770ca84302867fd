import json
import logging

import pytest

from rag.documents import EmptyCorpus, load_corpus, parse_html, parse_jsonl
from tests.conftest import write_corpus


def test_bundled_corpus_loads_with_ids_from_file_stems(bundled_documents):
    ids = sorted(d.id for d in bundled_documents)
    assert ids[1] == "001_747dad745748a0c8" and len(ids) == 5
    for d in bundled_documents:
        assert d.text and d.title and len(d.content_hash) == 64


def test_all_formats_load_recursively(tmp_path):
    write_corpus(
        tmp_path / "c",
        {
            "a.txt": "Plain title line here\n\nA plain text article body with enough words to be "
            "treated as the body of an article by the cleaner, long enough.",
            "b.md": "---\ntitle: Markdown Doc\ndate: 2023-05-01\n---\n"
            "# Heading\n\nSome markdown body.",
            "c.html": "<html><head><title>Page</title><style>p{}</style></head><body><article>"
            "<h1>Html Title</h1><p>An HTML paragraph about tungsten that is long enough to be "
            "extracted as main content by the extractor library.</p><script>evil()</script>"
            "</article></body></html>",
            "d.jsonl": json.dumps(
                {"id": "j1", "title": "J", "text": "Json text one.", "date": "2020-02-03"}
            )
            + "\n{broken\n"
            + json.dumps({"id": "j2", "text": "Json text two."})
            + "\n",
            "ignored.pdf": "%PDF-1.4",
        },
    )
    (tmp_path / "c" / "sub").mkdir()
    (tmp_path / "c" / "sub" / "e.txt").write_text("Nested article text.")
    docs = {d.id: d for d in load_corpus(tmp_path / "c")}
    assert set(docs) == {"a", "b", "c", "j1", "j2", "sub__e"}
    assert docs["b"].title == "Markdown Doc" and docs["b"].date == "2023-05-01"
    assert "#" not in docs["b"].text
    assert "evil" not in docs["c"].text and "p{}" not in docs["c"].text
    assert "tungsten" in docs["c"].text
    assert docs["j1"].date == "2020-02-03" and docs["j1"].title == "J"
    # sources are relative to the folder: the HTTP API shows them, never a server path
    assert docs["sub__e"].source == "sub/e.txt" and docs["j2"].source == "d.jsonl"


def test_malformed_jsonl_line_is_named(caplog):
    with caplog.at_level(logging.WARNING):
        docs = list(
            parse_jsonl(
                '{"text": "ok"}\nnot json\n{"no_text": 1}\n', default_id="f", source="f.jsonl"
            )
        )
    assert [d.id for d in docs] == ["f-1"]
    assert "line 2" in caplog.text and "line 3" in caplog.text


def test_unreadable_and_binary_files_are_skipped_with_a_warning(tmp_path, caplog):
    write_corpus(tmp_path, {"good.txt": "A good article."})
    (tmp_path / "bin.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        docs = load_corpus(tmp_path)
    assert [d.id for d in docs] == ["good"]
    assert "bin.txt" in caplog.text and "latin.txt" in caplog.text


def test_oversized_files_are_skipped(tmp_path, caplog):
    write_corpus(tmp_path, {"small.txt": "Small.", "big.txt": "x" * 5000})
    with caplog.at_level(logging.WARNING):
        docs = load_corpus(tmp_path, max_file_bytes=1000)
    assert [d.id for d in docs] == ["small"] and "big.txt" in caplog.text


def test_symlinks_leading_out_of_the_folder_are_refused(tmp_path, caplog):
    secret = tmp_path / "outside.txt"
    secret.write_text("Secret text outside the corpus.")
    corpus = write_corpus(tmp_path / "corpus", {"inside.txt": "Inside text."})
    (corpus / "link.txt").symlink_to(secret)
    with caplog.at_level(logging.WARNING):
        docs = load_corpus(corpus)
    assert [d.id for d in docs] == ["inside"]
    assert "outside" in caplog.text


def test_empty_corpus_is_an_error_that_says_so(tmp_path):
    (tmp_path / "notes.pdf").write_bytes(b"%PDF")
    with pytest.raises(EmptyCorpus, match="no documents found"):
        load_corpus(tmp_path)


def test_html_without_main_content_falls_back_to_visible_text():
    doc = parse_html("<p>Tiny</p><script>alert(1)</script>", doc_id="x")
    assert doc is not None and "Tiny" in doc.text and "alert" not in doc.text
