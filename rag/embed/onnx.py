"""An ONNX Runtime encoder for sentence-transformers models, and the one-off export behind it.

At query time this module needs only onnxruntime, tokenizers (the model's tokenizer.json) and
numpy: a process serving with the ONNX backend never imports torch, which is most of a cold
start with the PyTorch backend. The export (torch.onnx) runs once per model and is cached
under `Settings.model_cache_dir`, keyed by a fingerprint of the model's files (not its path, so
every virtual environment with the same model shares one export); entries of older export
versions, or whose model is gone from disk, are pruned when a new one is written;
the int8 variant is a dynamic quantisation (onnxruntime.quantization) of the exported graph.

Supported models: a Transformer followed by mean or CLS pooling (and Normalize), the shape of
all-MiniLM-L6-v2 and most sentence-transformers models. Others are refused with a message
saying to use the torch backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from index import generations
from rag.embed.embedding import ModelNotAvailable

logger = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx", "onnx-int8")
EXPORT_VERSION = 2  # bump when the exported graph changes, so old cache entries are ignored
ONNX_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
_SMALL_FILES = ("config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json")


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """What the encoder needs from a sentence-transformers model directory."""

    directory: Path
    pooling: str  # "mean" or "cls"
    dimension: int
    max_seq_length: int
    pad_token: str


def model_layout(directory: Path) -> ModelLayout:
    """Read the module stack of the model at `directory`; refuse what the encoder cannot do."""
    modules_file = directory / "modules.json"
    if not (directory / "tokenizer.json").is_file():
        raise ModelNotAvailable(
            f"the ONNX backend needs {directory / 'tokenizer.json'}; "
            "use RAG_EMBEDDING_BACKEND=torch for this model"
        )
    modules = json.loads(modules_file.read_text()) if modules_file.is_file() else []
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds and (kinds[:2] != ["Transformer", "Pooling"] or set(kinds[2:]) - {"Normalize"}):
        raise ModelNotAvailable(
            f"the ONNX backend supports Transformer + Pooling (+ Normalize) models, not {kinds}; "
            "use RAG_EMBEDDING_BACKEND=torch for this model"
        )
    pooling, dimension = "mean", None
    if kinds:
        pooling_config = json.loads((directory / modules[1]["path"] / "config.json").read_text())
        dimension = pooling_config.get("word_embedding_dimension")
        if pooling_config.get("pooling_mode_cls_token"):
            pooling = "cls"
        elif not pooling_config.get("pooling_mode_mean_tokens"):
            raise ModelNotAvailable(
                "the ONNX backend supports mean or CLS pooling; use RAG_EMBEDDING_BACKEND=torch"
            )
    config = json.loads((directory / "config.json").read_text())
    dimension = int(dimension or config["hidden_size"])
    max_len = _json(directory / "sentence_bert_config.json").get("max_seq_length")
    max_len = int(max_len or config.get("max_position_embeddings", 512))
    pad = _json(directory / "tokenizer_config.json").get("pad_token") or "[PAD]"
    if isinstance(pad, dict):
        pad = pad.get("content", "[PAD]")
    return ModelLayout(directory, pooling, dimension, max_len, str(pad))


def local_model_dir(path_or_name: str) -> Path:
    """The local directory of a model given by path, or by a name in the Hugging Face cache."""
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return path.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path_or_name, local_files_only=True))
    except Exception as exc:
        raise ModelNotAvailable(
            f"cannot find model {path_or_name!r} on this machine for the ONNX backend ({exc})"
        ) from exc


_SAMPLE = 1 << 20  # bytes read from each end of a weights file for the fingerprint


def fingerprint(directory: Path) -> str:
    """A key for the model's content: its small files, and the size and first and last MiB of
    each weights file (hashing 90 MB of weights on every start costs up to 0.6 s; the export
    records their full sha256 in export.json). Not the path: a model installed in two virtual
    environments has one key."""
    h = hashlib.sha256(f"v{EXPORT_VERSION}".encode())
    for name in _SMALL_FILES:
        file = directory / name
        if file.is_file():
            h.update(name.encode() + b"\0" + file.read_bytes())
    for file in sorted(directory.glob("*")):
        if file.suffix in (".safetensors", ".bin") and file.is_file():
            size = file.stat().st_size
            h.update(f"{file.name}:{size}".encode())
            with open(file, "rb") as f:
                h.update(f.read(_SAMPLE))
                f.seek(max(0, size - _SAMPLE))
                h.update(f.read(_SAMPLE))
    return h.hexdigest()[:20]


def prune_cache(onnx_dir: Path, keep: Path) -> list[Path]:
    """Remove cached exports of an older export version, or whose model is no longer on disk
    (a removed virtual environment); `keep` stays whatever it holds."""
    import shutil

    removed = []
    for entry in onnx_dir.iterdir() if onnx_dir.is_dir() else ():
        if entry == keep or not entry.is_dir():
            continue
        info = _json(entry / "export.json")
        sources = [Path(m) for m in info.get("models", [info.get("model", "")]) if m]
        if info.get("version") == EXPORT_VERSION and any(m.is_dir() for m in sources):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        logger.info("removed %d stale ONNX export(s) from %s", len(removed), onnx_dir)
    return removed


def ensure_exported(directory: Path, cache_dir: Path, *, int8: bool) -> Path:
    """The path of the ONNX graph (fp32, or int8-quantised) for the model at `directory`,
    exporting it first if it is not cached. Safe when several processes start at once."""
    onnx_dir = Path(cache_dir).expanduser() / "onnx"
    target = onnx_dir / f"{directory.name}-{fingerprint(directory)}"
    path = target / (INT8_FILE if int8 else ONNX_FILE)
    if path.is_file():
        _record_user(target, directory)
        return path
    target.mkdir(parents=True, exist_ok=True)
    with generations.file_lock(target / ".lock"):
        if not (target / ONNX_FILE).is_file():
            logger.info(
                "preparing the embedding model for ONNX Runtime, once (about 20 s): %s", target
            )
            with _atomic_path(target / ONNX_FILE) as tmp:
                export_onnx(directory, tmp)
            info = {
                "version": EXPORT_VERSION,
                "models": [str(directory)],
                "weights_sha256": _weights_sha256(directory),
            }
            _write_json(target / "export.json", info)
            prune_cache(onnx_dir, keep=target)
        if int8 and not path.is_file():
            with _atomic_path(path) as tmp:
                quantize_int8(target / ONNX_FILE, tmp)
    return path


def _record_user(target: Path, directory: Path) -> None:
    """Note another copy of the model using this export, so pruning keeps it while any is."""
    info = _json(target / "export.json")
    models = info.get("models", [])
    if info and str(directory) not in models:
        with contextlib.suppress(OSError):
            _write_json(target / "export.json", info | {"models": [*models, str(directory)]})


def _write_json(path: Path, value: dict) -> None:
    with _atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value), encoding="utf-8")


def export_onnx(directory: Path, out: Path) -> None:
    """Export the transformer of the model at `directory` to ONNX (last hidden state; the
    pooling runs in numpy). Imports torch and transformers: done once per model."""
    import torch
    from transformers import AutoModel

    # Eager attention: the SDPA path decides on the mask's content while tracing.
    base = AutoModel.from_pretrained(str(directory), attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if getattr(base.config, "type_vocab_size", 0) in (0, None):
        names = names[:2]

    class Hidden(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    ids = torch.full((2, 8), 100, dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    mask[1, 5:] = 0  # a padded row, so nothing is specialised on an all-ones mask
    example = (ids, mask, torch.zeros_like(ids))[: len(names)]
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shapes it treats as constant
        torch.onnx.export(
            Hidden(base),
            example,
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )


def quantize_int8(source: Path, out: Path) -> None:
    """Dynamic int8 quantisation of the MatMul weights, per channel with a reduced range:
    cosine to the float model 0.98-0.99 on sample sentences, where the per-tensor default
    (which also quantises the embedding table) gave 0.91-0.97."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs every tensor on the root logger
    try:
        quantize_dynamic(
            str(source),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            op_types_to_quantize=["MatMul"],
        )
    finally:
        root.setLevel(level)


class OnnxEncoder:
    """Mean (or CLS) pooled, L2-normalised float32 embeddings with ONNX Runtime.

    `lazy`: create the ONNX Runtime session (about 0.4 s for the float model) on the first
    `encode`, not here: a server that embeds questions on another encoder may never use it."""

    def __init__(
        self,
        layout: ModelLayout,
        onnx_path: Path,
        *,
        threads: int | None = None,
        lazy: bool = False,
    ):
        from tokenizers import Tokenizer

        self.layout = layout
        self.onnx_path = onnx_path
        self.threads = threads
        self.dimension = layout.dimension
        self.max_seq_length = layout.max_seq_length
        self.tokenizer = Tokenizer.from_file(str(layout.directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(layout.max_seq_length)
        self.tokenizer.no_padding()
        pad_id = self.tokenizer.token_to_id(layout.pad_token)
        self.pad_id = 0 if pad_id is None else int(pad_id)
        self._session = None
        self._session_lock = threading.Lock()
        if not lazy:
            self._load()

    @property
    def loaded(self) -> bool:
        """Whether the ONNX Runtime session exists yet."""
        return self._session is not None

    def _load(self):
        """The session, created once (by the first caller, when several threads race)."""
        session = self._session
        if session is not None:
            return session
        with self._session_lock:
            if self._session is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads or 0  # 0: ORT's default, all cores
                options.inter_op_num_threads = 1
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                session = ort.InferenceSession(
                    str(self.onnx_path), options, providers=["CPUExecutionProvider"]
                )
                self.input_names = [i.name for i in session.get_inputs()]
                self._session = session  # last: the unlocked check above sees it whole
            return self._session

    @property
    def session(self):
        return self._load()

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Embed `texts`, batched longest first so that batches pad little."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        starts = range(0, len(order), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="Batches", unit="batch")
        for s in starts:
            rows = order[s : s + batch_size]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: list) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            n = len(e.ids)
            ids[row, :n] = e.ids
            mask[row, :n] = 1
            types[row, :n] = e.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        session = self._load()
        hidden = session.run(None, {name: feeds[name] for name in self.input_names})[0]
        if self.layout.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def load_encoder(
    path_or_name: str,
    cache_dir: Path,
    *,
    int8: bool,
    threads: int | None = None,
    lazy: bool = False,
) -> OnnxEncoder:
    """The ONNX encoder for a sentence-transformers model (exported on first use; with
    `lazy`, its session created on first use too)."""
    try:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise ModelNotAvailable(
            f"the ONNX backend needs onnxruntime and tokenizers ({exc}): pip install "
            "onnxruntime tokenizers, or set RAG_EMBEDDING_BACKEND=torch"
        ) from exc
    directory = local_model_dir(path_or_name)
    layout = model_layout(directory)
    try:
        path = ensure_exported(directory, cache_dir, int8=int8)
    except ImportError as exc:  # the one-off export needs torch, transformers and onnx
        raise ModelNotAvailable(
            f"exporting the model to ONNX needs torch, transformers and onnx ({exc}); "
            "or set RAG_EMBEDDING_BACKEND=torch"
        ) from exc
    return OnnxEncoder(layout, path, threads=threads, lazy=lazy)


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _weights_sha256(directory: Path) -> dict[str, str]:
    out = {}
    for file in sorted(directory.glob("*")):
        if file.suffix in (".safetensors", ".bin") and file.is_file():
            h = hashlib.sha256()
            with open(file, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            out[file.name] = h.hexdigest()
    return out


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed over it (after fsync) if the block succeeds."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def torch_imported() -> bool:
    """Whether this process has imported torch (the ONNX backend never should)."""
    return "torch" in sys.modules
