"""The ONNX Runtime backends: the same vectors as sentence-transformers (int8: close ones),
an index built with torch answered with ONNX query vectors, and no torch when serving."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from rag.embed.embedding import Embedder, ModelNotAvailable  # noqa: E402
from rag.embed.onnx import model_layout  # noqa: E402

CHIRCHIK = "What minerals does the Chirchik center target?"


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def onnx_embedder(onnx_cache):
    return Embedder(backend="onnx", cache_dir=onnx_cache, threads=1)


@pytest.fixture(scope="session")
def int8_embedder(onnx_cache, onnx_embedder):  # after the fp32 export it quantises
    return Embedder(backend="onnx-int8", cache_dir=onnx_cache, threads=1)


@pytest.fixture(scope="session")
def sample_texts(bundled_documents):
    texts = [CHIRCHIK, "x", "Ünïcödé naïve café, 東京 and émojis 🙂", "word " * 400]
    for doc in bundled_documents:
        texts += [doc.text[i : i + 600] for i in range(0, min(len(doc.text), 3000), 600)]
    return texts


def test_onnx_vectors_equal_torch_vectors(embedder, onnx_embedder, sample_texts):
    torch_vectors = embedder.encode(sample_texts)
    onnx_vectors = onnx_embedder.encode(sample_texts)
    assert onnx_vectors.shape == torch_vectors.shape and onnx_vectors.dtype == np.float32
    assert np.abs(onnx_vectors - torch_vectors).max() < 1e-4
    assert np.allclose(np.linalg.norm(onnx_vectors, axis=1), 1.0, atol=1e-5)
    assert onnx_embedder.name == embedder.name  # same model: indexes are interchangeable
    assert onnx_embedder.dimension == 384 and onnx_embedder.max_seq_length == 256


def test_onnx_tokenisation_matches_sentence_transformers(embedder, onnx_embedder, sample_texts):
    features = embedder.model.tokenize(sample_texts[:4])
    for row, text in enumerate(sample_texts[:4]):
        ids = onnx_embedder._onnx.tokenizer.encode(text).ids
        mask = features["attention_mask"][row]
        expected = [int(i) for i, m in zip(features["input_ids"][row], mask, strict=True) if m]
        assert ids == expected


def test_int8_vectors_are_close(embedder, int8_embedder, sample_texts):
    torch_vectors = embedder.encode(sample_texts)
    int8_vectors = int8_embedder.encode(sample_texts)
    cosines = np.sum(torch_vectors * int8_vectors, axis=1)
    assert cosines.min() > 0.95
    assert cosines.mean() > 0.98


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_a_torch_built_index_answers_onnx_queries(
    bundled_settings, onnx_embedder, int8_embedder, backend
):
    from rag.engine import Engine

    chosen = onnx_embedder if backend == "onnx" else int8_embedder
    engine = Engine.load(bundled_settings, embedder=chosen)
    response = engine.ask(CHIRCHIK)
    assert response.answerable
    assert "molybdenum" in response.answer.lower()
    assert response.citations[0].doc_id == "001_747dad745748a0c8"


def test_the_export_is_cached(onnx_cache, onnx_embedder):
    exported = list(onnx_cache.glob("onnx/*/model.onnx"))
    assert len(exported) == 1
    before = exported[0].stat().st_mtime_ns
    again = Embedder(backend="onnx", cache_dir=onnx_cache)
    assert exported[0].stat().st_mtime_ns == before
    assert again.encode_query("tungsten").shape == (384,)
    meta = json.loads((exported[0].parent / "export.json").read_text())
    assert len(meta["weights_sha256"]["model.safetensors"]) == 64
    assert not list(onnx_cache.glob("onnx/*/*.tmp"))  # no temporary file left behind


def test_a_copy_of_the_model_elsewhere_shares_the_export(onnx_cache, onnx_embedder, tmp_path):
    """Another virtual environment holds the same model at another path: no second export."""
    import shutil

    from rag.embed.onnx import ensure_exported

    source = onnx_embedder._onnx.layout.directory
    copy = tmp_path / "venv2" / source.name
    shutil.copytree(source, copy)
    first = ensure_exported(source, onnx_cache, int8=False)
    assert ensure_exported(copy, onnx_cache, int8=False) == first
    assert len(list(onnx_cache.glob("onnx/*/model.onnx"))) == 1
    meta = json.loads((first.parent / "export.json").read_text())
    assert str(copy) in meta["models"]


def test_stale_exports_are_pruned(onnx_cache, onnx_embedder, tmp_path):
    from rag.embed.onnx import prune_cache

    onnx_dir = onnx_cache / "onnx"
    kept = next(onnx_dir.glob("*/model.onnx")).parent
    old = onnx_dir / "model-oldversion"  # written by export version 1, keyed by path
    old.mkdir()
    (old / "model.onnx").write_bytes(b"x" * 10)
    (old / "export.json").write_text(json.dumps({"model": str(kept)}))
    gone = onnx_dir / "model-gone"  # its virtual environment was removed
    gone.mkdir()
    (gone / "export.json").write_text(json.dumps({"version": 2, "models": [str(tmp_path / "no")]}))
    assert sorted(prune_cache(onnx_dir, keep=kept)) == sorted([old, gone])
    assert kept.is_dir() and not old.exists() and not gone.exists()


def test_serving_with_onnx_never_imports_torch(bundled_settings, onnx_cache, onnx_embedder):
    script = textwrap.dedent(
        f"""
        import sys
        from api.state import Service
        from rag.config import Settings

        settings = Settings(
            index_path={str(bundled_settings.index_path)!r},
            embedding_backend="onnx",
            model_cache_dir={str(onnx_cache)!r},
        )
        service = Service(settings)
        service.start()
        response = service.engine.ask({CHIRCHIK!r})
        service.close()
        assert response.answerable, response
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in
                        ("torch", "sentence_transformers", "transformers"))
        print(loaded)
        assert not loaded, loaded
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_unsupported_model_layouts_are_refused(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    stack = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense")]
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(stack)
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelNotAvailable, match="RAG_EMBEDDING_BACKEND=torch"):
        model_layout(tmp_path)
    with pytest.raises(ModelNotAvailable, match="tokenizer.json"):
        model_layout(tmp_path / "missing")


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        Embedder(backend="tensorrt")


def test_questions_can_be_embedded_on_another_backend(
    bundled_settings, onnx_cache, onnx_embedder, int8_embedder, sample_texts
):
    from rag.engine import Engine

    settings = bundled_settings.model_copy(
        update={
            "embedding_backend": "onnx",
            "query_embedding_backend": "onnx-int8",
            "model_cache_dir": onnx_cache,
        }
    )
    mixed = Embedder.from_settings(settings, queries=True)
    assert (mixed.backend, mixed.query_backend) == ("onnx", "onnx-int8")
    # documents (and citation checks) on the float model, questions on the int8 one
    assert np.abs(mixed.encode(sample_texts) - onnx_embedder.encode(sample_texts)).max() < 1e-6
    int8_vector = int8_embedder.encode([CHIRCHIK])[0]
    assert np.abs(mixed.encode_query(CHIRCHIK) - int8_vector).max() < 1e-6
    assert np.abs(int8_vector - onnx_embedder.encode([CHIRCHIK])[0]).max() > 1e-4  # it differs
    mixed.start_batching(max_batch=4, max_wait_ms=1.0)
    try:
        batched = mixed.encode_query("Which metals does the Chirchik center look for?")
    finally:
        mixed.stop_batching()
    expected = int8_embedder.encode(["Which metals does the Chirchik center look for?"])[0]
    assert np.abs(batched - expected).max() < 1e-5
    # not for building indexes; auto means int8 questions for the onnx backend only
    assert Embedder.from_settings(settings).query_backend == "onnx"
    auto = settings.model_copy(update={"query_embedding_backend": "auto"})
    assert Embedder.from_settings(auto, queries=True).query_backend == "onnx-int8"
    same = auto.model_copy(update={"embedding_backend": "onnx-int8"})
    assert Embedder.from_settings(same, queries=True)._queries is None
    answer = Engine.load(bundled_settings, embedder=mixed).ask(CHIRCHIK)
    assert answer.answerable and answer.citations


def _live_sessions() -> set[int]:
    import gc

    import onnxruntime as ort

    return {id(o) for o in gc.get_objects() if type(o) is ort.InferenceSession}


def test_the_float_session_of_a_question_embedder_loads_on_first_use(
    onnx_cache, onnx_embedder, int8_embedder, sample_texts
):
    """Issue #20.7: a server embeds questions on int8; the float session (documents, citation
    checks) is created only when something is first embedded on it, not at start."""
    before = _live_sessions()
    mixed = Embedder(backend="onnx", query_backend="onnx-int8", cache_dir=onnx_cache, threads=1)
    assert len(_live_sessions() - before) == 1  # the int8 one only
    question = mixed.encode_query(CHIRCHIK)
    assert len(_live_sessions() - before) == 1
    assert np.abs(question - int8_embedder.encode([CHIRCHIK])[0]).max() < 1e-6
    documents = mixed.encode(sample_texts[:4])  # now the float one
    assert len(_live_sessions() - before) == 2
    assert np.abs(documents - onnx_embedder.encode(sample_texts[:4])).max() < 1e-6
    mixed.encode(sample_texts[4:6])
    assert len(_live_sessions() - before) == 2  # once
    # Building an index embeds documents only: its one session loads at once, as before.
    before = _live_sessions()
    builder = Embedder(backend="onnx", cache_dir=onnx_cache, threads=1)
    assert len(_live_sessions() - before) == 1 and builder._queries is None
