"""Real servers for the tests that talk HTTP: uvicorn (or `rag serve`) in a child process on a
free loopback port, its output captured in a log file, and waiting until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rag.config import PROJECT_ROOT


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(command: list[str], port: int, log: Path, env: dict[str, str]) -> Server:
    """`command` in a child with this environment minus its RAG_ settings, plus `env`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", **env)
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    return Server(f"http://127.0.0.1:{port}", process, log)


def start_server(
    log: Path, *, app: str = "api.main:create_app", log_level: str = "warning", **env: str
) -> Server:
    """uvicorn on a free loopback port, stdout and stderr captured in `log`."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
    return _spawn(command, port, log, env)


def start_api(tmp: Path, name: str, *, serve_args: list[str] | None = None, **env: str) -> Server:
    """The API on a free loopback port, logging to `tmp/NAME.log`: uvicorn, or with
    `serve_args` `rag serve`. Rate limiting is off unless `env` sets it: these tests ask from
    one address as fast as they can (tests/integration/ops/test_ops.py tests the limit)."""
    env.setdefault("RAG_RATE_LIMIT_PER_MINUTE", "0")
    log = tmp / f"{name}.log"
    if serve_args is None:
        return start_server(log, **env)
    port = free_port()
    command = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port), *serve_args]
    return _spawn(command, port, log, env)


def wait_until(server: Server, path: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(f"server exited with {server.process.returncode}:\n{server.output()}")
        try:
            if httpx.get(server.url + path, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{server.url}{path} not 200 after {timeout}s:\n{server.output()[-5000:]}")
