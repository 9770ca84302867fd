"""The extractive reader: given a question and a few contexts, the best answer span in them
and how strongly the contexts answer at all.

The shipped model (`models/reader.onnx`, trained by `eval/train_reader.py`, card beside it) is
one ONNX file holding the network and, in its metadata, the tokenizer and the window settings
it was trained with. It outputs start and end logits per token ([CLS] stands for "no answer")
and an answerability logit. A Hugging Face extractive-QA model directory also loads (with
torch and transformers); it has no answerability head, so its span margin stands in.

Scores, per question, across all windows of all contexts (as in SQuAD 2.0 post-processing):
- a span's score is its start plus end logit;
- `margin`: the best span's score minus the lowest "no answer" score of any window;
- `answerable`: the highest answerability probability of any window.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.answer.windows import Window, encode_windows, load_tokenizer

logger = logging.getLogger(__name__)

DEFAULT_READER = Path(__file__).parent / "models" / "reader.onnx"

TOKENIZER_KEY = "rag.tokenizer"
CONFIG_KEY = "rag.reader_config"

MAX_ANSWER_TOKENS = 30  # SQuAD's answers are nearly all shorter
N_BEST = 20  # start and end candidates per window
N_SPANS = 20  # spans kept per question, best first (for choosing by answer type)
CACHE_WINDOWS = 4096  # windows whose outputs are kept (about 2 kB each at 128 tokens)


class ReaderUnavailable(RuntimeError):
    """The reader file is missing or cannot be loaded."""


@dataclass(frozen=True, slots=True)
class Span:
    context: int  # index of the context it was read from
    start: int  # character offsets in that context
    end: int
    text: str
    score: float  # start + end logit


@dataclass(frozen=True, slots=True)
class Reading:
    best: Span | None
    margin: float
    answerable: float
    # per context: its best span (or None) and its own answerability probability
    context_best: list[Span | None] = field(default_factory=list)
    context_answerable: list[float] = field(default_factory=list)
    n_windows: int = 0
    n_tokens: int = 0
    # the best spans across all windows, best first, no two alike (`best` is the first)
    spans: list[Span] = field(default_factory=list)


def set_metadata(proto, tokenizer_json: str, config: dict) -> None:
    """Store the tokenizer and the window settings in an ONNX model (`onnx.ModelProto`)."""
    del proto.metadata_props[:]
    for key, value in ((TOKENIZER_KEY, tokenizer_json), (CONFIG_KEY, json.dumps(config))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def pad(windows: Sequence[Window], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """input_ids, attention_mask and token_type_ids of a batch, padded to its longest."""
    width = max(len(w.input_ids) for w in windows)
    ids = np.full((len(windows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), width), dtype=np.int64)
    types = np.zeros((len(windows), width), dtype=np.int64)
    for row, w in enumerate(windows):
        n = len(w.input_ids)
        ids[row, :n] = w.input_ids
        mask[row, :n] = 1
        types[row, :n] = w.type_ids
    return ids, mask, types


def best_window_spans(
    window: Window, start: np.ndarray, end: np.ndarray, *, max_tokens: int = MAX_ANSWER_TOKENS
) -> list[tuple[float, int, int]]:
    """(score, first token, last token) of the window's best context spans, best first."""
    ctx = np.array(
        [o is not None for o in window.offsets] + [False] * (len(start) - len(window.offsets))
    )
    s = np.where(ctx, start, -np.inf)
    e = np.where(ctx, end, -np.inf)
    starts = np.argsort(-s)[:N_BEST]
    ends = np.argsort(-e)[:N_BEST]
    out = []
    for i in starts:
        if not ctx[i]:
            continue
        for j in ends:
            if ctx[j] and i <= j < i + max_tokens:
                out.append((float(s[i] + e[j]), int(i), int(j)))
    out.sort(reverse=True)
    return out


class WindowCache:
    """The network's outputs for the windows read last, keyed by their token ids: the same
    window always gives the same outputs (each is read alone), so a question asked again,
    or another question reading the same window, costs no network run. Thread-safe, LRU."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[bytes, tuple] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: bytes):
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: bytes, outputs: tuple) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = outputs
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x > -30 else 0.0


class Reader:
    """A loaded reader. Safe to share between threads (ONNX Runtime sessions are)."""

    def __init__(
        self,
        backend,
        tokenizer,
        *,
        max_length: int,
        stride: int,
        name: str,
        cache_size: int = CACHE_WINDOWS,
    ):
        self.backend = backend
        self.cache = WindowCache(cache_size)
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.stride = stride
        self.name = name
        pad_id = tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id

    @classmethod
    def load(
        cls,
        path: Path | str | None = None,
        *,
        threads: int | None = None,
        cache_size: int = CACHE_WINDOWS,
    ) -> Reader:
        """The reader at `path` (default: the shipped model): an ONNX file made by
        eval/train_reader.py, or a Hugging Face extractive-QA model directory.
        `cache_size`: windows whose outputs are kept (0: none)."""
        path = Path(path) if path else DEFAULT_READER
        if path.is_dir():
            return cls._load_hf(path, cache_size)
        if not path.is_file():
            raise ReaderUnavailable(f"no reader model at {path}")
        return _load_onnx(str(path.resolve()), threads, cache_size)

    @classmethod
    def _load_hf(cls, directory: Path, cache_size: int) -> Reader:
        try:
            backend = _TransformersBackend(directory)
        except (ImportError, OSError, ValueError) as exc:
            raise ReaderUnavailable(f"cannot load a reader from {directory}: {exc}") from exc
        tokenizer = load_tokenizer(str(directory / "tokenizer.json"))
        return cls(
            backend,
            tokenizer,
            max_length=384,
            stride=128,
            name=directory.name,
            cache_size=cache_size,
        )

    def windows(self, question: str, context: str) -> list[Window]:
        return encode_windows(
            self.tokenizer, question, context, max_length=self.max_length, stride=self.stride
        )

    def read(
        self, question: str, contexts: Sequence[str], *, max_answer_tokens: int = MAX_ANSWER_TOKENS
    ) -> Reading:
        """Read every context (in windows) and return the best span across them.

        Each window is read alone: an int8 model quantises its activations with one scale per
        input tensor, so a window read in a batch scores differently from the same window
        read alone (logits moved by up to 1.7 here), and an answer would depend on what else
        was read. On CPU it costs the same."""
        windows: list[Window] = []
        owner: list[int] = []
        for c, context in enumerate(contexts):
            for w in self.windows(question, context):
                windows.append(w)
                owner.append(c)
        if not windows:
            return Reading(None, -math.inf, 0.0)
        best_of: list[Span | None] = [None] * len(contexts)
        context_p = [0.0] * len(contexts)
        null = math.inf
        ranked: dict[tuple[int, int, int], Span] = {}
        for w, c in zip(windows, owner, strict=True):
            start, end, answerable = self._run(w)
            null = min(null, float(start[0] + end[0]))
            p = sigmoid(answerable) if answerable is not None else None
            spans = best_window_spans(w, start, end, max_tokens=max_answer_tokens)
            for score, i, j in spans[:N_SPANS]:
                lo, hi = w.offsets[i][0], w.offsets[j][1]
                known = ranked.get((c, lo, hi))
                if known is None or score > known.score:
                    ranked[(c, lo, hi)] = Span(c, lo, hi, contexts[c][lo:hi], score)
            if spans:
                score, i, j = spans[0]
                lo, hi = w.offsets[i][0], w.offsets[j][1]
                if best_of[c] is None or score > best_of[c].score:
                    best_of[c] = Span(c, lo, hi, contexts[c][lo:hi], score)
                if p is None:
                    p = sigmoid(score - float(start[0] + end[0]))
            context_p[c] = max(context_p[c], p or 0.0)
        found = [s for s in best_of if s is not None]
        best = max(found, key=lambda s: s.score) if found else None
        return Reading(
            best=best,
            margin=(best.score - null) if best else -math.inf,
            answerable=max(context_p),
            context_best=best_of,
            context_answerable=context_p,
            n_windows=len(windows),
            n_tokens=sum(len(w.input_ids) for w in windows),
            spans=sorted(ranked.values(), key=lambda s: -s.score)[:N_SPANS],
        )

    def _run(self, window: Window) -> tuple[np.ndarray, np.ndarray, float | None]:
        """Start logits, end logits and the answerability logit of one window."""
        key = None
        if self.cache.size > 0:  # no key to build, nor lock to take, with the cache off
            key = np.asarray([*window.input_ids, -1, *window.type_ids], dtype=np.int32).tobytes()
            found = self.cache.get(key)
            if found is not None:
                return found
        starts, ends, answerable = self.backend.run(*pad([window], self.pad_id))
        out = (starts[0], ends[0], None if answerable is None else float(answerable[0]))
        if key is not None:
            for a in out[:2]:
                a.setflags(write=False)  # shared by every later reading of this window
            self.cache.put(key, out)
        return out


class _OnnxBackend:
    def __init__(self, path: str, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        # No spin-waiting between ops: concurrent requests share the cores, and spinning
        # threads would burn the CPU other requests need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.meta = self.session.get_modelmeta().custom_metadata_map
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, ids, mask, types):
        out = self.session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        return out[0], out[1], out[2] if len(out) > 2 else None


class _TransformersBackend:
    def __init__(self, directory: Path):
        import torch
        from transformers import AutoModelForQuestionAnswering

        self.torch = torch
        self.model = AutoModelForQuestionAnswering.from_pretrained(str(directory)).eval()
        self.lock = threading.Lock()

    def run(self, ids, mask, types):
        t = self.torch
        with self.lock, t.inference_mode():
            out = self.model(
                input_ids=t.from_numpy(ids),
                attention_mask=t.from_numpy(mask),
                token_type_ids=t.from_numpy(types),
            )
        big = (1 - mask) * -1e4
        return out.start_logits.numpy() + big, out.end_logits.numpy() + big, None


@lru_cache(maxsize=4)
def _load_onnx(path: str, threads: int | None, cache_size: int = CACHE_WINDOWS) -> Reader:
    try:
        backend = _OnnxBackend(path, threads)
        config = json.loads(backend.meta[CONFIG_KEY])
        tokenizer = load_tokenizer(backend.meta[TOKENIZER_KEY])
    except ImportError as exc:
        raise ReaderUnavailable(f"the reader needs onnxruntime and tokenizers ({exc})") from exc
    except (KeyError, ValueError) as exc:
        raise ReaderUnavailable(
            f"{path} is not a reader model made by train_reader: {exc}"
        ) from exc
    except Exception as exc:  # onnxruntime raises its own types for corrupt files
        raise ReaderUnavailable(f"cannot load the reader model {path}: {exc}") from exc
    logger.info("loaded reader %s (windows of %d tokens)", Path(path).name, config["max_length"])
    return Reader(
        backend,
        tokenizer,
        max_length=config["max_length"],
        stride=config["stride"],
        name=Path(path).name,
        cache_size=cache_size,
    )
