import json
from pathlib import Path

import numpy as np
import pytest

from index import Index, IndexCorrupt, IndexMismatch, IndexNotFound, UnknownDocument
from index.generations import PointerWatch, current, list_generations
from rag.engine import Engine
from rag.indexing import build_index
from tests.conftest import CHIRCHIK, UZBEK_DOC


def test_save_load_gives_identical_results(bundled_settings, engine, embedder):
    reloaded = Engine.load(bundled_settings, embedder=embedder)
    a, b = engine.ask(CHIRCHIK), reloaded.ask(CHIRCHIK)
    assert a.answer == b.answer
    assert [p.chunk_id for p in a.passages] == [p.chunk_id for p in b.passages]
    assert [p.score for p in a.passages] == pytest.approx([p.score for p in b.passages], abs=1e-5)


def test_manifest_records_what_built_it(engine):
    m = engine.index.manifest
    assert m.model == "sentence-transformers/all-MiniLM-L6-v2"
    assert m.dimension == 384 and m.normalized and m.tokenizer == "cl100k_base"
    assert m.chunking == {
        "max_tokens": engine.settings.chunk_tokens,
        "overlap": engine.settings.chunk_overlap,
    }
    assert m.n_documents == 5 and m.n_chunks == len(engine.index) > 5
    assert {"vectors.faiss", "store.sqlite", "bm25/vector_ids.npy"} <= set(m.files)
    assert {"faiss", "numpy", "python"} <= set(m.versions)


def test_every_chunk_slices_its_document(any_engine):
    for doc in any_engine.documents():
        text = any_engine.document(doc.id).text
        chunks = any_engine.index.store.chunks_of(doc.id)
        assert len(chunks) == doc.n_chunks > 0
        for c in chunks:
            assert text[c.start : c.end] == c.text


def test_missing_index_is_a_clear_error(tmp_path):
    with pytest.raises(IndexNotFound, match="rag index"):
        Index.load(tmp_path / "nothing")


def test_manifest_naming_another_model_is_refused(bundled_documents, embedder, fresh_settings):
    index, _ = build_index(fresh_settings, embedder, bundled_documents[:1])
    manifest_path = index.path / "manifest.json"
    data = json.loads(manifest_path.read_text())
    data["model"] = "intfloat/e5-small-v2"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(IndexMismatch, match="e5-small-v2"):
        Engine.load(fresh_settings, embedder=embedder)
    with pytest.raises(IndexMismatch, match="configured"):
        Index.load(fresh_settings.index_path, model="sentence-transformers/all-MiniLM-L6-v2")


def test_truncated_faiss_file_is_a_clear_error(bundled_documents, embedder, fresh_settings):
    index, _ = build_index(fresh_settings, embedder, bundled_documents[:2])
    vectors = index.path / "vectors.faiss"
    vectors.write_bytes(vectors.read_bytes()[: vectors.stat().st_size // 2])
    with pytest.raises(IndexCorrupt, match="vectors.faiss"):
        Index.load(fresh_settings.index_path)
    # Without checksum verification the truncation is still caught (by size).
    with pytest.raises(IndexCorrupt):
        Index.load(fresh_settings.index_path, verify=False)


def test_corrupt_generation_falls_back_to_previous(
    bundled_documents, embedder, fresh_store_settings
):
    build_index(fresh_store_settings, embedder, bundled_documents[:2])
    second, _ = build_index(fresh_store_settings, embedder, bundled_documents[:3])
    store = second.path / "store.sqlite"
    data = bytearray(store.read_bytes())
    data[len(data) // 2] ^= 0xFF
    store.write_bytes(bytes(data))
    loaded = Index.load(fresh_store_settings.index_path)
    assert loaded.generation == second.generation - 1
    assert loaded.manifest.n_documents == 2


def test_unchanged_documents_are_not_embedded_again(
    bundled_documents, embedder, fresh_store_settings
):
    first, r1 = build_index(fresh_store_settings, embedder, bundled_documents)
    assert r1.embedded_chunks == r1.n_chunks and r1.added == 5
    _, r2 = build_index(fresh_store_settings, embedder, bundled_documents, base=first)
    assert r2.embedded_chunks == 0 and r2.unchanged == 5
    assert r2.generation == r1.generation  # nothing changed: no new generation written
    changed = list(bundled_documents)
    changed[0] = type(changed[0])(id=changed[0].id, text=changed[0].text + " An added sentence.")
    second = Index.load(fresh_store_settings.index_path)
    third, r3 = build_index(fresh_store_settings, embedder, changed[:4], base=second)
    assert (r3.changed, r3.unchanged, r3.removed) == (1, 3, 1)
    assert 0 < r3.embedded_chunks < r1.n_chunks
    # Reused vectors are the stored ones, bit for bit.
    c = third.store.chunks_of(changed[1].id)[0]
    assert np.array_equal(third.vectors_for([c]), first.vectors_for([c]))


def test_old_generations_are_pruned(bundled_documents, embedder, fresh_store_settings):
    settings = fresh_store_settings.model_copy(update={"keep_generations": 2})
    for n in range(1, 5):
        build_index(settings, embedder, bundled_documents[:n])
    gens = list_generations(settings.index_path)
    assert len(gens) == 2
    assert current(settings.index_path) == gens[0]
    if settings.store == "milvus":  # pruned generations' collections are dropped too
        from index.backends.milvus import client

        names = client(settings.milvus_uri).list_collections()
        ours = sorted(n for n in names if n.startswith(settings.milvus_collection + "_g"))
        assert ours == [f"{settings.milvus_collection}_g00000{n}" for n in (3, 4)]


def test_a_crashed_write_leaves_the_live_index_and_is_cleaned(
    bundled_documents, embedder, fresh_settings
):
    build_index(fresh_settings, embedder, bundled_documents[:2])
    leftover = fresh_settings.index_path / ".tmp-12345-deadbeef"
    leftover.mkdir()
    (leftover / "vectors.faiss").write_bytes(b"half")
    assert Index.load(fresh_settings.index_path).manifest.n_documents == 2
    build_index(fresh_settings, embedder, bundled_documents[:3])
    assert not leftover.exists()


def test_filters_restrict_search(any_engine):
    from rag.models import Filters

    only = any_engine.search(CHIRCHIK, k=5, filters=Filters(doc_ids=["004_a42af59a74583b78"]))
    assert only.passages and {p.doc_id for p in only.passages} == {"004_a42af59a74583b78"}
    june = any_engine.search(CHIRCHIK, k=10, filters=Filters(date_from="2024-06-01"))
    assert june.passages and all(p.date >= "2024-06-01" for p in june.passages)
    assert UZBEK_DOC not in {p.doc_id for p in june.passages}


def test_chunks_read_by_vector_id_are_cached_within_a_bound(bundled_settings, monkeypatch):
    from index import store as store_module
    from index.store import ChunkStore

    monkeypatch.setattr(store_module, "CHUNK_CACHE_SIZE", 5)
    index = Index.load(bundled_settings.index_path)
    fresh = ChunkStore(index.store.path)
    ids = [vector_id for vector_id, _ in fresh.iter_chunks()]
    expected = {vector_id: chunk for vector_id, chunk in fresh.iter_chunks()}
    for start in (0, 3, 0, 10):  # hits, misses and evictions
        wanted = ids[start : start + 7] + [12345]  # an id no chunk has
        assert fresh.chunks_by_vector_ids(wanted) == {v: expected[v] for v in wanted[:-1]}
        assert len(fresh._chunks) <= 5
    index.close()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts /proc/self/fd")
def test_a_dropped_store_closes_every_threads_connection_at_once(bundled_settings):
    """Not when the cyclic garbage collector next runs (a sqlite3.Connection is in a cycle
    with its statement cache), so a server moving from generation to generation holds no
    descriptors of those it left (eval/soak.py found tens of them)."""
    import gc
    import os
    import threading

    from index.store import ChunkStore

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    path = current(bundled_settings.index_path) / "store.sqlite"
    gc.disable()
    try:
        before = open_fds()
        store = ChunkStore(path)
        threads = [threading.Thread(target=store.count_chunks) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert open_fds() == before + 4  # this thread's and three others'
        del store, threads
        assert open_fds() == before
    finally:
        gc.enable()


# the store's schema versions (issue #18 added page numbers)
_VERSION_0 = """
CREATE TABLE documents (id TEXT PRIMARY KEY, title TEXT NOT NULL, date TEXT, url TEXT,
    source TEXT, text TEXT NOT NULL, content_hash TEXT NOT NULL, n_chunks INTEGER NOT NULL);
CREATE TABLE chunks (vector_id INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE,
    doc_id TEXT NOT NULL REFERENCES documents(id), ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, text TEXT NOT NULL,
    n_tokens INTEGER NOT NULL);
"""


def test_a_store_written_before_page_numbers_is_read_without_them(tmp_path):
    import sqlite3

    from index.records import Chunk, Document
    from index.store import ChunkStore

    doc = Document(id="old", text="An article from an older index.", title="Old")
    chunk = Chunk("old:0", "old", 0, 0, len(doc.text), doc.text, 7)
    path = tmp_path / "store.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_VERSION_0)
    conn.execute(
        "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (doc.id, doc.title, None, None, None, doc.text, doc.content_hash, 1),
    )
    conn.execute(
        "INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (chunk.vector_id, chunk.id, "old", 0, 0, chunk.end, chunk.text, 7),
    )
    conn.commit()
    conn.close()
    store = ChunkStore(path)
    assert store.version == 0
    assert store.get_document("old") == doc and doc.pages is None
    assert store.get_chunk("old:0") == chunk and chunk.page is None
    assert store.chunks_by_vector_ids([chunk.vector_id])[chunk.vector_id] == chunk
    assert store.pages_of(["old"]) == {}
    # unchanged since then: the same content hash, so an update keeps its vectors
    assert store.document_hashes() == {"old": doc.content_hash}


def test_pages_round_trip_through_the_store_and_a_newer_store_is_refused(tmp_path):
    import sqlite3

    from index.records import Chunk, Document
    from index.store import SCHEMA_VERSION, ChunkStore, write_store

    text = "Page one text.\n\nPage two text."
    doc = Document(id="p", text=text, title="Paged", pages=(0, 16))
    chunks = [
        Chunk("p:0", "p", 0, 0, 14, text[:14], 4, 1),
        Chunk("p:1", "p", 1, 16, 30, text[16:], 4, 2),
    ]
    path = tmp_path / "store.sqlite"
    write_store(path, [doc], chunks)
    store = ChunkStore(path)
    assert store.version == SCHEMA_VERSION
    assert store.get_document("p") == doc and store.pages_of(["p", "x"]) == {"p": (0, 16)}
    assert store.chunks_of("p") == chunks and [c.page for c in store.chunks_of("p")] == [1, 2]
    store.close()

    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(IndexMismatch, match="schema version"):
        ChunkStore(path)


def test_the_watched_pointer_follows_every_swap_and_removal(tmp_path):
    import os

    watch = PointerWatch(tmp_path)
    assert watch.name() is None  # no index yet
    names = []
    for n in range(1, 4):
        (tmp_path / f"gen-{n:06d}").mkdir()
        tmp = tmp_path / "CURRENT.tmp"
        tmp.write_text(f"gen-{n:06d}", encoding="utf-8")
        os.replace(tmp, tmp_path / "CURRENT")  # as generations.swap does
        names.append(watch.name())
        assert watch.name() == names[-1]  # unchanged: the name seen, not a new read
    assert names == ["gen-000001", "gen-000002", "gen-000003"]
    (tmp_path / "CURRENT").write_text("not a generation", encoding="utf-8")
    assert watch.name() is None
    (tmp_path / "CURRENT").unlink()
    assert watch.name() is None


def test_bm25_reuses_saved_terms_and_scores_as_a_fresh_build(tmp_path, caplog):
    import logging

    from index.lexical import LexicalIndex, text_hash

    texts = [
        "Uzbekistan exports molybdenum and tungsten.",
        "Korea builds a rare metals centre in Chirchik.",
        "",  # no terms at all: a placeholder keeps the positions
    ]
    first = LexicalIndex.build(texts, [10, 11, 12])
    first.save(tmp_path / "a")
    known = LexicalIndex.saved_terms(tmp_path / "a")
    assert known is not None
    spans = known.spans()
    assert set(spans) == {text_hash(t) for t in texts}
    start, end = spans[text_hash(texts[0])]
    assert [known.vocab[i] for i in known.ids[start:end]] == [
        "uzbekistan",
        "export",
        "molybdenum",
        "tungsten",
    ]
    changed = [texts[0], "Kazakhstan mines lithium and tungsten.", texts[2]]
    with caplog.at_level(logging.INFO, logger="index.lexical"):
        reused = LexicalIndex.build(changed, [10, 13, 12], known)
    assert "(1 analysed, 2 reused)" in caplog.text
    fresh = LexicalIndex.build(changed, [10, 13, 12])
    for query in ("tungsten", "lithium mines", "molybdenum exports"):
        assert np.array_equal(reused.scores(query), fresh.scores(query)), query
    assert reused.scores("tungsten")[1] > 0 and reused.scores("chirchik").sum() == 0
    # the terms only the replaced text held are gone from the index, not kept at df 0
    assert "chirchik" not in reused.document_frequencies()
    assert reused.document_frequencies() == fresh.document_frequencies()


def test_saved_terms_that_do_not_add_up_are_ignored(tmp_path):
    from index.lexical import TEXT_HASHES, LexicalIndex

    LexicalIndex.build(["tungsten prices", "lithium output"], [1, 2]).save(tmp_path)
    np.save(tmp_path / TEXT_HASHES, np.zeros(5, dtype=np.uint64))  # more hashes than chunks
    assert LexicalIndex.saved_terms(tmp_path) is None
    assert LexicalIndex.saved_terms(tmp_path / "missing") is None


def test_an_upsert_analyses_only_the_new_document_for_bm25(
    fresh_settings, embedder, bundled_documents, caplog
):
    import logging

    from rag.writer import Writer

    build_index(fresh_settings, embedder, bundled_documents[:3])
    engine = Engine.load(fresh_settings, embedder=embedder)
    new = bundled_documents[3]
    with caplog.at_level(logging.INFO, logger="index.lexical"):
        report = Writer(engine).upsert([new])
    new_chunks = len(engine.index.store.chunks_of(new.id))
    assert report.added == 1 and new_chunks > 0
    assert f"({new_chunks} analysed, {report.n_chunks - new_chunks} reused)" in caplog.text
    # and it ranks as a build from scratch does
    fresh_settings2 = fresh_settings.model_copy(
        update={"index_path": fresh_settings.index_path.parent / "scratch"}
    )
    scratch, _ = build_index(fresh_settings2, embedder, bundled_documents[:4])
    assert engine.index.lexical.search(CHIRCHIK, 10) == scratch.lexical.search(CHIRCHIK, 10)


def test_an_update_writes_only_what_changes_and_equals_a_build_from_scratch(
    fresh_settings, embedder, bundled_documents, caplog
):
    """Upsert one document, replace another and delete a third through the update path
    (the base's chunk store copied, its vectors kept): the new generation holds what a
    build from scratch of the same documents holds, and embedded only the new chunks."""
    import dataclasses
    import logging

    from rag.writer import Writer

    build_index(fresh_settings, embedder, bundled_documents[:3])
    engine = Engine.load(fresh_settings, embedder=embedder)
    base = engine.index
    kept, replaced, deleted = bundled_documents[0], bundled_documents[1], bundled_documents[2]
    kept_vectors = base.vectors_for(base.store.chunks_of(kept.id))
    writer = Writer(engine)
    edited = dataclasses.replace(replaced, text=replaced.text + "\n\nA closing line on tungsten.")
    with caplog.at_level(logging.INFO, logger="rag.indexing"):
        report = writer.upsert([bundled_documents[3], edited])
    assert "updated the index: 1 documents new, 1 changed, 0 removed" in caplog.text
    new_chunks = len(engine.index.store.chunks_of(bundled_documents[3].id)) + len(
        engine.index.store.chunks_of(replaced.id)
    )
    assert (report.added, report.changed, report.unchanged) == (1, 1, 2)
    assert report.embedded_chunks == new_chunks
    writer.delete(deleted.id)
    updated = engine.index
    assert updated.generation == base.generation + 2

    scratch_settings = fresh_settings.model_copy(
        update={"index_path": fresh_settings.index_path.parent / "scratch-update"}
    )
    scratch, _ = build_index(scratch_settings, embedder, [kept, edited, bundled_documents[3]])
    assert updated.manifest.corpus_hash == scratch.manifest.corpus_hash
    assert updated.manifest.n_chunks == scratch.manifest.n_chunks
    assert sorted(s.id for s in updated.store.summaries()) == sorted(
        s.id for s in scratch.store.summaries()
    )
    for doc in (kept, edited, bundled_documents[3]):
        assert updated.store.get_document(doc.id).text == doc.text
        assert updated.store.chunks_of(doc.id) == scratch.store.chunks_of(doc.id)
    with pytest.raises(UnknownDocument):
        updated.store.get_document(deleted.id)
    # the kept document's vectors are the base's, bit for bit; the deleted one's are gone
    assert np.array_equal(updated.vectors_for(updated.store.chunks_of(kept.id)), kept_vectors)
    assert updated.vectors.count() == updated.manifest.n_chunks
    for query in (CHIRCHIK, "tungsten closing line"):
        assert updated.lexical.search(query, 10) == scratch.lexical.search(query, 10), query
