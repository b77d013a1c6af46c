"""Shared helpers: feed documents written by the tests themselves, a feeds folder, the CLI runner,
and a tiny HTTP server on 127.0.0.1 for `digest.feeds.fetch`; and the `model` marker's rule."""

from __future__ import annotations

import inspect
import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
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
# A local HTTP server


@dataclass
class Server:
    base: str
    routes: dict[str, tuple[int, bytes, float]] = field(default_factory=dict)
    seen: list[dict[str, str]] = field(default_factory=list)
    handlers: dict[str, Callable] = field(default_factory=dict)

    def add(self, path: str, body: bytes = b"", status: int = 200, delay: float = 0.0) -> str:
        self.routes[path] = (status, body, delay)
        return self.base + path

    def handle(self, path: str, handler: Callable) -> str:
        """Answer `path` with `handler(request)`, which calls `request.reply(...)` or writes its own answer."""
        self.handlers[path] = handler
        return self.base + path


@pytest.fixture
def http_server():
    """A threaded HTTP server on 127.0.0.1 (port 0). `server.add(path, body, status, delay)`
    registers a route and returns its URL, `server.handle(path, handler)` a scripted one;
    `server.seen` records each request's headers."""
    state = Server(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state.seen.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
            if self.path in state.handlers:
                state.handlers[self.path](self)
                return
            status, body, delay = state.routes.get(self.path, (404, b"not found", 0.0))
            if delay:
                time.sleep(delay)
            self.reply(status, body)

        def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/atom+xml")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up (timeout tests)

        def log_message(self, *args):
            pass

    with serve(Handler) as base:
        state.base = base
        yield state


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that hung up is what some tests do on purpose


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
