import json
import logging
from datetime import datetime

import pytest

from rag.ingest.documents import (
    EmptyCorpus,
    Skipped,
    load_corpus,
    parse_docx,
    parse_html,
    parse_jsonl,
    parse_pdf,
    read_file,
    skipped_counts,
)
from rag.ingest.formats import SkipReason, Unreadable, decode_text
from rag.text.chunking import chunk_text, split_sentences
from tests.conftest import write_corpus
from tests.making import (
    QUARRY_ANSWER_SENTENCE,
    QUARRY_HEADER,
    QUARRY_PAGES,
    QUARRY_TITLE,
    docx_bytes,
    pdf_bytes,
    quarry_pdf,
    scan_pdf_bytes,
    write,
)


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
    skipped: list[Skipped] = []
    with caplog.at_level(logging.WARNING):
        docs = load_corpus(tmp_path, skipped=skipped)
    assert [d.id for d in docs] == ["good"]
    assert "bin.txt" in caplog.text
    assert [(s.path, s.reason) for s in skipped] == [("bin.txt", SkipReason.BINARY)]


def test_a_latin_1_file_is_decoded_and_the_encoding_logged(tmp_path, caplog):
    text = (
        "Le café de la gare a rouvert à Genève\n\nLes élèves étaient nombreux à la fête "
        "du lycée, où le maître d'hôtel servait une crème brûlée réputée dans toute la région."
    )
    (tmp_path / "latin.txt").write_bytes(text.encode("latin-1"))
    with pytest.raises(UnicodeDecodeError):
        (tmp_path / "latin.txt").read_bytes().decode("utf-8")
    with caplog.at_level(logging.INFO, logger="rag.ingest.formats"):
        docs = load_corpus(tmp_path)
    assert len(docs) == 1
    assert docs[0].title == "Le café de la gare a rouvert à Genève"
    assert "crème brûlée réputée" in docs[0].text and "élèves" in docs[0].text
    assert "latin.txt is not UTF-8: decoded as cp1252" in caplog.text


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("cp1250", "Zażółć gęślą jaźń, powiedział burmistrz Łodzi w środę rano."),
        ("cp1251", "Мэр города сказал, что новый мост откроют в среду утром."),
        ("utf-16", "A UTF-16 file with its byte order mark: naïve café."),
    ],
)
def test_other_encodings_are_detected(encoding, text):
    assert decode_text(text.encode(encoding), "x.txt") == text


def test_pdf_pages_are_kept_and_running_headers_and_page_numbers_dropped(tmp_path):
    write(tmp_path / "quarry.pdf", quarry_pdf())
    [doc] = load_corpus(tmp_path)
    assert doc.id == "quarry" and doc.source == "quarry.pdf" and doc.title == QUARRY_TITLE
    assert doc.pages is not None and len(doc.pages) == 2 and doc.pages[0] == 0
    page_1, page_2 = doc.text[: doc.pages[1]], doc.text[doc.pages[1] :]
    assert QUARRY_ANSWER_SENTENCE in page_2 and QUARRY_ANSWER_SENTENCE not in page_1
    assert "market square" in page_1
    # the header on every page and the "Page N" footers are gone; nothing else is
    assert QUARRY_HEADER not in doc.text and "Page 1" not in doc.text and "Page 2" not in doc.text
    # lines wrapped at the margin are joined again: each paragraph is one line
    for paragraph in QUARRY_PAGES[0] + QUARRY_PAGES[1]:
        assert paragraph in doc.text
    assert doc.page_at(doc.text.index(QUARRY_ANSWER_SENTENCE)) == 2
    assert doc.page_at(0) == 1 and doc.page_at(doc.pages[1] - 1) == 1


def test_pdf_chunks_keep_to_their_page_and_carry_it():
    doc = parse_pdf(quarry_pdf(), doc_id="q")
    chunks = chunk_text(doc.id, doc.text, max_tokens=40, overlap=20, pages=doc.pages)
    assert {c.page for c in chunks} == {1, 2}
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.page == doc.page_at(c.start) == doc.page_at(c.end - 1)  # no chunk straddles
    answer = next(c for c in chunks if QUARRY_ANSWER_SENTENCE in c.text)
    assert answer.page == 2


def test_a_sentence_running_over_a_page_break_stays_whole():
    first = "The council met on Monday. " * 20 + "After a long debate the members agreed to"
    second = "rebuild the old bridge over the river before the floods of next winter."
    doc = parse_pdf(pdf_bytes([[first], [second]]), doc_id="b")
    assert "agreed to rebuild the old bridge" in doc.text
    chunks = chunk_text(doc.id, doc.text, max_tokens=40, overlap=10, pages=doc.pages)
    over = [c for c in chunks if "agreed to rebuild" in c.text]
    assert len(over) == 1 and over[0].page == 1  # the page it starts on
    # the chunk crosses the break only through that sentence: it ends with it
    assert over[0].text.endswith("floods of next winter.")
    assert all(c.page == doc.page_at(c.end - 1) for c in chunks if c is not over[0])


def test_words_hyphenated_at_line_ends_are_joined():
    lines = [
        "The commission published its findings on the extraor-",
        "dinary flooding of the lower valley, and recommended a recon-",
        "struction of the dykes along the whole river before the winter.",
        "Work on the well-known north dyke starts in March.",
    ]
    doc = parse_pdf(pdf_bytes([["\n".join(lines)]]), doc_id="h")
    assert doc.text == (
        "The commission published its findings on the extraordinary flooding of the lower "
        "valley, and recommended a reconstruction of the dykes along the whole river before "
        "the winter.\nWork on the well-known north dyke starts in March."
    )


def test_a_scan_without_text_is_skipped_with_that_reason(tmp_path):
    write(tmp_path / "scan.pdf", scan_pdf_bytes())
    write_corpus(tmp_path, {"note.txt": "A note with some text in it."})
    skipped: list[Skipped] = []
    docs = load_corpus(tmp_path, skipped=skipped)
    assert [d.id for d in docs] == ["note"]
    [scan] = skipped
    assert scan.path == "scan.pdf" and scan.reason == SkipReason.NO_TEXT_LAYER
    assert "2 page(s)" in scan.detail


BROKEN_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\n%%EOF"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "broken.pdf",
            b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\n%%EOF",
            "malformed",
        ),
        ("truncated.pdf", b"", "malformed"),
        ("cut.pdf", None, "malformed"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "malformed"),
        ("image.png", b"\x89PNG\r\n", "unsupported"),
    ],
)
def test_broken_files_are_skipped_with_their_reason(tmp_path, name, content, reason):
    if content is None:  # a real PDF cut in half
        content = quarry_pdf()[:700]
    with pytest.raises(Unreadable) as raised:
        read_file(write(tmp_path / name, content))
    assert (
        raised.value.reason
        == {
            "malformed": SkipReason.MALFORMED,
            "unsupported": SkipReason.UNSUPPORTED,
        }[reason]
    )


def test_docx_headings_title_and_date_come_from_the_document(tmp_path):
    content = docx_bytes(
        [
            ("title", "Harbour Works Update"),
            ("h1", "Dredging"),
            ("p", "Dredging of the inner harbour finished in May, two weeks early."),
            ("h2", "Costs"),
            ("p", "The works cost 3.2 million euros, less than the budget."),
        ],
        title="Harbour works: the May update",
        created=datetime(2024, 5, 31, 9, 30),
        table=[["Berth", "Depth"], ["North", "12 m"]],
    )
    write(tmp_path / "harbour.docx", content)
    [doc] = load_corpus(tmp_path)
    assert doc.title == "Harbour works: the May update" and doc.date == "2024-05-31"
    assert doc.pages is None
    lines = doc.text.split("\n\n")
    assert lines[:4] == [
        "Dredging",
        "Dredging of the inner harbour finished in May, two weeks early.",
        "Costs",
        "The works cost 3.2 million euros, less than the budget.",
    ]
    assert "Berth | Depth" in doc.text and "North | 12 m" in doc.text
    # a heading is a sentence of its own, never read into the one after it
    sentences = [doc.text[s.start : s.end] for s in split_sentences(doc.text)]
    assert "Costs" in sentences


def test_docx_without_properties_takes_its_title_paragraph_and_no_template_date():
    doc = parse_docx(
        docx_bytes([("title", "Harbour Works Update"), ("p", "Dredging finished in May.")]),
        doc_id="d",
    )
    assert doc.title == "Harbour Works Update" and doc.date is None
    assert doc.text == "Dredging finished in May."


def test_the_folder_summary_counts_skipped_files_by_reason(tmp_path):
    write(tmp_path / "quarry.pdf", quarry_pdf())
    write(tmp_path / "scan.pdf", scan_pdf_bytes())
    write(tmp_path / "a.xyz", b"what is this")
    write(tmp_path / "b.xyz", b"and this")
    write(tmp_path / "quarry.txt", b"Another file with the id quarry.")
    skipped: list[Skipped] = []
    docs = load_corpus(tmp_path, skipped=skipped)
    assert [d.id for d in docs] == ["quarry"]
    assert skipped_counts(skipped) == {
        "unsupported file type": 2,
        "no text layer": 1,
        "document id already taken": 1,
    }


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
