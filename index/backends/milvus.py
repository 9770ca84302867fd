"""The Milvus backend: a collection in milvus-lite or a Milvus cluster.

One collection per index generation, named `<collection>_g<NNNNNN>` after it. Why not
write into one live collection: a reader must never see a half-written generation, and the
local parts of a generation (chunk store, BM25, manifest) are switched atomically by the
CURRENT pointer (index/generations.py). A new generation therefore writes a new collection
beside the live one; only when it is complete (flushed, counted, marked "complete") does
the local pointer switch, so the manifest that names the collection and the collection
itself always agree. Pruning a generation drops its collection. An alias switch would save
nothing here: the pointer switch already is the one atomic step.

A collection being written is marked `rag.state = building`. An interrupted write leaves it
so; the next write of the same generation (same number, model and dimension) resumes it:
chunks whose primary key (the chunk's stable 63-bit id) is present with the same content
hash are not embedded again, and upserts make a repeated batch harmless.

Chunk metadata (chunk and document id, offsets, title, date) are scalar fields, so filters
run in the database. The chunk text is stored with an analyzer and a BM25 function feeding a
sparse field where the server supports it (milvus-lite 3.2.2 does), so Milvus can rank by
full text itself (`search_text`).

Outages: Milvus failing a call (the server down or not answering, the collection missing)
raises StoreUnavailable, which the API answers with 503 `index_unavailable`; a request that
was malformed (a ParamError) is a bug and surfaces as one. Reads wait at most
READ_TIMEOUT_SECONDS. The client reconnects by itself when the server is back; a collection
the restarted server holds released (milvus-lite releases them all) is loaded again by the
first read that finds it so, or by `check_available` (the API's /ready).

pymilvus is imported here only, when a Milvus store is used (`pip install rag-cited[milvus]`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from index import generations
from index.backends.base import ChunkFilter, Entry, Resolver, StoreConfig, StoreDescription
from index.errors import IndexCorrupt, IndexMismatch, IndexStoreError, StoreUnavailable
from index.manifest import Manifest, read_manifest
from index.records import Chunk, content_hash

logger = logging.getLogger(__name__)

DEFAULT_COLLECTION = "rag_chunks"
STATE_BUILDING = "building"
STATE_COMPLETE = "complete"
# Rows per insert/upsert/query request: well under gRPC's 64 MiB message limit at 384-d.
REQUEST_ROWS = 1000
MAX_TEXT_BYTES = 65_535
MAX_TITLE_BYTES = 1024
MAX_DOC_ID_BYTES = 1024
# ROOT/.milvus-write-<collection>.json: a collection written for a generation that is not
# live yet (see MilvusBackend.settle).
WRITE_MARKER_PREFIX = ".milvus-write-"
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$")
# Longest wait for a read (search, query, describe): a server that does not answer is
# unavailable (503) well within the API's request timeout (30 s), not a request left hanging.
READ_TIMEOUT_SECONDS = 10.0
# The readiness probe's wait (`check_available`): an idle server answers in milliseconds.
PROBE_TIMEOUT_SECONDS = 2.0
# Milvus' error codes (merr) for a collection that is not there, or not loaded.
COLLECTION_NOT_FOUND = 100
COLLECTION_NOT_LOADED = 101
CONNECT_FAILED = 2  # pymilvus' own, for a server it cannot connect to

# pymilvus logs a warning for every query iterator on milvus-lite (no server timestamps).
logging.getLogger("pymilvus").setLevel(logging.ERROR)

_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://"))


def normalize_uri(uri: str) -> str:
    """A server address as given; a milvus-lite file as an absolute path (so a manifest
    naming it works from any working directory)."""
    return uri if is_remote(uri) else str(Path(uri).expanduser().resolve())


def collection_name(base: str, generation: int) -> str:
    check_collection_name(base)
    return f"{base}_g{generation:06d}"


def check_collection_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(
            f"invalid Milvus collection name {name!r}: use letters, digits and underscores, "
            "starting with a letter or underscore"
        )
    return name


def client(uri: str) -> Any:
    """One client per server (or milvus-lite file) per process: milvus-lite starts a server
    process for each file it opens."""
    uri = normalize_uri(uri)
    with _clients_lock:
        if uri not in _clients:
            try:
                from pymilvus import MilvusClient
            except ImportError as exc:  # pragma: no cover - depends on the installation
                raise IndexStoreError(
                    'the Milvus store needs pymilvus and milvus-lite: pip install -e ".[milvus]"'
                ) from exc
            if not is_remote(uri):
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
                # milvus-lite serves in this process and logs a traceback for each call it
                # does not implement (timestamp allocation); the client copes without it.
                logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            try:
                _clients[uri] = MilvusClient(uri)
            except Exception as exc:
                raise StoreUnavailable(f"cannot connect to Milvus at {uri}: {exc}") from exc
        return _clients[uri]


def _error_code(exc: BaseException) -> object:
    """The code of a pymilvus or gRPC error: Milvus' number, or a gRPC status."""
    code = getattr(exc, "code", None)
    return code() if callable(code) else code


def server_failure(exc: BaseException) -> bool:
    """Whether `exc` is Milvus failing (down, not answering, a collection missing), which may
    pass, rather than a request this code got wrong (a bad parameter or filter: a bug)."""
    import grpc
    from pymilvus.exceptions import DataNotMatchException, MilvusException, ParamError

    if isinstance(exc, grpc.RpcError):
        return _error_code(exc) != grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ParamError | DataNotMatchException):
        return False
    return isinstance(exc, MilvusException) and not exc.is_input_error


def failure_message(uri: str, collection: str, exc: BaseException) -> str:
    """One sentence for a `server_failure`, without pymilvus' internals (its log has them)."""
    import grpc

    code = _error_code(exc)
    if code == COLLECTION_NOT_FOUND:
        return f"Milvus collection {collection} at {uri} is missing"
    if code in (CONNECT_FAILED, grpc.StatusCode.UNAVAILABLE):
        reason = "cannot connect"
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED or "timeout" in str(exc).lower():
        reason = "no answer in time"
    else:
        reason = f"error {code.name if isinstance(code, grpc.StatusCode) else code}"
    return f"Milvus at {uri} is unavailable ({reason}); try again later"


@contextlib.contextmanager
def failures_as_unavailable(uri: str, collection: str) -> Iterator[None]:
    """Milvus failing a call in the block (`server_failure`) raises StoreUnavailable."""
    try:
        yield
    except Exception as exc:
        if not server_failure(exc):
            raise
        raise StoreUnavailable(failure_message(uri, collection, exc)) from exc


def _truncate(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def text_hash(text: str) -> str:
    return content_hash(text)[:32]


def filter_expression(where: ChunkFilter | None, allowed_ids: Sequence[int] | None) -> str:
    """A Milvus boolean expression for a metadata filter and/or an id list ("" for none)."""
    clauses = []
    if where is not None:
        if where.doc_ids is not None:
            clauses.append(f"doc_id in {json.dumps(list(where.doc_ids))}")
        if where.date_from is not None:
            clauses.append(f"date >= {json.dumps(where.date_from)}")
        if where.date_to is not None:
            clauses.append(f"date <= {json.dumps(where.date_to)}")
    if allowed_ids is not None:
        clauses.append(f"pk in {json.dumps([int(i) for i in allowed_ids])}")
    return " and ".join(f"({c})" for c in clauses)


def _schema(dimension: int, full_text: bool, description: str) -> Any:
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    schema = MilvusClient.create_schema(
        auto_id=False, enable_dynamic_field=False, description=description
    )
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("chunk_id", DataType.VARCHAR, max_length=MAX_DOC_ID_BYTES + 32)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_DOC_ID_BYTES)
    schema.add_field("ordinal", DataType.INT64)
    schema.add_field("start", DataType.INT64)
    schema.add_field("end_offset", DataType.INT64)
    schema.add_field("title", DataType.VARCHAR, max_length=MAX_TITLE_BYTES)
    schema.add_field("date", DataType.VARCHAR, max_length=32, nullable=True)
    schema.add_field("text_hash", DataType.VARCHAR, max_length=64)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES, enable_analyzer=full_text)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dimension)
    if full_text:
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
    return schema


def vector_index(uri: str, index_type: str) -> tuple[str, dict[str, int], dict[str, int]]:
    """(Milvus index type, build params, search params). "flat" and "auto" are exact (FLAT),
    so results equal FAISS's exact search; "hnsw" and "ivf" map to Milvus' HNSW and IVF_FLAT
    (for a cluster; milvus-lite was tested with FLAT only)."""
    if index_type == "hnsw":
        return "HNSW", {"M": 32, "efConstruction": 40}, {"ef": 128}
    if index_type == "ivf":
        return "IVF_FLAT", {"nlist": 1024}, {"nprobe": 32}
    return "FLAT", {}, {}


def create_collection(
    milvus: Any,
    name: str,
    *,
    uri: str,
    model: str,
    dimension: int,
    generation: int,
    index_type: str,
) -> bool:
    """Create an empty collection marked "building"; True if it has full-text search.
    Tries with the BM25 function first and falls back to dense-only where the server refuses."""
    kind, params, _ = vector_index(uri, index_type)
    properties = {
        "rag.model": model,
        "rag.dimension": str(dimension),
        "rag.generation": str(generation),
        "rag.index_type": index_type,
        "rag.state": STATE_BUILDING,
    }
    description = f"rag-cited chunks, generation {generation}, model {model}"
    for full_text in (True, False):
        index_params = milvus.prepare_index_params()
        index_params.add_index("vector", index_type=kind, metric_type="IP", params=params)
        if full_text:
            index_params.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        try:
            milvus.create_collection(
                name,
                schema=_schema(dimension, full_text, description),
                index_params=index_params,
                properties=properties,
                consistency_level="Strong",
            )
        except Exception as exc:
            if not full_text:
                raise IndexStoreError(f"cannot create Milvus collection {name}: {exc}") from exc
            logger.warning("this Milvus has no full-text (BM25) search (%s); BM25 stays local", exc)
            if milvus.has_collection(name):
                milvus.drop_collection(name)
            continue
        milvus.load_collection(name)
        return full_text
    raise AssertionError("unreachable")


class MilvusStore:
    kind = "milvus"

    def __init__(self, uri: str, collection: str):
        self.uri = normalize_uri(uri)
        self.collection = collection
        self.milvus = client(self.uri)
        with self._failures():
            if not self.milvus.has_collection(collection, timeout=READ_TIMEOUT_SECONDS):
                raise IndexCorrupt(f"Milvus collection {collection} at {self.uri} is missing")
            info = self.milvus.describe_collection(collection, timeout=READ_TIMEOUT_SECONDS)
        self.properties: dict[str, str] = dict(info.get("properties") or {})
        fields = {f["name"]: f for f in info["fields"]}
        try:
            self.dimension = int(fields["vector"]["params"]["dim"])
        except KeyError as exc:
            raise IndexCorrupt(f"Milvus collection {collection} has no vector field") from exc
        self.full_text = "sparse" in fields
        self.model = self.properties.get("rag.model")
        self.index_type = self.properties.get("rag.index_type", "flat")
        self._search_params = vector_index(self.uri, self.index_type)[2]
        with self._failures():
            self.milvus.load_collection(collection)  # no timeout: a large one takes its time

    def _failures(self) -> contextlib.AbstractContextManager[None]:
        return failures_as_unavailable(self.uri, self.collection)

    def _read(self, method: str, **kwargs: Any) -> Any:
        """`self.milvus.<method>` on the collection, waiting at most READ_TIMEOUT_SECONDS.
        A collection the server holds released (milvus-lite, restarted, releases them all;
        a cluster loads its own again) is loaded again and the call made once more."""
        call = getattr(self.milvus, method)
        with self._failures():
            try:
                return call(self.collection, timeout=READ_TIMEOUT_SECONDS, **kwargs)
            except Exception as exc:
                if _error_code(exc) != COLLECTION_NOT_LOADED:
                    raise
            self._load_again()
            return call(self.collection, timeout=READ_TIMEOUT_SECONDS, **kwargs)

    def _load_again(self) -> None:
        logger.warning(
            "Milvus collection %s at %s is not loaded (the server restarted?): loading it",
            self.collection,
            self.uri,
        )
        self.milvus.load_collection(self.collection)

    def check_available(self) -> None:
        """Raise StoreUnavailable unless the server says, within PROBE_TIMEOUT_SECONDS, that
        it holds the collection loaded; one it holds released is loaded again."""
        from pymilvus.client.types import LoadState

        with self._failures():
            found = self.milvus.get_load_state(self.collection, timeout=PROBE_TIMEOUT_SECONDS)
            state = found["state"]
            if state == LoadState.NotExist:
                raise StoreUnavailable(
                    f"Milvus collection {self.collection} at {self.uri} is missing"
                )
            if state == LoadState.Loading:
                raise StoreUnavailable(
                    f"Milvus collection {self.collection} at {self.uri} is being loaded"
                )
            if state != LoadState.Loaded:
                self._load_again()

    def check(self, *, model: str, dimension: int, count: int | None = None) -> None:
        """The manifest rules, against the collection's own description."""
        where = f"Milvus collection {self.collection} at {self.uri}"
        if self.properties.get("rag.state") != STATE_COMPLETE:
            raise IndexCorrupt(f"{where} was never completed")
        if self.model != model:
            raise IndexMismatch(f"{where} was built with model {self.model!r}, not {model!r}")
        if self.dimension != dimension:
            raise IndexMismatch(
                f"{where} holds {self.dimension}-dimensional vectors, not {dimension}"
            )
        if count is not None and self.count() != count:
            raise IndexCorrupt(f"{where} holds {self.count()} vectors, not {count}")

    # writing
    def add(self, entries: Sequence[Entry], vectors: np.ndarray) -> None:
        if len(entries) != len(vectors):
            raise ValueError(f"{len(entries)} entries but {len(vectors)} vectors")
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(entries), REQUEST_ROWS):
            rows = [
                _row(e, v)
                for e, v in zip(
                    entries[start : start + REQUEST_ROWS],
                    vectors[start : start + REQUEST_ROWS],
                    strict=True,
                )
            ]
            with self._failures():
                self.milvus.upsert(self.collection, rows)

    def delete(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), REQUEST_ROWS):
            with self._failures():
                self.milvus.delete(self.collection, ids=ids[start : start + REQUEST_ROWS])

    def present(self, ids: Sequence[int], hashes: Sequence[str]) -> set[int]:
        """The ids among `ids` already stored with the same text hash."""
        wanted = dict(zip((int(i) for i in ids), hashes, strict=True))
        found: set[int] = set()
        keys = list(wanted)
        for start in range(0, len(keys), REQUEST_ROWS):
            rows = self._read(
                "query", ids=keys[start : start + REQUEST_ROWS], output_fields=["pk", "text_hash"]
            )
            found.update(int(r["pk"]) for r in rows if wanted.get(int(r["pk"])) == r["text_hash"])
        return found

    def all_ids(self) -> Iterable[int]:
        iterator = self.milvus.query_iterator(
            self.collection, batch_size=REQUEST_ROWS, filter="", output_fields=["pk"]
        )
        try:
            while batch := iterator.next():
                yield from (int(r["pk"]) for r in batch)
        finally:
            iterator.close()

    def finish(self, expected: int, wanted: Callable[[], set[int]], index_type: str) -> None:
        """Drop rows a resumed build no longer wants, flush, check and mark complete."""
        if self.count() != expected:
            keep = wanted()
            stale = [i for i in self.all_ids() if i not in keep]
            logger.info("removing %d stale chunks from %s", len(stale), self.collection)
            self.delete(stale)
        with self._failures():
            self.milvus.flush(self.collection)
        if self.count() != expected:
            raise IndexCorrupt(
                f"Milvus collection {self.collection} holds {self.count()} vectors after "
                f"writing, not {expected}"
            )
        with self._failures():
            self.milvus.alter_collection_properties(
                self.collection, {"rag.state": STATE_COMPLETE, "rag.index_type": index_type}
            )
        self.properties["rag.state"] = STATE_COMPLETE
        self.index_type = index_type

    # reading
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        where: ChunkFilter | None = None,
        allowed_ids: Sequence[int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        k = max(1, k)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        labels = np.full((len(queries), k), -1, dtype=np.int64)
        if allowed_ids is not None and len(allowed_ids) == 0:
            return scores, labels
        if where is not None and not where.empty:
            allowed_ids = None  # the database filters on the metadata itself
        results = self._read(
            "search",
            data=queries.tolist(),
            anns_field="vector",
            limit=k,
            filter=filter_expression(where, allowed_ids),
            search_params={"metric_type": "IP", "params": self._search_params},
            output_fields=[],
        )
        for row, hits in enumerate(results):
            for col, hit in enumerate(list(hits)[:k]):
                scores[row, col] = float(hit["distance"])
                labels[row, col] = int(hit["pk"] if "pk" in hit else hit["id"])
        return scores, labels

    def search_text(
        self,
        query: str,
        k: int,
        *,
        where: ChunkFilter | None = None,
        allowed_ids: Sequence[int] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-k (id, BM25 score) by Milvus' own full-text search, best first."""
        if not self.full_text:
            raise IndexStoreError(f"Milvus collection {self.collection} has no full-text field")
        if not query.strip() or (allowed_ids is not None and len(allowed_ids) == 0):
            return []
        results = self._read(
            "search",
            data=[query],
            anns_field="sparse",
            limit=max(1, k),
            filter=filter_expression(where, allowed_ids),
            search_params={"metric_type": "BM25"},
            output_fields=[],
        )
        # milvus-lite 3.2.2 reports BM25 scores negated (best = most negative); a cluster
        # reports them positive. The magnitude is the score either way.
        hits = [
            (int(h["pk"] if "pk" in h else h["id"]), abs(float(h["distance"]))) for h in results[0]
        ]
        return [(i, s) for i, s in hits if s > 0]

    def text_scores(self, query: str, ids: Sequence[int]) -> np.ndarray:
        """Milvus BM25 scores of `ids` for `query` (0 for those sharing no term with it)."""
        found = dict(self.search_text(query, len(ids), allowed_ids=ids)) if len(ids) else {}
        return np.array([found.get(int(i), 0.0) for i in ids], dtype=np.float32)

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        ids = [int(i) for i in ids]
        found: dict[int, list[float]] = {}
        for start in range(0, len(ids), REQUEST_ROWS):
            rows = self._read(
                "query", ids=ids[start : start + REQUEST_ROWS], output_fields=["vector"]
            )
            found.update((int(r["pk"]), r["vector"]) for r in rows)
        missing = [i for i in ids if i not in found]
        if missing:
            raise KeyError(f"{len(missing)} vector ids not in {self.collection}, e.g. {missing[0]}")
        if not ids:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.array([found[i] for i in ids], dtype=np.float32)

    def scores(self, query: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Fetches the vectors and scores them here. A search filtered to `pk in ids` would
        return just the scores, but measured slower on milvus-lite (SciFact, 100 candidates:
        /ask p50 397 ms against 266 ms), the filter being checked against every row."""
        if not len(ids):
            return np.zeros(0, dtype=np.float32)
        return self.vectors(ids) @ np.asarray(query, dtype=np.float32)

    def count(self) -> int:
        rows = self._read("query", filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def describe(self) -> StoreDescription:
        kind, params, search = vector_index(self.uri, self.index_type)
        return StoreDescription(
            kind=self.kind,
            dimension=self.dimension,
            count=self.count(),
            model=self.model,
            index_type="flat" if kind == "FLAT" else self.index_type,
            index_params={**params, **search},
            location={"uri": self.uri, "collection": self.collection},
            full_text=self.full_text,
        )

    def drop(self) -> None:
        with self._failures():
            self.milvus.drop_collection(self.collection)

    def close(self) -> None:
        pass


def _row(entry: Entry, vector: np.ndarray) -> dict[str, Any]:
    c = entry.chunk
    if len(c.text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise ValueError(
            f"chunk {c.id} has more than {MAX_TEXT_BYTES} bytes of text, Milvus' limit; "
            "use smaller chunks"
        )
    if len(c.doc_id.encode("utf-8")) > MAX_DOC_ID_BYTES:
        raise ValueError(f"document id {c.doc_id[:80]!r}... is too long for Milvus")
    return {
        "pk": c.vector_id,
        "chunk_id": c.id,
        "doc_id": c.doc_id,
        "ordinal": c.ordinal,
        "start": c.start,
        "end_offset": c.end,
        "title": _truncate(entry.title, MAX_TITLE_BYTES),
        "date": entry.date,
        "text_hash": text_hash(c.text),
        "text": c.text,
        "vector": vector.tolist(),
    }


class MilvusBuilder:
    """Writes a new generation's collection, resuming an interrupted write of it. Given the
    index directory `root`, a marker there records the write from `start` until `done`."""

    kind = "milvus"

    def __init__(
        self,
        uri: str,
        base_name: str,
        generation: int,
        *,
        model: str,
        dimension: int,
        index_type: str = "auto",
        root: Path | None = None,
    ):
        self.uri = normalize_uri(uri)
        self.name = collection_name(base_name, generation)
        self.generation = generation
        self.model = model
        self.dimension = dimension
        self.index_type = index_type
        self.root = root
        self.write = MilvusWrite(self.uri, self.name, generation)
        self.resumed = False
        self._store: MilvusStore | None = None

    @property
    def store(self) -> MilvusStore:
        if self._store is None:
            raise RuntimeError("MilvusBuilder.start() first")
        return self._store

    def start(self) -> None:
        if self.root is not None:
            record_write(self.root, self.write)
        milvus = client(self.uri)
        with failures_as_unavailable(self.uri, self.name):
            if milvus.has_collection(self.name):
                props = dict(milvus.describe_collection(self.name).get("properties") or {})
                wanted = {"rag.model": self.model, "rag.dimension": str(self.dimension)}
                if all(props.get(k) == v for k, v in wanted.items()):
                    self.resumed = True
                    logger.info("resuming the interrupted write of Milvus collection %s", self.name)
                else:
                    logger.info("dropping Milvus collection %s (another model)", self.name)
                    milvus.drop_collection(self.name)
            if not self.resumed:
                create_collection(
                    milvus,
                    self.name,
                    uri=self.uri,
                    model=self.model,
                    dimension=self.dimension,
                    generation=self.generation,
                    index_type=self.index_type,
                )
            else:
                milvus.alter_collection_properties(self.name, {"rag.state": STATE_BUILDING})
        self._store = _open_unchecked(self.uri, self.name)

    def add(self, entries: Sequence[Entry], vectors: np.ndarray) -> None:
        self.store.add(entries, vectors)

    def present(self, chunks: Sequence[Chunk]) -> set[int]:
        if not self.resumed or not chunks:
            return set()
        return self.store.present(
            [c.vector_id for c in chunks], [text_hash(c.text) for c in chunks]
        )

    def finish(
        self, directory: Path, n_chunks: int, wanted: Callable[[], set[int]]
    ) -> StoreDescription:
        self.store.finish(n_chunks, wanted, self.index_type)
        return self.store.describe()

    def done(self) -> None:
        if self.root is not None:
            _write_marker(self.root, self.name).unlink(missing_ok=True)


def _open_unchecked(uri: str, name: str) -> MilvusStore:
    return MilvusStore(uri, name)


def drop_collection(uri: str, name: str) -> None:
    milvus = client(uri)
    with failures_as_unavailable(normalize_uri(uri), name):
        if milvus.has_collection(name):
            milvus.drop_collection(name)
            logger.info("dropped Milvus collection %s", name)


# Recorded writes: a collection is created outside the index directory, so a crash between
# creating it and the generation going live would leave it for nobody to drop. The marker,
# written before the collection, says which one to drop (or resume).
@dataclass(frozen=True, slots=True)
class MilvusWrite:
    """A Milvus collection written for generation `generation`, recorded before it is created
    and forgotten once the generation is live."""

    uri: str
    collection: str
    generation: int


def _write_marker(root: Path, collection: str) -> Path:
    return root / f"{WRITE_MARKER_PREFIX}{collection}.json"


def record_write(root: Path, write: MilvusWrite) -> None:
    """Note `write` in `root` (atomically, durably) before its collection is created."""
    marker = _write_marker(root, write.collection)
    tmp = root / f".tmp-{os.getpid()}{marker.name}"  # what a crash leaves, clean_leftovers removes
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(
            {"uri": write.uri, "collection": write.collection, "generation": write.generation}, f
        )
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, marker)
    generations.fsync_dir(root)


def recorded_writes(root: Path) -> list[tuple[Path, MilvusWrite | None]]:
    """The Milvus writes noted in `root`, each with its marker (None: unreadable)."""
    found: list[tuple[Path, MilvusWrite | None]] = []
    for marker in sorted(root.glob(f"{WRITE_MARKER_PREFIX}*.json")):
        try:
            data = json.loads(marker.read_text(encoding="utf-8"))
            write = MilvusWrite(str(data["uri"]), str(data["collection"]), int(data["generation"]))
        except (OSError, ValueError, KeyError, TypeError):
            write = None
        found.append((marker, write))
    return found


def went_live(root: Path, write: MilvusWrite) -> bool:
    """Whether `write`'s generation is in place with its collection (or, its manifest being
    unreadable, may be: its collection is never dropped on a guess)."""
    path = root / generations.generation_name(write.generation)
    if not path.is_dir():
        return False
    try:
        manifest = read_manifest(path)
    except IndexCorrupt:
        return True
    return (
        manifest.store == MilvusBackend.name
        and manifest.store_location.get("collection") == write.collection
    )


class MilvusBackend:
    name = "milvus"
    files: tuple[str, ...] = ()  # the vectors live in the collection

    def check_config(self, config: StoreConfig) -> None:
        if not config.uri:
            raise ValueError("the Milvus store needs a uri (--milvus-uri)")

    def location(self, uri: str | None, index_root: Path) -> str | None:
        """As given, else a milvus-lite file beside the generations."""
        return normalize_uri(uri or str(Path(index_root) / "milvus.db"))

    def shared_by_processes(self, uri: str | None) -> bool:
        """A server, yes; a milvus-lite file is opened by one process only."""
        return uri is not None and is_remote(uri)

    def open(
        self, path: Path, manifest: Manifest, resolve: Resolver, *, uri: str | None = None
    ) -> MilvusStore:
        uri = uri or manifest.store_location.get("uri")
        collection = manifest.store_location.get("collection")
        if not uri or not collection:
            raise IndexCorrupt(f"the manifest of {path} names no Milvus uri and collection")
        store = MilvusStore(uri, collection)
        store.check(model=manifest.model, dimension=manifest.dimension, count=manifest.n_chunks)
        return store

    def builder(
        self, root: Path, generation: int, config: StoreConfig, *, model: str, dimension: int
    ) -> MilvusBuilder:
        assert config.uri is not None  # check_config
        return MilvusBuilder(
            config.uri,
            config.collection,
            generation,
            model=model,
            dimension=dimension,
            index_type=config.index_type,
            root=root,
        )

    def settle(self, root: Path, builder: object) -> None:
        """Forget the recorded writes that went live; drop the collections of the
        interrupted ones `builder` does not resume (a FAISS build, which takes the same
        generation number, resumes none of them)."""
        resumed = builder.write if isinstance(builder, MilvusBuilder) else None
        for marker, write in recorded_writes(root):
            if write is not None and write == resumed:
                continue
            if write is not None and not went_live(root, write):
                logger.info(
                    "dropping Milvus collection %s, left by an interrupted write of generation %d",
                    write.collection,
                    write.generation,
                )
                try:
                    drop_collection(write.uri, write.collection)
                except Exception as exc:  # kept, and its marker: the next writer tries again
                    logger.warning("could not drop Milvus collection %s: %s", write.collection, exc)
                    continue
            marker.unlink(missing_ok=True)

    def drop(self, manifest: Manifest, *, uri: str | None = None) -> None:
        uri = uri or manifest.store_location.get("uri")
        name = manifest.store_location.get("collection")
        if uri and name:
            try:
                drop_collection(uri, name)
            except Exception as exc:  # the local files go anyway; say what was left
                logger.warning("could not drop Milvus collection %s: %s", name, exc)


BACKEND = MilvusBackend()
