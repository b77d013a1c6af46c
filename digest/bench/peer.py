"""llama.cpp's own `llama-server` as a peer of `digest bench`, fed the bench's requests over HTTP.

The requests travel as JSON objects that any OpenAI-compatible server, or any other tool, can take:
`messages`, `max_tokens`, `seed`, the sampling settings by llama.cpp's names, and `stop` and `grammar`
where set (`requests_json`, written by `digest bench --requests-out FILE`).

`LlamaServer` owns one server process on 127.0.0.1: the same model file, `-np N` (one slot per
request, continuous batching), a context of N x the KV cells per sequence that the batching engine
gives each request, the same threads, flash attention off and a non-unified KV cache (as digest).
`run_batch` sends all requests at once, one thread each, with `cache_prompt: false`, and times the
batch from the first send to the last answer, through digest's one HTTP client (digest.http).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Sequence

from ..engine.base import Request
from ..engine.chat import is_template_file
from .. import http
from ..errors import OutputError, PeerError
from ..files import write_atomic
from .native import NO_REPACK

ENDPOINT = "/v1/chat/completions"
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 600.0


# -- the requests as JSON ------------------------------------------------------------------------


def request_json(request: Request) -> dict:
    """One request as a JSON object: its key, and the chat-completion body the openai engine sends
    a llama.cpp server (llama.cpp's sampling fields and grammar)."""
    from ..engine.openai import chat_body

    return {"key": request.key, **chat_body(request, "llama")}


def requests_json(requests: Iterable[Request]) -> list[dict]:
    return [request_json(r) for r in requests]


def write_requests(path: Path, requests: Iterable[Request]) -> None:
    """Write `requests_json(requests)` to `path` (UTF-8, indented), replacing it whole or not at all."""
    text = json.dumps(requests_json(requests), indent=2, ensure_ascii=False) + "\n"
    write_atomic(Path(path), text, error=lambda _action, _where, exc: OutputError(
        f"cannot write the requests to {path}: {exc.strerror or exc}"))


def server_body(request: dict) -> dict:
    """The HTTP body for one request of `requests_json`: no prompt cache, no streaming."""
    body = {k: v for k, v in request.items() if k != "key"}
    body.update(cache_prompt=False, stream=False)
    return body


# -- one batch ----------------------------------------------------------------------------------


# Every status is an answer here: what llama-server says in an error body is what the PeerError shows.
_ANY_STATUS = range(100, 600)


def _post(url: str, body: dict, timeout: float) -> tuple[int, bytes]:
    """One answer by digest's HTTP client (digest.http), never tried again: a peer is timed once."""
    response = http.post(url, body, timeout=timeout, retries=0, accept=_ANY_STATUS)
    return response.status, response.body


def _usage(status: int, payload: bytes, url: str, key: str) -> dict:
    """The `usage` object of one answer, or a PeerError that says what was wrong with it."""
    where = f"{url} (request '{key}')"
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        snippet = payload[:80].decode("utf-8", errors="replace")
        raise PeerError(f"{where} answered HTTP {status} with a body that is not JSON: {snippet!r}") from None
    if status != 200:
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise PeerError(f"{where} answered HTTP {status}: {message or str(data)[:200]}")
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict) or not isinstance(usage.get("completion_tokens"), int):
        raise PeerError(f"{where} answered without usage.completion_tokens")
    return usage


def run_batch(host: str, port: int, requests: Sequence[dict], *,
              timeout: float = REQUEST_TIMEOUT_S) -> tuple[float, list[dict]]:
    """Send every request of `requests_json` at once, one thread each; (wall seconds from the first
    send to the last answer, each answer's `usage`), in the order of the requests."""
    url = f"http://{host}:{port}{ENDPOINT}"
    answers: list[tuple[int, bytes] | BaseException | None] = [None] * len(requests)
    bodies = [server_body(r) for r in requests]

    def send(i: int) -> None:
        try:
            answers[i] = _post(url, bodies[i], timeout)
        except Exception as exc:  # reported below, in the caller's thread
            answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(len(requests))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    usages = []
    for request, answer in zip(requests, answers):
        key = request.get("key", "?")
        if isinstance(answer, BaseException):  # digest.http's own words (a timeout says so)
            raise PeerError(f"{url} (request '{key}') failed: {str(answer).removeprefix(url + ': ')}")
        usages.append(_usage(*answer, url, key))
    return wall, usages


# -- the server process ---------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def context_cells(model: Path, requests: Sequence[Request], n_ctx: int = 0, chat_format: str = "") -> int:
    """KV cells per sequence that the batching engine gives these requests (all in one batch)."""
    from ..engine import create_engine

    with create_engine("batched", model, n_ctx=n_ctx, chat_format=chat_format) as engine:
        prompts = [engine.tokenize(r) for r in requests]
        return engine._plan(requests, prompts)[3]


def server_command(binary: Path, model: Path, *, parallel: int, ctx: int, threads: int, port: int,
                   host: str = HOST, n_gpu_layers: int = 0, cache_type_k: str = "f16", chat_format: str = "") -> list[str]:
    command = [str(binary), "-m", str(model), "-np", str(parallel), "-c", str(ctx), "-t", str(threads),
               "-fa", "off", "--no-kv-unified", "-ctk", cache_type_k, NO_REPACK, "--host", host, "--port", str(port),
               # Always said: this llama-server's default is "auto", which offloads on a GPU build.
               "-ngl", "all" if n_gpu_layers < 0 else str(n_gpu_layers)]
    # The template digest formats with where it is not the GGUF's ([model] chat_format, the registry's):
    # a llama.cpp built-in by name (outside the Jinja engine, the server's default, which would take
    # the name for a template's text and send prompts of 3 tokens), or a Jinja file.
    if chat_format:
        command += (["--jinja", "--chat-template-file", chat_format] if is_template_file(chat_format)
                    else ["--no-jinja", "--chat-template", chat_format])
    return command


class LlamaServer:
    """A `llama-server` process for the lifetime of a `with` block; stopped (SIGTERM, then SIGKILL)
    on the way out. Startup failures are one PeerError line with the server's own last error."""

    def __init__(self, binary: Path, model: Path, *, parallel: int, ctx: int, threads: int,
                 port: int = 0, host: str = HOST, n_gpu_layers: int = 0, startup_timeout: float = STARTUP_TIMEOUT_S,
                 cache_type_k: str = "f16", chat_format: str = ""):
        self.binary, self.model = Path(binary), Path(model)
        self.chat_format = chat_format
        self.host, self.port = host, port
        self.parallel, self.ctx, self.threads, self.n_gpu_layers = parallel, ctx, threads, n_gpu_layers
        self.cache_type_k = cache_type_k
        self.prompt_tokens = 0
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def command(self) -> list[str]:
        return server_command(self.binary, self.model, parallel=self.parallel, ctx=self.ctx,
                              threads=self.threads, port=self.port, host=self.host, n_gpu_layers=self.n_gpu_layers,
                              cache_type_k=self.cache_type_k, chat_format=self.chat_format)

    def __enter__(self) -> "LlamaServer":
        check_binary(self.binary)
        if not self.model.is_file():
            raise PeerError(f"model file not found: {self.model}")
        if self.port == 0:
            self.port = free_port(self.host)
        elif port_in_use(self.host, self.port):
            raise PeerError(f"port {self.port} on {self.host} is in use: pick another for llama-server")
        self._log = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._close_log()
            raise PeerError(f"cannot start {self.binary}: {exc.strerror or exc}") from exc
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise PeerError(f"llama-server exited with code {code} while starting: {self.last_error()}")
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise PeerError(f"llama-server did not become healthy on {self.host}:{self.port} within "
                                f"{self.startup_timeout:.0f} s: {self.last_error()}")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            return http.get(f"http://{self.host}:{self.port}/health", timeout=2, retries=0).status == 200
        except http.HTTPFailure:
            return False

    def log_text(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", errors="replace")

    def last_error(self) -> str:
        """The server's last error line (its own words), else its last line."""
        lines = [line.strip() for line in self.log_text().splitlines() if line.strip()]
        for line in reversed(lines):
            low = line.lower()
            if ("error" in low or "failed" in low or "couldn't" in low) and "exiting due to" not in low:
                return line
        return lines[-1] if lines else "(no output)"

    def run_once(self, requests: Sequence[dict], *, timeout: float = REQUEST_TIMEOUT_S) -> tuple[float, int]:
        """One timed batch on this server (`run_batch`): (wall seconds, completion tokens counted from the
        answers' `usage`); their prompt tokens are kept in `prompt_tokens`."""
        if self.process is None or self.process.poll() is not None:
            raise PeerError(f"llama-server is not running: {self.last_error()}")
        wall, usages = run_batch(self.host, self.port, requests, timeout=timeout)
        self.prompt_tokens = sum(int(u.get("prompt_tokens") or 0) for u in usages)
        return wall, sum(u["completion_tokens"] for u in usages)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._close_log()

    def _close_log(self) -> None:
        log, self._log = self._log, None
        if log is not None:
            log.close()


def check_binary(binary: Path) -> None:
    """Fail early, in one line, when the llama-server binary is missing or not executable."""
    binary = Path(binary)
    if not binary.is_file():
        raise PeerError(f"llama-server not found at {binary}: build it with `make peers` "
                        "(build/llama.cpp/bin/llama-server)")
    if not os.access(binary, os.X_OK):
        raise PeerError(f"{binary} is not executable")


def server_for(binary: Path, model: Path, requests: Sequence[Request], *, threads: int, n_ctx: int = 0,
               n_gpu_layers: int = 0, port: int = 0, cache_type_k: str = "f16", chat_format: str = "") -> LlamaServer:
    """The peer server for a bench: one slot per request, each with the cells digest gives it, and
    digest's K cache format and chat template."""
    from ..engine.native import stream_cells

    check_binary(binary)  # before loading the model to count cells
    cells = stream_cells(context_cells(model, requests, n_ctx, chat_format))
    return LlamaServer(binary, model, parallel=len(requests), ctx=cells * len(requests), threads=threads,
                       n_gpu_layers=n_gpu_layers, port=port, cache_type_k=cache_type_k, chat_format=chat_format)
