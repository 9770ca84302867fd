"""manifest.json: what built an index generation, and the checksums that prove it intact."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from index.errors import IndexCorrupt

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


class FileEntry(BaseModel):
    sha256: str
    bytes: int


class Manifest(BaseModel):
    format_version: int = FORMAT_VERSION
    generation: int = 0
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    model: str
    dimension: int
    normalized: bool = True
    metric: str = "inner_product"
    index_type: str = "flat"
    index_params: dict[str, int] = Field(
        default_factory=dict,
        description="Parameters of the vector index: M, efConstruction and efSearch for hnsw; "
        "nlist and nprobe for ivf; none for flat.",
    )
    tokenizer: str
    chunking: dict[str, Any]
    corpus_hash: str
    n_documents: int
    n_chunks: int
    files: dict[str, FileEntry] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    build_seconds: float | None = None
    source: str | None = Field(
        default=None,
        description="The folder `rag index` last made this index hold (resolved path); null "
        "for an index written only through the API.",
    )
    store: str = Field(
        default="faiss", description="Where the vectors live: faiss (a file here) or milvus."
    )
    store_location: dict[str, str] = Field(
        default_factory=dict,
        description="For milvus: the uri it was written to and the generation's collection.",
    )
    store_full_text: bool = Field(
        default=False, description="Whether the vector store can rank by BM25 itself."
    )


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_NAME
    try:
        return Manifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as exc:
        raise IndexCorrupt(f"{path} is missing") from exc
    except (json.JSONDecodeError, UnicodeDecodeError, ValidationError) as exc:
        raise IndexCorrupt(f"{path} is not a valid manifest: {exc}") from exc


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_files(directory: Path, manifest: Manifest, *, verify: bool = True) -> None:
    """Raise IndexCorrupt unless every file `manifest` lists is in `directory` with its size
    and, with `verify`, its checksum."""
    for name, entry in manifest.files.items():
        file = directory / name
        if not file.is_file():
            raise IndexCorrupt(f"{file} is missing")
        if file.stat().st_size != entry.bytes:
            raise IndexCorrupt(
                f"{file} has {file.stat().st_size} bytes, the manifest says {entry.bytes}"
            )
        if verify and sha256_file(file) != entry.sha256:
            raise IndexCorrupt(f"{file} does not match its checksum in the manifest")


def verifies(directory: Path) -> bool:
    """Whether the generation in `directory` has a readable manifest of this format and every
    file it lists, intact (what a reader checks before serving it)."""
    try:
        manifest = read_manifest(directory)
        if manifest.format_version != FORMAT_VERSION:
            return False
        check_files(directory, manifest)
    except (IndexCorrupt, OSError):
        return False
    return True
