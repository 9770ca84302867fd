"""The `rag` command line: build an index, ask, search and inspect it."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import click
from pydantic import BaseModel

from rag.config import Settings, StoreKind
from rag.evaluation.options import eval_options

logger = logging.getLogger("rag")


def _settings(ctx: click.Context, index_path: Path | None = None, **overrides: Any) -> Settings:
    settings: Settings = ctx.obj["settings"]
    updates = {k: v for k, v in overrides.items() if v is not None}
    if index_path is not None:
        updates["index_path"] = index_path
    return settings.model_copy(update=updates) if updates else settings


def friendly_errors(func: Callable) -> Callable:
    """Expected failures become one sentence and a non-zero exit, not a traceback."""
    from rag import errors

    expected = (
        errors.IndexStoreError,
        errors.InvalidQuestion,
        errors.CorpusError,
        errors.EmptyCorpus,
        errors.ModelNotAvailable,
        errors.ReaderUnavailable,
    )

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except expected as exc:
            raise click.ClickException(str(exc)) from exc
        except errors.UnknownChunk as exc:
            raise click.ClickException(f"no chunk with id {exc.args[0]!r}") from exc
        except errors.UnknownDocument as exc:
            raise click.ClickException(
                f"no chunk or document with id {exc.args[0]!r} (see `rag docs`)"
            ) from exc

    return wrapper


def emit_json(value: BaseModel | list[BaseModel] | dict) -> None:
    if isinstance(value, BaseModel):
        click.echo(value.model_dump_json(indent=2))
    elif isinstance(value, list):
        click.echo(
            json.dumps([v.model_dump(mode="json") for v in value], indent=2, ensure_ascii=False)
        )
    else:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))


index_option = click.option(
    "--index",
    "index_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Index directory (default: $RAG_INDEX_PATH or .rag/index).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's models).")


def store_options(func: Callable) -> Callable:
    """--store, --milvus-uri, --milvus-collection (see README, "Scale-out on Milvus")."""
    func = click.option(
        "--milvus-collection",
        default=None,
        help="Base name of the Milvus collections (default rag_chunks; generation N is "
        "<name>_g<N>).",
    )(func)
    func = click.option(
        "--milvus-uri",
        default=None,
        help="milvus-lite file (./milvus.db) or http://host:19530 (Milvus standalone/cluster).",
    )(func)
    func = click.option(
        "--store",
        type=click.Choice(get_args(StoreKind)),
        default=None,
        help="Vector store: faiss (embedded, default) or milvus. Readers follow the index.",
    )(func)
    return func


k_option = click.option(
    "--k", "k", type=int, default=None, help="Passages to retrieve (default 5)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Ask questions of a folder of articles and get answers cited to the exact passage.

    \b
    Examples:
      rag index                      # index the bundled corpus
      rag index ~/articles           # index your own folder
      rag ask "What minerals does the Chirchik center target?"
      rag search "rare metals" --k 3
      rag explain "What minerals does the Chirchik center target?" --gold 001_747dad745748a0c8
      rag show 001_747dad745748a0c8:3
    """
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # The one-off ONNX export takes ~20 s: say so even when quiet (one INFO line).
    logging.getLogger("rag.embed.onnx").setLevel(min(level, logging.INFO))
    ctx.ensure_object(dict)
    ctx.obj["settings"] = Settings()


@main.command("index")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@index_option
@click.option("--model", default=None, help="sentence-transformers model name or path.")
@click.option("--chunk-tokens", type=int, default=None, help="Maximum tokens per chunk.")
@click.option("--chunk-overlap", type=int, default=None, help="Overlap between chunks, in tokens.")
@click.option("--rebuild", is_flag=True, help="Re-embed everything instead of reusing vectors.")
@click.option(
    "--replace",
    is_flag=True,
    help="Let DIRECTORY replace an index that holds another folder's documents (or documents "
    "added through the API).",
)
@click.option(
    "-v", "--verbose", "list_skipped", is_flag=True, help="List the skipped files and why."
)
@store_options
@json_option
@click.pass_context
@friendly_errors
def index_command(
    ctx: click.Context,
    directory: Path | None,
    index_path: Path | None,
    model: str | None,
    chunk_tokens: int | None,
    chunk_overlap: int | None,
    rebuild: bool,
    replace: bool,
    list_skipped: bool,
    as_json: bool,
    store: str | None = None,
    milvus_uri: str | None = None,
    milvus_collection: str | None = None,
) -> None:
    """Build or update the index of DIRECTORY (default: the bundled corpus).

    Reads .txt .md .html .htm .jsonl (text in any encoding), .pdf (with page numbers) and
    .docx. The index then holds exactly the documents of DIRECTORY; unchanged documents
    keep their embeddings. An index that holds another folder's documents is left alone
    unless --replace says to replace them. Files that cannot be read are skipped and
    counted by reason; -v lists them.
    """
    from index import IndexCorrupt, IndexMismatch, IndexNotFound
    from rag.embed.embedding import Embedder
    from rag.indexing import build_index, load_index
    from rag.ingest.documents import Skipped, iter_corpus
    from rag.models import SkippedFile

    settings = _settings(
        ctx,
        index_path,
        model=model,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
        store=store,
        milvus_uri=milvus_uri,
        milvus_collection=milvus_collection,
    )
    directory = directory or settings.corpus_dir
    # Streamed: documents are read, chunked, embedded and written batch by batch.
    skipped: list[Skipped] = []  # filled while the documents are read
    documents = iter_corpus(directory, max_file_bytes=settings.max_file_bytes, skipped=skipped)
    base = None
    try:
        base = load_index(settings)
    except IndexNotFound:
        base = None
    except (IndexCorrupt, IndexMismatch) as exc:
        logger.warning("not reusing the existing index: %s", exc)
    if base is not None and not replace:
        _refuse_other_folder(base.manifest, directory, settings.index_path)
    if rebuild:
        base = None
    embedder = Embedder.from_settings(settings)
    _, report = build_index(
        settings, embedder, documents, base=base, replace_all=True, source=directory
    )
    listed = [SkippedFile(path=f.path, reason=f.reason.value, detail=f.detail) for f in skipped]
    report = report.model_copy(update={"skipped": listed})
    if as_json:
        emit_json(report)
        return
    click.echo(
        f"Indexed {report.n_documents} documents ({report.n_chunks} chunks) from {directory} "
        f"into {report.path} in {report.seconds:.1f}s: {report.added} new, {report.changed} "
        f"changed, {report.unchanged} unchanged, {report.removed} removed; "
        f"{report.embedded_chunks} chunks embedded; {report.size_bytes / 1024:.0f} KiB; "
        f"{skipped_summary(skipped)}."
    )
    if list_skipped or ctx.find_root().params.get("verbose"):
        for file in skipped:
            click.echo(f"  skipped {file.path}: {file.detail}")


def skipped_summary(skipped) -> str:
    """ "skipped 3 files (2 unsupported file type, 1 no text layer)", or "no file skipped"."""
    from rag.ingest.documents import skipped_counts

    if not skipped:
        return "no file skipped"
    counts = ", ".join(f"{n} {reason}" for reason, n in skipped_counts(skipped).items())
    return f"skipped {len(skipped)} file{'s' if len(skipped) != 1 else ''} ({counts})"


def _human(key: str, value: Any) -> str:
    """A stats value for a person: sizes in KiB/MiB, seconds rounded, dicts as k=v."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    if isinstance(value, float) and "seconds" in key:
        return f"{value:.1f} s"
    if isinstance(value, int) and "bytes" in key:
        return f"{value / 1024:.0f} KiB" if value < 1 << 20 else f"{value / (1 << 20):.1f} MiB"
    return "-" if value is None else str(value)


def _refuse_other_folder(manifest, directory: Path, index_path: Path) -> None:
    """`rag index DIR` makes the index hold exactly DIR's documents: refuse when it holds
    another folder's (or the API's) rather than silently removing them."""
    if manifest.n_documents == 0 or manifest.source == str(directory.resolve()):
        return
    held = (
        f"documents from {manifest.source}"
        if manifest.source
        else "documents added through the API"
    )
    raise click.ClickException(
        f"the index at {index_path} holds {manifest.n_documents} {held}; indexing {directory} "
        "would remove them. Pass --replace to replace them, or --index NEW_PATH for a "
        "separate index."
    )


def _engine(settings: Settings):
    from rag.engine import Engine

    return Engine.load(settings)


@main.command()
@click.argument("question")
@k_option
@index_option
@click.option(
    "--reader",
    "reader_path",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="Another reader: an ONNX file made by eval/train_reader.py, or a Hugging Face "
    "extractive-QA model directory (default: the one shipped in the package).",
)
@click.option(
    "--answer-mode",
    type=click.Choice(["reader", "sentence"]),
    default=None,
    help="reader (default): a short span read by the trained reader; sentence: the sentence "
    "that best covers the question's words.",
)
@click.option(
    "--generate",
    is_flag=True,
    help="Have the generator at $RAG_GENERATOR_URL (OpenAI-compatible) write the answer; "
    "every sentence is checked against the sentences it cites.",
)
@store_options
@json_option
@click.pass_context
@friendly_errors
def ask(
    ctx: click.Context,
    question: str,
    k: int | None,
    index_path: Path | None,
    reader_path: Path | None,
    answer_mode: str | None,
    generate: bool,
    as_json: bool,
    **store: Any,
) -> None:
    """Answer QUESTION from the index, citing the passages used.

    \b
    Examples:
      rag ask "What minerals does the Chirchik center target?"
      rag ask "Who met Tokayev?" --json
      rag ask "Who met Tokayev?" --answer-mode sentence
      RAG_GENERATOR_URL=http://127.0.0.1:8080/v1 rag ask "Who met Tokayev?" --generate
    """
    from rag.answer.generator import GeneratorError, GeneratorNotConfigured

    settings = _settings(ctx, index_path, reader_path=reader_path, answer_mode=answer_mode, **store)
    try:
        response = _engine(settings).ask(question, k=k, generate=generate)
    except GeneratorNotConfigured as exc:
        raise click.ClickException(exc.message) from exc
    except GeneratorError as exc:
        # The generator failed: say so, show the extractive answer, exit non-zero.
        if as_json:
            extractive = exc.extractive.model_dump(mode="json") if exc.extractive else None
            emit_json(
                {"error": {"code": exc.code, "message": exc.message}, "extractive": extractive}
            )
        else:
            click.echo(f"Error: {exc.message}; the extractive answer follows.", err=True)
            if exc.extractive is not None:
                _print_answer(exc.extractive)
        ctx.exit(1)
        return
    if as_json:
        emit_json(response)
        return
    _print_answer(response)


def _print_answer(response) -> None:
    if not response.answerable:
        click.echo("The indexed documents do not answer this.")
        click.echo(_wrap(f"Why: {response.reason or 'the evidence is too weak'}."))
        if response.passages:
            click.echo()
            click.echo("Nearest passages:")
            for p in response.passages[:3]:
                click.echo(f"  {p.chunk_id}  {p.title}")
                click.echo(_wrap(_excerpt(p.text), indent="    "))
        return
    generation = response.generation
    if generation is not None and generation.status != "generated" and generation.reason:
        click.echo(_wrap(f"(Not generated: {generation.reason}.)"))
        click.echo()
    if response.answer_mode == "generator":
        for s in response.support or []:
            flag = "" if s.supported else "  [UNSUPPORTED]"
            click.echo(_wrap(f"{s.text}{flag}"))
        dropped = [x for x in generation.sentences if not x.kept] if generation else []
        model = generation.model if generation and generation.model else "the generator"
        extra = f"; {len(dropped)} sentence(s) dropped" if dropped else ""
        click.echo(f"confidence {response.confidence:.2f} (generated by {model}{extra})")
        for x in dropped:
            click.echo(_wrap(f"dropped: {x.text!r}: {x.reason}", indent="  "))
        click.echo()
    else:
        markers = "".join(f"[{c.id}]" for c in response.citations)
        sentence_method = response.answer_mode != "reader"
        if sentence_method and response.short_answer:
            click.echo(f"{response.short_answer} {markers}")
            click.echo()
        click.echo(_wrap(f"{response.answer} {markers}"))
        click.echo(f"confidence {response.confidence:.2f} ({response.answer_mode or 'sentence'})")
        click.echo()
    for c in response.citations:
        click.echo(f"[{c.id}] {c.title}")
        support = f"  support {c.support:.2f}" if c.support is not None else ""
        page = f"  p. {c.page}" if c.page is not None else ""
        click.echo(
            f"    {c.doc_id}{page}  chunk {c.chunk_id}  chars {c.start}-{c.end}  "
            f"score {c.score:.2f}{support}"
        )
        click.echo(_wrap(f'"{c.quote}"', indent="    "))
        for other in c.corroborated_by:
            where = f"chars {other.start}-{other.end}"
            click.echo(f"    also in {other.doc_id} ({other.title}), {where}")


def _rank_scores(p) -> str:
    """The fused score and each signal's score and rank ("-": not among its candidates)."""

    def one(name: str, score: float | None, rank: int | None) -> str:
        return f"{name} {score:.3f} (#{rank})" if score is not None and rank else f"{name} -"

    parts = [f"score {p.score:.3f}"]
    if p.dense_score is not None or p.bm25_score is not None:
        parts += [one("dense", p.dense_score, p.dense_rank), one("bm25", p.bm25_score, p.bm25_rank)]
    return "  ".join(parts)


def _excerpt(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


@main.command()
@click.argument("query")
@k_option
@index_option
@store_options
@json_option
@click.pass_context
@friendly_errors
def search(
    ctx: click.Context,
    query: str,
    k: int | None,
    index_path: Path | None,
    as_json: bool,
    **store: Any,
) -> None:
    """Show the chunks retrieved for QUERY, with their scores."""
    response = _engine(_settings(ctx, index_path, **store)).search(query, k=k)
    if as_json:
        emit_json(response)
        return
    for p in response.passages:
        page = f"p. {p.page}  " if p.page is not None else ""
        click.echo(f"#{p.rank}  {p.chunk_id}  {page}chars {p.start}-{p.end}  {_rank_scores(p)}")
        click.echo(f"    {p.title}")
        click.echo(_wrap(p.text, indent="    ", width=100))
        click.echo()


@main.command()
@click.argument("question")
@click.option("--gold", default=None, help="A document or chunk id: where it ranked, and why.")
@k_option
@click.option("--mode", default=None, help="Retrieval mode: dense, bm25 or hybrid.")
@index_option
@json_option
@click.pass_context
@friendly_errors
def explain(
    ctx: click.Context,
    question: str,
    gold: str | None,
    k: int | None,
    mode: str | None,
    index_path: Path | None,
    as_json: bool,
) -> None:
    """Why each chunk was retrieved for QUESTION: dense, BM25 and fused scores and ranks, and
    the question terms it matches; with --gold, where that document or chunk ranked and which
    signal lost it.

    \b
    Examples:
      rag explain "What minerals does the Chirchik center target?"
      rag explain "What minerals does the Chirchik center target?" --gold 001_747dad745748a0c8
    """
    r = _engine(_settings(ctx, index_path)).explain(question, k=k, mode=mode, gold=gold)
    if as_json:
        emit_json(r)
        return
    click.echo(
        f"{r.mode} retrieval, k {r.k}; {r.n_candidates} candidates of {r.n_searched} chunks; "
        f"question terms: {', '.join(r.query_terms) or '(none)'}"
    )
    click.echo()
    click.echo(f"{'rank':>4}  {'fused':>6}  {'dense':>6} {'#':>4}  {'bm25':>6} {'#':>4}  chunk")
    for c in r.passages:
        click.echo(_explained_row(c))
    if r.gold is not None:
        g = r.gold
        click.echo()
        verdict = "retrieved" if g.retrieved else f"missed (lost by {', '.join(g.lost_by)})"
        click.echo(f"gold {g.kind} {g.id}: {verdict}")
        click.echo(f"    {g.reason}")
        if g.doc_rank is not None:
            click.echo(f"    its document ranks {g.doc_rank} among the candidates' documents")
        click.echo(_explained_row(g.chunk))


def _explained_row(c: Any) -> str:
    rank = str(c.rank) if c.rank is not None else "-"
    fused = f"{c.score:.3f}" if c.score is not None else "-"
    terms = ", ".join(f"{t} {s:.2f}" for t, s in c.term_scores.items()) or "no term"
    return (
        f"{rank:>4}  {fused:>6}  {c.dense_score:6.3f} {c.dense_rank:>4}  {c.bm25_score:6.2f} "
        f"{c.bm25_rank:>4}  {c.chunk_id}  [{terms}]"
    )


@main.command()
@click.argument("item_id")
@index_option
@json_option
@click.pass_context
@friendly_errors
def show(ctx: click.Context, item_id: str, index_path: Path | None, as_json: bool) -> None:
    """Show a chunk (by chunk id) or a document (by document id)."""
    from index import UnknownChunk

    engine = _engine(_settings(ctx, index_path))
    try:
        item: BaseModel = engine.chunk(item_id)
    except UnknownChunk:
        if ":" in item_id:  # a chunk id's shape: say so, not "no document"
            raise
        item = engine.document(item_id)
    if as_json:
        emit_json(item)
        return
    data = item.model_dump()
    body = data.pop("text")
    for key, value in data.items():
        if value is not None:
            click.echo(f"{key}: {value}")
    click.echo()
    click.echo(body)


@main.command()
@index_option
@click.option("--offset", type=int, default=0)
@click.option("--limit", type=int, default=None)
@json_option
@click.pass_context
@friendly_errors
def docs(
    ctx: click.Context, index_path: Path | None, offset: int, limit: int | None, as_json: bool
) -> None:
    """List the indexed documents: id, date, chunk count, title."""
    documents = _engine(_settings(ctx, index_path)).documents(offset=offset, limit=limit)
    if as_json:
        emit_json(documents)
        return
    width = max((len(d.id) for d in documents), default=2)
    click.echo(f"{'id':{width}s}  {'date':10s}  {'chunks':>6s}  title")
    for d in documents:
        click.echo(f"{d.id:{width}s}  {d.date or '-':10s}  {d.n_chunks:6d}  {d.title}")


@main.command()
@index_option
@json_option
@click.pass_context
@friendly_errors
def stats(ctx: click.Context, index_path: Path | None, as_json: bool) -> None:
    """Describe the index: model, chunking, counts, size, build time."""
    settings = _settings(ctx, index_path)
    # Reading the manifest needs no model.
    from rag.indexing import index_stats, load_index

    result = index_stats(load_index(settings))
    if as_json:
        emit_json(result)
        return
    for key, value in result.model_dump().items():
        click.echo(f"{key:16s} {_human(key, value)}")


@main.command("eval")
@eval_options
@click.pass_context
@friendly_errors
def eval_command(ctx: click.Context, **options: Any) -> None:
    """Evaluate retrieval and answers: on FILE (bundled format, default eval/bundled.jsonl),
    a BEIR dataset (--beir DIR) or a SQuAD v1.1 file (--squad FILE).

    \b
    Examples:
      rag eval                                   # the bundled set, all splits
      rag eval --split tune --sweep-threshold    # choose the abstention threshold
      rag eval --min hit@5=0.9 --min answer_accuracy=0.7   # a CI gate
      rag eval --beir data/scifact --split train --save-run scifact.run
      rag eval --squad dev-v1.1.json --limit 500 --save-predictions pred.json
      rag eval --compare --plot recall.png       # every retrieval mode side by side
      rag eval --url http://127.0.0.1:8000       # a running `rag serve`, over HTTP
      rag eval --save-report a.json; rag eval --diff a.json b.json
      rag eval --chunk-sizes 64/16,128/32,256/64 # answers cut by chunk boundaries
    """
    from rag.evaluation.cli import run_eval

    settings = _settings(
        ctx, chunk_tokens=options.pop("chunk_tokens"), chunk_overlap=options.pop("chunk_overlap")
    )
    run_eval(settings, embedder=ctx.obj.get("embedder"), **options)


@main.command()
@index_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes; each loads the model and the index. Default: one per core (at "
    "most 4), or 1 when the vectors are in a milvus-lite file (one process only).",
)
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Start even when there is no index yet (answering 503 until one is written).",
)
@store_options
@click.pass_context
def serve(
    ctx: click.Context,
    index_path: Path | None,
    host: str,
    port: int,
    workers: int | None,
    allow_empty: bool,
    store: str | None = None,
    milvus_uri: str | None = None,
    milvus_collection: str | None = None,
) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs).

    \b
    Settings come from RAG_* environment variables, e.g.
      RAG_API_KEY=...          enable writes (POST/DELETE /documents) with this bearer key
      RAG_READ_API_KEY=...     require a key for reads too
    Example:
      rag serve --index .rag/index --port 8000
      rag serve --store milvus --milvus-uri http://milvus:19530 --index .rag/index
      curl -s localhost:8000/ask -H 'content-type: application/json' \\
           -d '{"question": "What minerals does the Chirchik center target?"}'
    """

    import uvicorn

    if workers is None:
        workers = default_workers(index_path, store, milvus_uri)
    if milvus_uri is not None and workers > 1:
        from index.backends.milvus import is_remote

        if not is_remote(milvus_uri):
            raise click.ClickException(
                "a milvus-lite file can be opened by one process only: use --workers 1, or a "
                "Milvus server (--milvus-uri http://host:19530) for several workers"
            )
    from index.generations import current

    where = (index_path or ctx.obj["settings"].index_path).expanduser()
    if not allow_empty and current(where) is None:
        raise click.ClickException(
            f"there is no index at {where}: build one with `rag index [DIR] --index {where}`, "
            "or pass --allow-empty to start without one"
        )
    if index_path is not None:
        # Through the environment, so that every worker process builds the same Settings.
        os.environ["RAG_INDEX_PATH"] = str(index_path.resolve())
    if store is not None:
        os.environ["RAG_STORE"] = store
    if milvus_uri is not None:
        from index.backends.milvus import normalize_uri

        os.environ["RAG_MILVUS_URI"] = normalize_uri(milvus_uri)
    if milvus_collection is not None:
        os.environ["RAG_MILVUS_COLLECTION"] = milvus_collection
    verbose = ctx.find_root().params.get("verbose", 0)
    with shared_run_dir(workers):
        uvicorn.run(
            "api.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="debug" if verbose > 1 else "info",
        )


RUN_DIR_ENV = "RAG_RUN_DIR"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def shared_run_dir(workers: int) -> Iterator[Path | None]:
    """For several workers, a private folder they share, named to them by the environment
    (which spawned workers inherit): the rate limiter's buckets (RAG_RUN_DIR) and
    prometheus_client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, read when a worker
    first imports prometheus_client), so that the limit and /metrics hold for the server,
    not each worker. In RAM (/dev/shm) when there is one, else the temporary folder;
    removed when the server stops. Folders the deployer set already are used as they are.
    One worker needs none, and runs as it always has."""
    if workers <= 1:
        yield None
        return
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK | os.X_OK) else None
    run = Path(tempfile.mkdtemp(prefix="rag-serve-", dir=base))  # mode 0700
    saved = {name: os.environ.get(name) for name in (RUN_DIR_ENV, MULTIPROC_ENV)}
    try:
        if not saved[RUN_DIR_ENV]:
            os.environ[RUN_DIR_ENV] = str(run)
        if not saved[MULTIPROC_ENV]:
            (run / "metrics").mkdir()
            os.environ[MULTIPROC_ENV] = str(run / "metrics")
        logger.info(
            "workers share %s (rate limit) and %s (metrics)",
            os.environ[RUN_DIR_ENV],
            os.environ[MULTIPROC_ENV],
        )
        yield run
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(run, ignore_errors=True)


def default_workers(
    index_path: Path | None, store: str | None, milvus_uri: str | None, *, cores: int | None = None
) -> int:
    """One worker per core, at most 4 (each holds a model; on 2 cores two workers served 87
    req/s where one served 59-71), but one when the vectors live in a milvus-lite file: as
    given, configured, or recorded by the live index generation."""
    from index import backend, generations
    from index.errors import IndexStoreError
    from index.manifest import read_manifest
    from rag.indexing import store_config

    given = {"index_path": index_path, "store": store, "milvus_uri": milvus_uri}
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    manifest = None
    live = generations.current(settings.index_path)
    # the live generation's manifest says which store, or where, when the settings do not
    if live is not None and (settings.store is None or settings.milvus_uri is None):
        try:
            manifest = read_manifest(live)
        except (IndexStoreError, OSError):
            return 1  # the server reports an unreadable index; one worker will do
    config = store_config(settings, manifest)
    if not backend(config.kind).shared_by_processes(config.uri):
        return 1
    return max(1, min(4, cores or os.cpu_count() or 1))


def _wrap(text: str, indent: str = "", width: int = 100) -> str:
    return "\n".join(
        textwrap.fill(p, width=width, initial_indent=indent, subsequent_indent=indent)
        for p in text.split("\n")
        if p.strip()
    )


if __name__ == "__main__":
    main()
