"""The `rag eval` command's body: check options, run the evaluation, print and save results,
and exit non-zero when a --min/--max gate fails. The only module of the package that
talks to the terminal."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import click

from rag.config import PROJECT_ROOT, Settings
from rag.embed.embedding import Embedder
from rag.evaluation.boundary import parse_chunk_sizes
from rag.evaluation.data import BUNDLED_SPLITS, EvalDataError
from rag.evaluation.render import plot_recall, render
from rag.evaluation.report import EvalReport, Gate, check_gates, parse_gate
from rag.evaluation.runner import (
    evaluate_beir,
    evaluate_bundled,
    evaluate_squad,
    metric_names,
    save_runs,
)
from rag.evaluation.runner import save_predictions as write_predictions

DEFAULT_FILE = PROJECT_ROOT / "eval" / "bundled.jsonl"

Kind = Literal["bundled", "beir", "squad"]


def resolve_modes(modes: Sequence[str], compare: bool, default: str) -> list[str]:
    """The retrieval modes to run: those named (comma-separated or repeated), every known
    mode for a bare --compare, else the configured one."""
    from rag import engine

    known = tuple(engine.RETRIEVAL_MODES)  # read now: other modes may be added at any time
    named = [m.strip() for value in modes for m in value.split(",") if m.strip()]
    chosen = named or (list(known) if compare else [default])
    unknown = [m for m in chosen if m not in known]
    if unknown:
        raise click.BadParameter(
            f"unknown retrieval mode {', '.join(map(repr, unknown))}; known: {', '.join(known)}",
            param_hint="--mode",
        )
    return list(dict.fromkeys(chosen))


def _gates(min_gates: Sequence[str], max_gates: Sequence[str], kind: Kind) -> list[Gate]:
    gates = []
    for texts, which in ((min_gates, "min"), (max_gates, "max")):
        for text in texts:
            try:
                gates.append(parse_gate(text, which))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=f"--{which}") from None
    known = metric_names(kind)
    for gate in gates:
        if gate.metric not in known:
            raise click.BadParameter(
                f"unknown metric {gate.metric!r}; choose from {', '.join(known)}",
                param_hint=f"--{gate.kind}",
            )
    return gates


def _refuse(condition: bool, message: str) -> None:
    if condition:
        raise click.UsageError(message)


def run_eval(
    settings: Settings,
    *,
    embedder: Embedder | None,
    file: Path | None,
    beir_dir: Path | None,
    squad_file: Path | None,
    split: str | None,
    index_path: Path | None,
    cache_dir: Path,
    modes: Sequence[str],
    compare: bool,
    k: int | None,
    limit: int | None,
    sweep_threshold: bool,
    save_predictions: Path | None,
    save_run: Path | None,
    plot: Path | None,
    min_gates: Sequence[str],
    max_gates: Sequence[str],
    show_misses: bool,
    as_json: bool,
    url: str | None = None,
    chunk_sizes: str | None = None,
    save_report: Path | None = None,
    diff_paths: tuple[Path, Path] | None = None,
    articles: str | None = None,
    reader_path: Path | None = None,
    answer_mode: str | None = None,
    generate: bool = False,
) -> None:
    answering = {"reader_path": reader_path, "answer_mode": answer_mode}
    settings = settings.model_copy(update={k: v for k, v in answering.items() if v is not None})
    if generate:
        others = (beir_dir, squad_file, url, diff_paths, chunk_sizes, save_run, plot, save_report)
        _refuse(
            any(x is not None for x in others) or sweep_threshold or compare or len(modes) > 1,
            "--generate runs on a bundled-format file, in one retrieval mode",
        )
        _run_generate(
            settings,
            embedder=embedder,
            file=file,
            split=split,
            index_path=index_path,
            cache_dir=cache_dir,
            mode=modes[0] if modes else None,
            k=k,
            limit=limit,
            save_predictions=save_predictions,
            min_gates=min_gates,
            max_gates=max_gates,
            as_json=as_json,
        )
        return
    if diff_paths:
        _refuse(
            any(x is not None for x in (file, beir_dir, squad_file, url, save_report)),
            "--diff A.json B.json compares two saved reports; give it alone (or with --json)",
        )
        _show_diff(diff_paths, as_json)
        return
    _refuse(url is not None and (beir_dir or squad_file) is not None, "--url is for bundled files")
    _refuse(url is not None and index_path is not None, "--url evaluates the server's index")
    _refuse(url is not None and sweep_threshold, "--sweep-threshold is not for --url")
    _refuse(
        chunk_sizes is not None and (url is not None or beir_dir is not None),
        "--chunk-sizes is for the bundled set and --squad, not --url or --beir",
    )
    try:
        sizes = parse_chunk_sizes(chunk_sizes) if chunk_sizes else []
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--chunk-sizes") from None
    if url is not None:
        _run_url(
            url,
            file=file,
            split=split,
            modes=modes,
            k=k,
            save_predictions=save_predictions,
            save_report=save_report,
            min_gates=min_gates,
            max_gates=max_gates,
            show_misses=show_misses,
            as_json=as_json,
        )
        return
    sources = [x for x in (file, beir_dir, squad_file) if x is not None]
    _refuse(len(sources) > 1, "give one of FILE, --beir DIR and --squad FILE")
    kind: Kind = "beir" if beir_dir else "squad" if squad_file else "bundled"
    _refuse(sweep_threshold and kind != "bundled", "--sweep-threshold needs a bundled-format file")
    _refuse(save_run is not None and kind != "beir", "--save-run is for --beir")
    _refuse(save_predictions is not None and kind == "beir", "--save-predictions is not for --beir")
    _refuse(limit is not None and kind == "bundled", "--limit is for --beir and --squad")
    _refuse(limit is not None and limit < 1, "--limit must be at least 1")
    _refuse(split is not None and kind == "squad", "--split is not for --squad")
    if kind == "bundled":
        split = split or "all"
        _refuse(
            split not in (*BUNDLED_SPLITS, "all"),
            f"--split must be one of {', '.join(BUNDLED_SPLITS)}, all",
        )
    chosen = resolve_modes(modes, compare, settings.retrieval_mode)
    gates = _gates(min_gates, max_gates, kind)

    if embedder is None:
        embedder = Embedder.from_settings(settings, queries=True)
    common = dict(
        modes=chosen,
        verbose=show_misses,
        index_path=index_path,
        cache_dir=cache_dir,
        progress=sys.stderr.isatty(),
    )
    try:
        if kind == "beir":
            assert beir_dir is not None
            report, outputs = evaluate_beir(
                settings, embedder, beir_dir, split=split or "test", limit=limit, **common
            )
        elif kind == "squad":
            assert squad_file is not None
            report, outputs = evaluate_squad(
                settings,
                embedder,
                squad_file,
                k=k,
                limit=limit,
                chunk_sizes=sizes,
                articles=[a.strip() for a in articles.split(",")] if articles else None,
                **common,
            )
        else:
            report, outputs = evaluate_bundled(
                settings,
                embedder,
                file or DEFAULT_FILE,
                split=split,
                k=k,
                sweep=sweep_threshold,
                chunk_sizes=sizes,
                **common,
            )
    except EvalDataError as exc:
        raise click.ClickException(str(exc)) from exc

    written: list[Path] = []
    if save_predictions is not None:
        written += write_predictions(
            "squad" if kind == "squad" else "bundled", outputs, save_predictions
        )
    if save_run is not None:
        written += save_runs(outputs, save_run)
    if plot is not None:
        plot_recall(report, plot)
        written.append(plot)
    if save_report is not None:
        write_report(save_report, report, outputs)
        written.append(save_report)
    _finish(report, gates, written, as_json)


def _finish(report: EvalReport, gates: list[Gate], written: list[Path], as_json: bool) -> None:
    if as_json:
        click.echo(report.model_dump_json(indent=2))
    else:
        click.echo(render(report))
        for path in written:
            click.echo(f"wrote {path}")
    failures = check_gates(report, gates)
    for failure in failures:
        click.echo(f"FAIL: {failure}", err=True)
    if failures:
        click.get_current_context().exit(1)


def _show_diff(paths: tuple[Path, Path], as_json: bool) -> None:
    from rag.evaluation.diff import diff_reports, load_report, render_diff

    try:
        a, b = load_report(paths[0]), load_report(paths[1])
    except EvalDataError as exc:
        raise click.ClickException(str(exc)) from exc
    diff = diff_reports(a, b, a_name=str(paths[0]), b_name=str(paths[1]))
    if as_json:
        click.echo(diff.model_dump_json(indent=2))
    else:
        click.echo(render_diff(diff))


def _run_url(
    url: str,
    *,
    file: Path | None,
    split: str | None,
    modes: Sequence[str],
    k: int | None,
    save_predictions: Path | None,
    save_report: Path | None,
    min_gates: Sequence[str],
    max_gates: Sequence[str],
    show_misses: bool,
    as_json: bool,
) -> None:
    from rag.evaluation.remote import ServiceError, evaluate_url

    split = split or "all"
    _refuse(
        split not in (*BUNDLED_SPLITS, "all"),
        f"--split must be one of {', '.join(BUNDLED_SPLITS)}, all",
    )
    named = [m.strip() for value in modes for m in value.split(",") if m.strip()]
    _refuse(len(named) > 1, "--url runs one retrieval mode at a time")
    gates = _gates(min_gates, max_gates, "bundled")
    try:
        report, outputs = evaluate_url(
            url,
            file or DEFAULT_FILE,
            split=split,
            mode=named[0] if named else None,
            k=k,
            verbose=show_misses,
            progress=sys.stderr.isatty(),
        )
    except (EvalDataError, ServiceError) as exc:
        raise click.ClickException(str(exc)) from exc
    written: list[Path] = []
    if save_predictions is not None:
        written += write_predictions("bundled", outputs, save_predictions)
    if save_report is not None:
        write_report(save_report, report, outputs)
        written.append(save_report)
    _finish(report, gates, written, as_json)


def _run_generate(
    settings: Settings,
    *,
    embedder: Embedder | None,
    file: Path | None,
    split: str | None,
    index_path: Path | None,
    cache_dir: Path,
    mode: str | None,
    k: int | None,
    limit: int | None,
    save_predictions: Path | None,
    min_gates: Sequence[str],
    max_gates: Sequence[str],
    as_json: bool,
) -> None:
    import json

    from rag.answer.generator import GeneratorNotConfigured
    from rag.evaluation import generation
    from rag.evaluation.data import load_bundled, write_jsonl
    from rag.evaluation.runner import open_engine
    from rag.ingest.documents import load_corpus

    _refuse(not settings.generator_url, "--generate needs RAG_GENERATOR_URL (see README)")
    _refuse(limit is not None and limit < 1, "--limit must be at least 1")
    split = split or "all"
    _refuse(
        split not in (*BUNDLED_SPLITS, "all"),
        f"--split must be one of {', '.join(BUNDLED_SPLITS)}, all",
    )
    if mode:
        resolve_modes([mode], False, settings.retrieval_mode)
        settings = settings.model_copy(update={"retrieval_mode": mode})
    gates = []
    for texts, which in ((min_gates, "min"), (max_gates, "max")):
        for text in texts:
            try:
                gates.append(parse_gate(text, which))
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=f"--{which}") from None
    try:
        items = [it for it in load_bundled(file or DEFAULT_FILE) if split in ("all", it.split)]
    except EvalDataError as exc:
        raise click.ClickException(str(exc)) from exc
    items = items[:limit] if limit else items
    if embedder is None:
        embedder = Embedder.from_settings(settings, queries=True)
    documents = load_corpus(settings.corpus_dir, max_file_bytes=settings.max_file_bytes)
    opened = open_engine(
        settings, embedder, documents, name="bundled", index_path=index_path, cache_dir=cache_dir
    )
    try:
        pairs = generation.ask_both(opened.engine, items, k=k, progress=sys.stderr.isatty())
    except GeneratorNotConfigured as exc:
        raise click.ClickException(exc.message) from exc
    scores = generation.score_pairs(pairs)
    if save_predictions is not None:
        write_jsonl(save_predictions, generation.pairs_json(pairs))
    s = opened.engine.settings
    header = (
        f"generated answers: {file or DEFAULT_FILE} ({split}, {len(items)} questions), "
        f"generator {s.generator_model or s.generator_url}, unsupported {s.generator_unsupported}"
    )
    if as_json:
        click.echo(json.dumps({"header": header, "metrics": scores}, indent=2))
    else:
        click.echo(generation.render_scores(scores, header=header))
    failures = []
    for gate in gates:
        if gate.metric not in scores:
            raise click.BadParameter(
                f"unknown metric {gate.metric!r}; choose from {', '.join(scores)}",
                param_hint=f"--{gate.kind}",
            )
        value = scores[gate.metric]
        if not gate.passes(value):
            failures.append(f"{gate.metric} = {value}, {gate.kind} {gate.value:g}")
    for failure in failures:
        click.echo(f"FAIL: {failure}", err=True)
    if failures:
        click.get_current_context().exit(1)


def write_report(path: Path, report: EvalReport, outputs: dict) -> None:
    from rag.evaluation.diff import save_report

    save_report(path, report, outputs)
