"""The FAISS side: build, persist and search the vector index.

Vectors carry stable 63-bit ids (IndexIDMap2), never positions, so deleting a
document cannot shift the ids of other chunks. Searches on a built index are
read-only; a change builds a new index and never touches the one readers use.

Three inner indexes, all inner product over normalised vectors and all wrapped in
IndexIDMap2 (so ids and `reconstruct` work the same for each):

- "flat": exact search (IndexFlatIP);
- "hnsw": a graph (IndexHNSWFlat); `efSearch` trades recall for speed;
- "ivf": an inverted file (IndexIVFFlat with a direct map); `nprobe` does the same.

"auto" picks flat up to AUTO_FLAT_MAX_VECTORS and HNSW above; the parameters and the
cut-off come from `eval/bench.py` (see README, "Benchmark"). Search parameters are
passed with every search (`faiss.SearchParameters*`), never set on a shared index.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from index.errors import IndexCorrupt

logger = logging.getLogger(__name__)

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf")

# Measured with `python eval/bench.py --sections scaling tuning` on 2 cores (README,
# "Benchmark"). Exact search is memory-bound: one thread spends 1.5 / 3 / 7.4 / 15.5 ms of CPU
# per query at 10k / 20k / 50k / 100k 384-d vectors (busy machine), ten times more at 1M.
# "auto" keeps it up to 20k vectors, where it costs ~3 ms, a small share of the 20 ms /ask
# budget next to embedding the question (~11 ms with ONNX), and uses HNSW above: at 100k it
# reaches recall@10 0.97-0.98 in ~2 ms, where IVF needs 256 of its 1,265 lists for 0.96 (3 ms).
AUTO_FLAT_MAX_VECTORS = 20_000

# For recall@10 >= 0.98 at 100k vectors: M=32, efConstruction=40 needs efSearch 128 (1.9 ms)
# and builds in 31 s; efConstruction 80 or 200 need the same efSearch and build in 67 s and
# 410 s; M=16 needs efSearch 512 (3.2 ms); M=48 (efC 80) needs 64 (1.2 ms) but builds in
# 147 s. Every update rebuilds the vector index, so the build time counts.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_MAX_EF_SEARCH = 4096

IVF_LISTS_PER_SQRT_N = 4
IVF_MIN_POINTS_PER_LIST = 39  # FAISS's own minimum for k-means training
IVF_TRAIN_POINTS_PER_LIST = 64

# efSearch / nprobe are calibrated on each build: the smallest value on a ladder (x1.5, x4/3,
# ... from HNSW_MIN_EF_SEARCH / IVF_MIN_NPROBE) whose recall@10 against exact search, for a
# seeded sample of the stored vectors used as queries (each without itself), reaches
# CALIBRATION_TARGET. Real questions sit a little further from the chunks than chunks from
# each other (SciFact: recall 0.02 lower at the same setting), so the target is above the
# 0.95 that questions must reach.
RECALL_TARGET = 0.95
CALIBRATION_TARGET = 0.98
CALIBRATION_QUERIES = 256
CALIBRATION_K = 10
HNSW_MIN_EF_SEARCH = 64
IVF_MIN_NPROBE = 8

# A filter allowing at most this many vectors is answered by exact search over them,
# whatever the index type: a graph or a few inverted lists hold too few of them.
EXACT_FILTER_MAX = 20_000


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """A concrete index type and its parameters, as recorded in the manifest."""

    kind: str
    params: dict[str, int] = field(default_factory=dict)


def choose(n: int, index_type: str = "auto") -> IndexSpec:
    """The concrete index for `n` vectors and its build parameters: `index_type`, or for
    "auto" the one the benchmark favours at that size. The search parameters (efSearch,
    nprobe) are calibrated by `build` on the vectors themselves."""
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r}: use one of {INDEX_TYPES}")
    if index_type == "auto":
        index_type = "flat" if n <= AUTO_FLAT_MAX_VECTORS else "hnsw"
    if index_type == "hnsw":
        return IndexSpec("hnsw", {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION})
    if index_type == "ivf":
        if n == 0:
            return IndexSpec("flat")  # nothing to train on
        return IndexSpec("ivf", {"nlist": ivf_lists(n)})
    return IndexSpec("flat")


def ivf_lists(n: int) -> int:
    """About 4 * sqrt(n) inverted lists, but few enough that each gets 39 training points."""
    return max(1, min(round(IVF_LISTS_PER_SQRT_N * math.sqrt(n)), n // IVF_MIN_POINTS_PER_LIST))


def build(
    vectors: np.ndarray,
    ids: np.ndarray,
    index_type: str = "flat",
    params: Mapping[str, int] | None = None,
    *,
    recall_target: float = CALIBRATION_TARGET,
) -> faiss.Index:
    """An inner-product index over normalised `vectors` (n, d) with the given int64 `ids`.

    `index_type` is "flat", "hnsw", "ivf" or "auto" (chosen by size, see `choose`);
    `params` overrides the chosen parameters (M, efConstruction, nlist) and, if given, the
    calibrated ones (efSearch, nprobe), which otherwise reach `recall_target` (recall@10
    against exact search, see `calibrate`). `describe(index)` says what was built."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be 2-D, got shape {vectors.shape}")
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if len(ids) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
    n, dim = vectors.shape
    spec = choose(n, index_type)
    values = {**spec.params, **(params or {})}
    if spec.kind == "hnsw":
        inner: faiss.Index = faiss.IndexHNSWFlat(dim, values["M"], faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = values["efConstruction"]
    elif spec.kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        inner = faiss.IndexIVFFlat(quantizer, dim, values["nlist"], faiss.METRIC_INNER_PRODUCT)
        inner.own_fields = True
        quantizer.this.disown()  # the IVF index owns and frees its quantizer
        inner.train(_training_sample(vectors, values["nlist"]))
        inner.set_direct_map_type(faiss.DirectMap.Array)  # reconstruct by position
    else:
        inner = faiss.IndexFlatIP(dim)
    index = faiss.IndexIDMap2(inner)
    index.own_fields = True
    inner.this.disown()
    if n:
        index.add_with_ids(vectors, ids)
    if spec.kind in ("hnsw", "ivf"):
        search = "efSearch" if spec.kind == "hnsw" else "nprobe"
        value = values.get(search) or calibrate(index, vectors, ids, recall_target)
        if spec.kind == "hnsw":
            inner.hnsw.efSearch = value
        else:
            inner.nprobe = value
    return index


def calibrate(
    index: faiss.Index,
    vectors: np.ndarray,
    ids: np.ndarray,
    target: float = CALIBRATION_TARGET,
) -> int:
    """The smallest efSearch (HNSW) or nprobe (IVF) on the ladder whose recall@10 against
    exact search reaches `target`, for a seeded sample of the stored vectors as queries."""
    inner = inner_index(index)
    is_hnsw = isinstance(inner, faiss.IndexHNSW)
    if is_hnsw:
        ladder = _ladder(HNSW_MIN_EF_SEARCH, HNSW_MAX_EF_SEARCH)
    else:
        ladder = _ladder(min(IVF_MIN_NPROBE, int(inner.nlist)), int(inner.nlist))
    n = len(vectors)
    k = min(CALIBRATION_K, n - 1)
    if k < 1:
        return ladder[0]
    rows = np.random.default_rng(0).choice(n, min(CALIBRATION_QUERIES, n), replace=False)
    queries = np.ascontiguousarray(vectors[rows])
    truth = _without_self(
        ids[faiss.knn(queries, vectors, k + 1, faiss.METRIC_INNER_PRODUCT)[1]], ids[rows], k
    )
    recall = 0.0
    for value in ladder:
        if is_hnsw:
            params: faiss.SearchParameters = faiss.SearchParametersHNSW()
            params.efSearch = value
        else:
            params = faiss.SearchParametersIVF()
            params.nprobe = value
        found = _without_self(index.search(queries, k + 1, params=params)[1], ids[rows], k)
        hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))
        recall = hits / truth.size
        if recall >= target:
            break
    logger.info(
        "%s: %s=%d gives recall@%d %.3f on %d stored vectors",
        "hnsw" if is_hnsw else "ivf",
        "efSearch" if is_hnsw else "nprobe",
        value,
        k,
        recall,
        len(rows),
    )
    return int(value)


def _ladder(low: int, high: int) -> list[int]:
    """low, 1.5x low, 2x low, 3x low, ... up to and including high."""
    values, value = [], float(low)
    while round(value) < high:
        values.append(round(value))
        value *= 3 / 2 if len(values) % 2 else 4 / 3
    return list(dict.fromkeys([*values, high]))


def _without_self(labels: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Each row of `labels` without its own id, cut to k."""
    return np.array([[i for i in row if i != o][:k] for row, o in zip(labels, own, strict=True)])


def _training_sample(vectors: np.ndarray, nlist: int) -> np.ndarray:
    """A seeded sample of 64 points per list: k-means quality saturates well before all n."""
    limit = nlist * IVF_TRAIN_POINTS_PER_LIST
    if len(vectors) <= limit:
        return vectors
    rows = np.sort(np.random.default_rng(0).choice(len(vectors), limit, replace=False))
    return np.ascontiguousarray(vectors[rows])


def inner_index(index: faiss.Index) -> faiss.Index:
    """The index inside the IndexIDMap2 wrapper, as its concrete class."""
    return faiss.downcast_index(faiss.downcast_index(index).index)


def describe(index: faiss.Index) -> IndexSpec:
    """The concrete type and parameters of a built or loaded index."""
    inner = inner_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        hnsw = inner.hnsw
        return IndexSpec(
            "hnsw",
            {
                "M": int(hnsw.nb_neighbors(1)),
                "efConstruction": int(hnsw.efConstruction),
                "efSearch": int(hnsw.efSearch),
            },
        )
    if isinstance(inner, faiss.IndexIVF):
        return IndexSpec("ivf", {"nlist": int(inner.nlist), "nprobe": int(inner.nprobe)})
    if isinstance(inner, faiss.IndexFlat):
        return IndexSpec("flat")
    raise IndexCorrupt(f"unsupported vector index {type(inner).__name__}")


def configure(index: faiss.Index, params: Mapping[str, int]) -> None:
    """Set the search parameters (efSearch, nprobe) of a freshly loaded index, before any
    reader sees it. Never call it on an index being searched."""
    inner = inner_index(index)
    if "efSearch" in params and isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = int(params["efSearch"])
    if "nprobe" in params and isinstance(inner, faiss.IndexIVF):
        inner.nprobe = int(params["nprobe"])


def write(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def read(path: Path, params: Mapping[str, int] | None = None) -> faiss.Index:
    """Load the index at `path`; `params` (the manifest's) sets its search parameters."""
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexCorrupt(f"vector file {path} is unreadable: {exc}") from exc
    if not isinstance(faiss.downcast_index(index), faiss.IndexIDMap2):
        raise IndexCorrupt(f"vector file {path} holds no id map; rebuild the index")
    describe(index)  # refuses an unsupported inner index
    if params:
        configure(index, params)
    return index


_thread_state = threading.local()


def limit_threads_of_this_thread(n: int) -> None:
    """Let FAISS use at most `n` OpenMP threads for calls from the calling thread (OpenMP's
    setting is per thread). A server answers one query per request thread; letting each
    search wake a second OpenMP thread on a busy 2-core machine measured 63 ms instead of
    1.5 ms for exact search over 10k vectors."""
    if getattr(_thread_state, "omp_threads", None) != n:
        faiss.omp_set_num_threads(n)
        _thread_state.omp_threads = n


def ids_of(index: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def reconstruct(index: faiss.Index, ids: list[int] | np.ndarray) -> np.ndarray:
    """The stored vectors for `ids` (used to reuse embeddings of unchanged documents)."""
    if len(ids) == 0:
        return np.zeros((0, index.d), dtype=np.float32)
    return index.reconstruct_batch(np.asarray(ids, dtype=np.int64)).astype(np.float32)


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    allowed_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; ids of -1 mark empty slots. `allowed_ids` restricts the
    search to those vectors (ids not in the index are ignored)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim == 1:
        queries = queries[None, :]
    k = max(1, min(k, index.ntotal)) if index.ntotal else 1
    inner = inner_index(index)
    if allowed_ids is None:
        return _search_inner(index, inner, queries, k, None, 1.0)
    allowed_ids = np.unique(np.asarray(allowed_ids, dtype=np.int64))
    if not isinstance(inner, faiss.IndexFlat) and len(allowed_ids) <= EXACT_FILTER_MAX:
        return _search_subset(index, queries, k, allowed_ids)
    selector = faiss.IDSelectorBatch(allowed_ids)
    fraction = min(1.0, len(allowed_ids) / max(1, index.ntotal))
    return _search_inner(index, inner, queries, k, selector, fraction)


def _search_inner(
    index: faiss.Index,
    inner: faiss.Index,
    queries: np.ndarray,
    k: int,
    selector: faiss.IDSelector | None,
    fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    """What IndexIDMap2.search does, minus its OpenMP loop over the n*k labels: for one
    query that loop wakes a second thread, and on a busy machine waiting for it costs a
    scheduler tick (measured: p50 20 ms instead of 0.6 ms for HNSW under load)."""
    translated = faiss.IDSelectorTranslated(index.id_map, selector) if selector else None
    # `params` points at `translated` and `selector`, alive in this frame until it returns.
    scores, positions = inner.search(queries, k, params=_parameters(inner, translated, fraction))
    id_map = faiss.rev_swig_ptr(index.id_map.data(), index.id_map.size())  # a view, no copy
    labels = np.where(positions >= 0, id_map[np.maximum(positions, 0)], -1)
    return scores, labels


def _parameters(
    inner: faiss.Index, selector: faiss.IDSelector | None, fraction: float
) -> faiss.SearchParameters | None:
    """Per-search parameters: the index's own efSearch / nprobe (set at build or load), read
    but never written. A filter passing a `fraction` of the vectors widens the HNSW beam so
    that enough of them are met on the way."""
    if isinstance(inner, faiss.IndexHNSW):
        params = faiss.SearchParametersHNSW()
        ef = inner.hnsw.efSearch
        params.efSearch = int(min(HNSW_MAX_EF_SEARCH, max(ef, math.ceil(ef / fraction))))
    elif isinstance(inner, faiss.IndexIVF):
        params = faiss.SearchParametersIVF()
        params.nprobe = int(inner.nprobe)
    elif selector is None:
        return None
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def _search_subset(
    index: faiss.Index, queries: np.ndarray, k: int, allowed_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k among `allowed_ids`, from their stored vectors."""
    try:
        subset = reconstruct(index, allowed_ids)
    except RuntimeError:  # some ids are not in the index: drop them (rarely needed)
        allowed_ids = allowed_ids[np.isin(allowed_ids, ids_of(index))]
        subset = reconstruct(index, allowed_ids)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    labels = np.full((len(queries), k), -1, dtype=np.int64)
    if len(allowed_ids) == 0:
        return scores, labels
    found, positions = faiss.knn(
        queries, subset, min(k, len(allowed_ids)), faiss.METRIC_INNER_PRODUCT
    )
    m = positions.shape[1]
    scores[:, :m] = found
    labels[:, :m] = np.where(positions >= 0, allowed_ids[np.maximum(positions, 0)], -1)
    return scores, labels
