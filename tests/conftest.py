"""Shared helpers: feed documents written by the tests themselves, a feeds folder, the CLI runner,
the one loopback HTTP server every networking test uses (and a scripted OpenAI-compatible server on
it); and the `model` marker's rule."""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterator, Sequence
from xml.sax.saxutils import escape

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Set by `make test`: the embedded model is part of the setup, so a test that needs it fails when it
# is missing instead of being skipped.
REQUIRE_MODEL = "DIGEST_REQUIRE_MODEL"


# ---------------------------------------------------------------------------------------------
# Tests that use the real embedded model carry `@pytest.mark.model`


def model_missing() -> str | None:
    """Why the real-model tests cannot run (the embedded model's file is not there), else None."""
    from digest.config import Config

    path = Config().model_path
    return None if path.is_file() else f"embedded model missing: {path} (run make install)"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs two workers), each worker gets its own share of the CPUs
    this run may use: llama.cpp sizes its threads by them (digest.engine.llama.default_threads), so the
    workers' models do not fight over the same cores; subprocesses inherit the share."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not (worker and count and hasattr(os, "sched_setaffinity")):
        return
    # a worker that replaces a crashed one is named gw{count}, gw{count + 1}, ...: it takes the crashed one's share
    cpus, n, count = sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw")) % int(count), int(count)
    share = len(cpus) // count
    if share:
        os.sched_setaffinity(0, cpus[n * share:(n + 1) * share])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("model") is None:
        return
    reason = model_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_MODEL) == "1":
        pytest.fail(f"{reason}; {REQUIRE_MODEL}=1 (make test) requires it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def batched_engine():
    """The embedded model in the batching engine, loaded once for the whole run: for every test that
    does not need an engine of its own. (A test that changes its settings puts them back.)"""
    from digest.config import Config
    from digest.engine import create_engine

    with create_engine("batched", Config().model_path) as engine:
        yield engine


def made_once(tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """A folder that `make` fills once for the whole run. Under pytest-xdist the tests of one module may
    run on both workers, and each would run the module's fixtures: the first worker to ask makes the
    folder (the other waits on a lock, then reads what it made), so a post that the real model writes
    for a module's tests is written once. A `make` that fails leaves nothing, and the next asker tries again."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above each worker's own
    folder, done = base / f"once-{name}", base / f"once-{name}" / ".made"
    with open(base / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.write_text("")
    return folder


# ---------------------------------------------------------------------------------------------
# Feed documents


@dataclass
class Item:
    """One feed item as a test describes it (plain text; the builders do all the escaping)."""

    title: str
    text: str = ""
    author: str = "someone"
    link: str = ""
    id: str = ""


def reddit_atom(items: Sequence[Item], *, subreddit: str = "MachineLearning") -> bytes:
    """An Atom document shaped like Reddit's `/top/.rss?t=day` (see digest/samples/topics.xml):
    each entry's `<content type="html">` holds escaped HTML ending with
    "submitted by /u/NAME [link] [comments]"."""
    entries = []
    for n, item in enumerate(items):
        link = item.link or f"https://www.reddit.com/r/{subreddit}/comments/1t{n:04d}/post_{n}/"
        body = (
            f'<!-- SC_OFF --><div class="md"><p>{escape(item.text)}</p></div><!-- SC_ON -->'
            if item.text
            else ""
        )
        html_content = (
            f"{body} &#32; submitted by &#32; <a href=\"https://www.reddit.com/user/{item.author}\"> "
            f"/u/{item.author} </a> <br/> <span><a href=\"{link}\">[link]</a></span> &#32; "
            f"<span><a href=\"{link}\">[comments]</a></span>"
        )
        entries.append(
            f"<entry><author><name>/u/{item.author}</name>"
            f"<uri>https://www.reddit.com/user/{item.author}</uri></author>"
            f'<category term="{subreddit}" label="r/{subreddit}"/>'
            f'<content type="html">{escape(html_content)}</content>'
            f"<id>{escape(item.id or f't3_1t{n:04d}')}</id>"
            f'<link href="{escape(link)}" />'
            f"<updated>2026-01-01T0{n % 10}:00:00+00:00</updated>"
            f"<published>2026-01-01T0{n % 10}:00:00+00:00</published>"
            f"<title>{escape(item.title)}</title></entry>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/">'
        f'<category term="{subreddit}" label="r/{subreddit}"/>'
        "<updated>2026-01-01T12:00:00+00:00</updated>"
        f"<id>/r/{subreddit}/top/.rss?t=day</id>"
        f'<link rel="self" href="https://www.reddit.com/r/{subreddit}/top/.rss?t=day" type="application/atom+xml" />'
        f"<title>top scoring links : {subreddit}</title>\n" + "\n".join(entries) + "</feed>"
    ).encode("utf-8")


def news_rss(items: Sequence[Item], *, cdata: bool = True) -> bytes:
    """An RSS 2.0 document like a news site's: entity-escaped titles, CDATA HTML descriptions."""
    out = []
    for n, item in enumerate(items):
        link = item.link or f"https://news.example.com/2026/01/01/story-{n}/"
        guid = item.id or f"https://news.example.com/?p={1000 + n}"
        if cdata:
            description = f"<![CDATA[<p>{escape(item.text)}</p><p><a href=\"{link}\">Read more</a></p>]]>"
        else:
            description = escape(item.text)
        out.append(
            f"<item><title>{escape(item.title)}</title><link>{escape(link)}</link>"
            f'<guid isPermaLink="false">{escape(guid)}</guid>'
            f"<pubDate>Thu, 01 Jan 2026 0{n % 10}:00:00 +0000</pubDate>"
            f"<description>{description}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        "<title>AI News &amp; Research</title><link>https://news.example.com/</link>"
        "<description>News</description>\n" + "\n".join(out) + "</channel></rss>"
    ).encode("utf-8")


def titled(titles: Sequence[str], prefix: str = "") -> list[Item]:
    return [Item(title=f"{prefix}{t}", text=f"Body text number {n} about {t}.") for n, t in enumerate(titles)]


# Eight distinct stories, with no content words in common between any two of them.
TOPIC_TITLES = [
    "Sparse experts halve pretraining compute",
    "Quantized kernels accelerate phone inference",
    "Robots fold laundry after watching videos",
    "Protein structure predictor handles membranes",
    "Weather forecasts improve with graph networks",
    "Open dataset covers hundred spoken languages",
    "Benchmark contamination detected across leaderboards",
    "Diffusion model simulates turbulent fluids",
]
TRENDING_TITLES = [
    "Meet Kestrel: Tiny Agent Framework For Edge Devices",
    "Memory Efficient Finetuning Cuts Usage Sixty Percent",
    "Local Retrieval Pipeline Tutorial With Open Models",
    "Startup Releases Speech Recognizer For Hospitals",
    "Vision Transformer Beats Radiologists On Scans",
]


@pytest.fixture
def write_feeds(tmp_path) -> Callable[..., Path]:
    """Factory: write `topics.xml` (Reddit-shaped Atom) and `trending.xml` (RSS 2.0) into a folder
    laid out for `--feeds-from`, and return the folder. Pass None to leave a file out."""

    def make(
        topics: Sequence[str] | None = tuple(TOPIC_TITLES),
        trending: Sequence[str] | None = tuple(TRENDING_TITLES),
        *,
        directory: Path | None = None,
        topic_prefix: str = "[R] ",
    ) -> Path:
        folder = directory or tmp_path / "feeds"
        folder.mkdir(parents=True, exist_ok=True)
        if topics is not None:
            (folder / "topics.xml").write_bytes(reddit_atom(titled(topics, topic_prefix)))
        if trending is not None:
            (folder / "trending.xml").write_bytes(news_rss(titled(trending)))
        return folder

    return make


# ---------------------------------------------------------------------------------------------
# The CLI


def _make_runner():
    from typer.testing import CliRunner

    # Older click mixes stderr into output unless told not to; newer ones (and typer's own copy)
    # keep `result.stderr` separate and have no such argument.
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)
    return CliRunner()


@pytest.fixture
def run_cli() -> Callable[..., object]:
    """Run `digest ARGS...` in-process; the result has `exit_code`, `stdout` and `stderr`."""
    from digest.cli import app

    runner = _make_runner()

    def invoke(*args: object, **kwargs):
        return runner.invoke(app, [str(a) for a in args], **kwargs)

    return invoke


def describe(result) -> str:
    """A failure message that shows what the command said."""
    return (
        f"exit={result.exit_code}\nstdout={result.stdout!r}\nstderr={getattr(result, 'stderr', None)!r}\n"
        f"exception={result.exception!r}"
    )


# ---------------------------------------------------------------------------------------------
# The loopback HTTP server: every test that talks HTTP talks to this one


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Request(BaseHTTPRequestHandler):
    """What a route's handler is given: the request (`method`, `path`, `headers`, `body`) and
    `reply(status, body, headers)`; a handler that misbehaves on purpose writes its own answer with
    `send_response`, `send_header`, `end_headers` and `wfile`."""

    server: "_QuietServer"
    body: bytes = b""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        state: LoopbackServer = self.server.state
        state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), self.body))
        handler = state.route(self.path)
        if handler is None:
            self.reply(404, b"not found")
        else:
            handler(self)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's naming

    @property
    def method(self) -> str:
        return self.command

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Answer with `status`, `body` and `headers` (Content-Length unless `headers` give one)."""
        try:
            self.send_response(status)
            for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up (the timeout tests)

    def log_message(self, *args):
        pass


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 whose answers each test sets per path:
    `add(path, body, status, headers, delay)` the same answer every time, `script(path, *answers)`
    (status, body, headers) in turn and then the last one again, `handle(path, handler)` a handler
    of its own (`handler(request)`, see `Request`). A path ending in `*` is a prefix; a query string
    is ignored when no route names it. Each returns the route's URL. `seen` holds every request."""

    def __init__(self) -> None:
        self.base = ""
        self.seen: list[Seen] = []
        self.routes: dict[str, Callable[[Request], None]] = {}

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def handle(self, path: str, handler: Callable[[Request], None]) -> str:
        self.routes[path] = handler
        return self.base + path.rstrip("*")

    def add(self, path: str, body: bytes = b"", status: int = 200, headers: dict[str, str] | None = None,
            delay: float = 0.0) -> str:
        def answer(request: Request) -> None:
            if delay:
                time.sleep(delay)  # a slow server (the timeout tests)
            request.reply(status, body, headers)

        return self.handle(path, answer)

    def script(self, path: str, *answers: tuple[int, bytes, dict[str, str]]) -> str:
        given = []

        def answer(request: Request) -> None:
            given.append(request.path)
            status, body, headers = answers[min(len(given), len(answers)) - 1]
            request.reply(status, body, headers)

        return self.handle(path, answer)

    def to(self, path: str) -> list[Seen]:
        """The requests for `path`."""
        return [seen for seen in self.seen if seen.path == path]

    def route(self, path: str) -> Callable[[Request], None] | None:
        for candidate in (path, path.split("?", 1)[0]):
            if candidate in self.routes:
                return self.routes[candidate]
        prefixes = [p for p in self.routes if p.endswith("*") and path.startswith(p[:-1])]
        return self.routes[max(prefixes, key=len)] if prefixes else None


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """The loopback HTTP server (see LoopbackServer), on a free port for the test."""
    state = LoopbackServer()
    server = _QuietServer(("127.0.0.1", 0), Request)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    state: LoopbackServer

    def handle_error(self, request, client_address):
        pass  # a client that hung up is what some tests do on purpose


# ---------------------------------------------------------------------------------------------
# A scripted OpenAI-compatible server (the openai engine, thinking servers, the bench's peer client)

CHAT_PATH = "/v1/chat/completions"


class ScriptedChat:
    """The chat completions of an OpenAI-compatible server, scripted: each POST is answered by
    `respond(body)` (its parsed JSON body), or by the next of a list of answers (then the last one
    again), with (status, body bytes) or (status, body bytes, headers, seconds to stall after the
    body's first bytes). `bodies`: the POST bodies as they came; `first_in`, `last_out`: when the
    first request came and the last answer went. With `barrier`, that many requests must all be in
    flight together, or each gets a 500 (a client that sent them one after another fails)."""

    def __init__(self, respond, *, barrier: int = 0):
        answers = None if callable(respond) else list(respond)
        self.respond = respond if answers is None else (lambda body: answers[min(len(self.bodies), len(answers)) - 1])
        self.bodies: list[dict] = []
        self.barrier = threading.Barrier(barrier, timeout=10) if barrier else None
        self.first_in = self.last_out = None
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> None:
        with self._lock:
            self.first_in = self.first_in or time.perf_counter()
            body = json.loads(request.body)
            self.bodies.append(body)
        try:
            if self.barrier is not None:
                self.barrier.wait()
            status, payload, headers, delay = (*self.respond(body), {}, 0)[:4]
        except threading.BrokenBarrierError:
            status, payload, headers, delay = 500, b'{"error": {"message": "requests were not sent together"}}', {}, 0
        headers = {"Content-Type": "application/json", **headers}
        with self._lock:
            self.last_out = time.perf_counter()  # before the answer goes: the client has it only later
        if not delay:
            request.reply(status, payload, headers)
            return
        try:  # a stalled body: its first bytes, a wait, the rest (the timeout tests)
            request.send_response(status)
            for key, value in {"Content-Length": str(len(payload) + 100), **headers}.items():
                request.send_header(key, value)
            request.end_headers()
            request.wfile.write(payload[:5])
            request.wfile.flush()
            time.sleep(delay)
            request.wfile.write(payload)
        except OSError:
            pass


@pytest.fixture
def chat_server(http_server) -> Callable[..., ScriptedChat]:
    """`chat_server(respond, model=..., barrier=0)`: the loopback server as an OpenAI-compatible one,
    at `http_server.base + "/v1"`: GET /v1/models lists `model`, POST /v1/chat/completions is a
    ScriptedChat (returned)."""

    def start(respond, *, model: str = "remote/model-7b.gguf", barrier: int = 0) -> ScriptedChat:
        chat = ScriptedChat(respond, barrier=barrier)
        http_server.add("/v1/models", json.dumps({"object": "list", "data": [{"id": model}]}).encode(),
                        headers={"Content-Type": "application/json"})
        http_server.handle(CHAT_PATH, chat)
        return chat

    return start


# A real full filesystem for tests of a full disk (root only; skipped with the reason otherwise).


@pytest.fixture
def small_tmpfs(tmp_path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs of its own, and mounting one needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


# ---------------------------------------------------------------------------------------------
# `digest` in a process of its own, at a terminal: what a user sees, as it happens


_ESCAPE = re.compile(r"\x1b\[([0-9;?]*)([ -/]*[@-~])|\x1b[@-_]|[\r\n]")


def screen(raw: str) -> str:
    """The text a terminal shows after `raw`: rich's progress bar redraws its line in place
    (carriage return, erase line, cursor up) and leaves nothing once it is gone."""
    lines, row, col = [""], 0, 0

    def put(text: str) -> None:
        nonlocal col
        line = lines[row]
        lines[row] = line[:col].ljust(col) + text + line[col + len(text):]
        col += len(text)

    at = 0
    for match in _ESCAPE.finditer(raw):
        put(raw[at:match.start()])
        at = match.end()
        piece = match.group(0)
        if piece == "\r":
            col = 0
        elif piece == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif match.group(2) == "K":
            lines[row] = "" if match.group(1) == "2" else lines[row][:col]
        elif match.group(2) == "A":
            row = max(0, row - int(match.group(1) or 1))
    put(raw[at:])
    return "\n".join(line.rstrip() for line in lines)


class AtATerminal:
    """`digest ARGS` in its own process, its stderr a pseudo-terminal (so it draws its progress bar
    as it does for a user) and its stdout a pipe. `wait_for(text)` returns once the terminal shows
    `text`: an event of the run itself, not a guess at how long it takes."""

    def __init__(self, args: Sequence[object], *, env: dict[str, str] | None = None, cwd: Path = PROJECT_ROOT):
        import fcntl
        import pty
        import struct
        import sys
        import termios

        master, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # no line wraps
        self.process = subprocess.Popen([sys.executable, "-m", "digest.cli", *map(str, args)], cwd=cwd,
                                        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=terminal)
        os.close(terminal)
        self.pid = self.process.pid
        self._raw = b""
        self._closed = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
        self._reader.start()

    def _read(self, master: int) -> None:
        try:
            while True:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the process and its children closed the terminal
                    data = b""
                with self._changed:
                    self._raw += data
                    self._closed = not data
                    self._changed.notify_all()
                if not data:
                    return
        finally:
            os.close(master)

    @property
    def stderr(self) -> str:
        """What the terminal shows now."""
        with self._changed:
            return screen(self._raw.decode("utf-8", "replace"))

    def wait_for(self, text: str, timeout: float = 300) -> str:
        """Wait until the terminal shows `text` (anywhere it has been, progress bar included); the
        test fails if the process ends first or `timeout` passes (a hang on a busy machine's scale,
        not a speed limit)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while text not in self._raw.decode("utf-8", "replace"):
                if self._closed:
                    pytest.fail(f"the run ended (exit {self.process.wait()}) before it showed {text!r}:\n"
                                f"{screen(self._raw.decode('utf-8', 'replace'))}")
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    pytest.fail(f"{text!r} not shown within {timeout} s:\n{screen(self._raw.decode('utf-8', 'replace'))}")
        return self.stderr

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """(exit code, stdout, what the terminal shows) once the process has ended."""
        stdout, _ = self.process.communicate(timeout=timeout)
        self._reader.join(timeout)
        return self.process.returncode, stdout.decode("utf-8", "replace"), self.stderr

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
