"""Crash and corruption: an index is never left broken, and a damaged generation is refused."""

from __future__ import annotations

import os
import random
import shutil
import signal
import time

import pytest

from index import Index
from index.records import Document
from rag.engine import Engine
from rag.indexing import build_index
from tests.conftest import CHIRCHIK, UZBEK_DOC


def test_every_index_file_is_checked_and_the_previous_generation_serves(
    bundled_documents, embedder, fresh_settings, caplog
):
    first, _ = build_index(fresh_settings, embedder, bundled_documents)
    extra = Document(id="extra", text="An extra article about lithium mining in Chile.")
    second, _ = build_index(fresh_settings, embedder, [*bundled_documents, extra], base=first)
    assert set(second.manifest.files) >= {"vectors.faiss", "store.sqlite"}
    for name in second.manifest.files:
        path = second.path / name
        original = path.read_bytes()
        damaged = bytearray(original)
        damaged[len(damaged) // 2] ^= 0x01
        path.write_bytes(bytes(damaged))
        try:
            caplog.clear()
            loaded = Index.load(fresh_settings.index_path)
            assert loaded.generation == first.generation, name
            assert "unusable" in caplog.text and name.split("/")[-1] in caplog.text
            engine = Engine(fresh_settings, loaded, embedder)
            assert engine.ask(CHIRCHIK).citations[0].doc_id == UZBEK_DOC
        finally:
            path.write_bytes(original)
    assert Index.load(fresh_settings.index_path).generation == second.generation


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_kill_9_during_builds_never_leaves_a_broken_index(
    bundled_documents, embedder, fresh_settings
):
    """Kill a builder at random moments (in a forked child, so the model is already loaded);
    after each kill the index loads, passes its checks and answers; no completed build is lost."""
    rng = random.Random(7)
    _, report = build_index(fresh_settings, embedder, bundled_documents)
    acknowledged = {report.generation: report.n_documents}
    kills = 0
    for attempt in range(20):
        extra = [
            Document(id=f"extra-{attempt}-{i}", text=f"Note {attempt}.{i} on mining cooperation.")
            for i in range(rng.randint(0, 3))
        ]
        pid = os.fork()
        if pid == 0:  # child: build, then exit without cleanup
            code = 0
            try:
                import torch

                torch.set_num_threads(1)
                base = Index.load(fresh_settings.index_path)
                build_index(fresh_settings, embedder, [*bundled_documents, *extra], base=base)
            except BaseException:
                code = 1
            os._exit(code)
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            live = Index.load(fresh_settings.index_path)
            acknowledged[live.generation] = live.manifest.n_documents
        else:
            kills += 1
        index = Index.load(fresh_settings.index_path)  # verifies checksums and counts
        assert index.generation >= max(acknowledged)
        engine = Engine(fresh_settings, index, embedder)
        assert engine.ask(CHIRCHIK).citations[0].doc_id == UZBEK_DOC
    assert kills >= 5  # the test really interrupted builds
    # The next writer cleans what the killed ones left behind.
    build_index(
        fresh_settings, embedder, bundled_documents, base=Index.load(fresh_settings.index_path)
    )
    leftovers = [p for p in fresh_settings.index_path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []
    shutil.rmtree(fresh_settings.index_path)


def test_ids_stay_stable_after_a_deletion(bundled_documents, embedder, fresh_settings):
    """FAISS ids are derived from chunk ids, never positions: deleting a document leaves
    every other chunk with its id and its own vector."""
    first, _ = build_index(fresh_settings, embedder, bundled_documents)
    before = {c.id: (vid, first.vectors_for([c])[0]) for vid, c in first.store.iter_chunks()}
    deleted = bundled_documents[0].id
    second, report = build_index(
        fresh_settings, embedder, [], base=first, replace_all=False, delete_ids=[deleted]
    )
    assert report.removed == 1 and report.embedded_chunks == 0
    after = dict(second.store.iter_chunks())
    assert after and all(c.doc_id != deleted for c in after.values())
    for vid, chunk in after.items():
        old_vid, old_vector = before[chunk.id]
        assert vid == old_vid == chunk.vector_id
        assert (second.vectors_for([chunk])[0] == old_vector).all()
        best = second.search(old_vector[None, :], 1)[0][0]
        assert best.chunk.id == chunk.id


def test_a_generation_rolled_back_from_by_hand_is_kept_and_served_last(
    bundled_documents, embedder, fresh_settings
):
    """An operator points CURRENT back at an earlier generation: the newer one is not a
    crashed write's leftover, so start-up and the next write keep it; and when the live one
    is unusable, an older generation serves before the one rolled back from."""
    from index import generations

    root = fresh_settings.index_path
    built = [build_index(fresh_settings, embedder, bundled_documents[:n])[0] for n in (2, 3, 4)]
    first, second, third = (b.generation for b in built)
    time.sleep(0.01)
    (root / "CURRENT").write_text(generations.generation_name(second) + "\n")  # the rollback

    assert generations.clean_leftovers_if_idle(root) is True
    assert built[2].path.exists()
    assert Index.load(root).generation == second

    (built[1].path / "vectors.faiss").write_bytes(b"corrupt")
    assert Index.load(root).generation == first  # not the generation rolled back from

    fourth, _ = build_index(fresh_settings, embedder, bundled_documents[:5])
    assert Index.load(root).generation == fourth.generation > third
    assert built[2].path.exists()


def test_leftovers_of_a_crashed_write_are_cleaned_at_start_unless_a_writer_works(
    bundled_documents, embedder, fresh_settings
):
    from index import generations

    root = fresh_settings.index_path
    first, _ = build_index(fresh_settings, embedder, bundled_documents[:2])
    tmp = root / ".tmp-999-cafe"  # killed while writing
    tmp.mkdir()
    (tmp / "vectors.faiss").write_bytes(b"half")
    orphan = root / generations.generation_name(first.generation + 1)  # killed before CURRENT
    shutil.copytree(first.path, orphan)
    pointer_tmp = root / ".CURRENT.tmp-999"
    pointer_tmp.write_text("gen-000009\n")

    with generations.writer_lock(root):  # a writer at work: its files are not leftovers
        assert generations.clean_leftovers_if_idle(root) is False
    assert tmp.exists() and orphan.exists()

    assert generations.clean_leftovers_if_idle(root) is True
    assert not tmp.exists() and not orphan.exists() and not pointer_tmp.exists()
    assert Index.load(root).generation == first.generation


def _flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_pruning_keeps_the_newest_generation_that_verifies(
    bundled_documents, embedder, fresh_settings
):
    """Issue #20.2: build a good generation, corrupt the next two, prune to two: the good one
    is not deleted (each newer one fails its checks), and the service answers from it."""
    from index import generations

    root = fresh_settings.index_path
    good, _ = build_index(fresh_settings, embedder, bundled_documents[:3])
    for n in (4, 5):
        bad, _ = build_index(fresh_settings, embedder, bundled_documents[:n])
        _flip_a_byte(bad.path / "vectors.faiss")

    generations.prune(root, keep=2)

    assert good.path.is_dir()
    assert [g.name for g in generations.list_generations(root)] == [
        generations.generation_name(n) for n in (3, 2, 1)
    ]
    index = Index.load(root)
    assert index.generation == good.generation
    assert Engine(fresh_settings, index, embedder).ask(CHIRCHIK).citations[0].doc_id == UZBEK_DOC

    # Once a newer generation verifies again, the old good one is pruned as usual.
    repaired, _ = build_index(fresh_settings, embedder, bundled_documents[:2])
    generations.prune(root, keep=2)
    assert not good.path.exists()
    assert Index.load(root).generation == repaired.generation
