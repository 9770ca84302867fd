"""Shared fixtures: the real bundled model, loaded once, and a real index of the bundled corpus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.config import BUNDLED_CORPUS, Settings  # noqa: E402


def _own_tqdm_lock_after_fork() -> None:
    # tqdm's write lock includes a multiprocessing semaphore shared with forked children;
    # a child killed with SIGKILL while holding it (the crash tests do that) would
    # deadlock this process at its next progress bar. Children get a lock of their own.
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


os.register_at_fork(after_in_child=_own_tqdm_lock_after_fork)

CHIRCHIK = "What minerals does the Chirchik center target?"
UZBEK_DOC = "001_747dad745748a0c8"


@pytest.fixture(scope="session")
def embedder():
    from rag.embed.embedding import Embedder

    return Embedder()


@pytest.fixture(scope="session")
def bundled_documents():
    from rag.ingest.documents import load_corpus

    return load_corpus(BUNDLED_CORPUS)


@pytest.fixture(scope="session")
def bundled_settings(tmp_path_factory, embedder, bundled_documents) -> Settings:
    """Settings pointing at a freshly built index of the bundled corpus (built once)."""
    from rag.indexing import build_index

    settings = Settings(index_path=tmp_path_factory.mktemp("bundled") / "index")
    build_index(settings, embedder, bundled_documents)
    return settings


@pytest.fixture(scope="session")
def engine(bundled_settings, embedder):
    from rag.engine import Engine

    return Engine.load(bundled_settings, embedder=embedder)


@pytest.fixture(scope="session")
def sentence_engine(engine):
    """The bundled-corpus engine answering with the sentence method (no reader)."""
    from rag.evaluation.retrieval import engine_variant

    return engine_variant(engine, answer_mode="sentence")


@pytest.fixture()
def fresh_settings(tmp_path) -> Settings:
    """Settings with an empty index directory of the test's own."""
    return Settings(index_path=tmp_path / "index")


def write_corpus(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


# Both vector stores (issue #8): tests that take `any_engine` or `fresh_store_settings` run
# once on FAISS and once on Milvus (milvus-lite, one .db file for the whole session).
STORES = ["faiss", "milvus"]


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("milvus") / "milvus.db")


def milvus_test_settings(index_path: Path, uri: str, **overrides) -> Settings:
    """Settings for a Milvus-backed index with a collection name of its own."""
    import uuid

    collection = f"t_{uuid.uuid4().hex[:12]}"
    return Settings(
        index_path=index_path,
        store="milvus",
        milvus_uri=uri,
        milvus_collection=collection,
        **overrides,
    )


@pytest.fixture(scope="session")
def milvus_settings(tmp_path_factory, embedder, bundled_documents, milvus_uri) -> Settings:
    """Like `bundled_settings`, with the vectors in a milvus-lite collection."""
    from rag.indexing import build_index

    settings = milvus_test_settings(tmp_path_factory.mktemp("bundled-milvus") / "index", milvus_uri)
    build_index(settings, embedder, bundled_documents)
    return settings


@pytest.fixture(scope="session")
def milvus_engine(milvus_settings, embedder):
    from rag.engine import Engine

    return Engine.load(milvus_settings, embedder=embedder)


@pytest.fixture(scope="session", params=STORES)
def any_engine(request):
    """The bundled-corpus engine on each vector store."""
    return request.getfixturevalue("engine" if request.param == "faiss" else "milvus_engine")


@pytest.fixture(params=STORES)
def fresh_store_settings(request, tmp_path) -> Settings:
    """`fresh_settings` on each vector store."""
    if request.param == "faiss":
        return Settings(index_path=tmp_path / "index")
    return milvus_test_settings(tmp_path / "index", request.getfixturevalue("milvus_uri"))
