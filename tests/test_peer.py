"""llama.cpp's llama-server as the bench's peer: the requests as JSON, the HTTP client against a tiny
fake OpenAI-compatible server on 127.0.0.1, the server process's start and stop with stand-in
binaries, and the real llama-server (built by `make peers`) when it is there."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, describe
from digest.bench.workload import bench_requests
from digest.config import Config
from digest.engine.base import derive_seed
from digest.errors import EXIT_GENERATION, EXIT_OUTPUT, PeerError
from digest.bench.peer import (
    ENDPOINT,
    LlamaServer,
    request_json,
    requests_json,
    run_batch,
    server_for,
    write_requests,
)

LLAMA_SERVER = PROJECT_ROOT / "build" / "llama.cpp" / "bin" / "llama-server"


@pytest.fixture(scope="module")
def requests():
    return bench_requests(Config())


# ---------------------------------------------------------------------------------------------
# The requests as JSON


def test_requests_json_carries_everything_a_peer_needs(requests):
    config = Config()
    data = requests_json(requests)
    assert len(data) == len(requests) == 14
    assert json.loads(json.dumps(data)) == data  # plain JSON
    g = config.generation
    for request, item in zip(requests, data):
        assert item["key"] == request.key
        assert item["messages"] == [{"role": m.role, "content": m.content} for m in request.messages]
        roles = [m["role"] for m in item["messages"]]  # system, the example exchanges, the request
        assert roles[0] == "system" and roles[-1] == "user" and roles[1:-1] == ["user", "assistant"] * ((len(roles) - 2) // 2)
        assert item["max_tokens"] == g.max_tokens
        assert item["seed"] == request.seed == derive_seed(g.seed, request.key)
        for name in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n"):
            assert item[name] == getattr(request.sampling, name), name
        assert ("grammar" in item) == bool(request.grammar)
        assert ("stop" in item) == bool(request.stop)
        assert "ignore_eos" not in item
    grammars = [item for item in data if "grammar" in item]
    assert len(grammars) == 2 and all("root" in item["grammar"] for item in grammars)  # the two predictions
    assert len({item["seed"] for item in data}) == 14


def test_write_requests_writes_the_json_whole(tmp_path, requests):
    path = tmp_path / "requests.json"
    path.write_text("old")
    write_requests(path, requests)
    assert json.loads(path.read_text(encoding="utf-8")) == requests_json(requests)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_bench_requests_out_writes_the_file_then_a_missing_server_is_one_line(run_cli, tmp_path, requests):
    out, missing = tmp_path / "bench-requests.json", tmp_path / "no" / "llama-server"
    result = run_cli("bench", "--requests-out", out, "--llama-server", missing, "--no-memory")
    assert result.exit_code == EXIT_GENERATION, describe(result)
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == (f"digest: error: llama-server not found at {missing}: build it with `make peers` "
                         "(build/llama.cpp/bin/llama-server)"), describe(result)
    assert "Traceback" not in result.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == requests_json(requests)


def test_requests_out_where_no_folder_can_be_is_an_output_error(run_cli, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    out = tmp_path / "a-file" / "requests.json"
    result = run_cli("bench", "--requests-out", out, "--llama-server", tmp_path / "missing")
    assert result.exit_code == EXIT_OUTPUT, describe(result)
    assert result.stderr.strip() == f"digest: error: cannot write the requests to {out}: File exists"
    assert (tmp_path / "a-file").read_text() == "not a folder"


# ---------------------------------------------------------------------------------------------
# The client, against a fake OpenAI-compatible server


@pytest.fixture
def fake_chat(chat_server, http_server):
    """`fake_chat(answer, barrier=0)`: the scripted chat server (conftest's ScriptedChat) answering
    `answer(body)`: (the chat, the server's port)."""
    return lambda answer, barrier=0: (chat_server(answer, barrier=barrier), http_server.port)


def completion(tokens: int, prompt: int = 50) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": "x" * tokens}}],
                       "usage": {"prompt_tokens": prompt, "completion_tokens": tokens,
                                 "total_tokens": prompt + tokens}}).encode()


def test_all_requests_go_at_once_and_completion_tokens_are_summed(fake_chat, requests):
    data = requests_json(requests)
    # Each answer's length comes from its own body, so a mixed-up count would show.
    chat, port = fake_chat(lambda body: (200, completion(body["seed"] % 97)), barrier=len(data))
    started = time.perf_counter()
    wall, usages = run_batch("127.0.0.1", port, data)
    tokens = sum(u["completion_tokens"] for u in usages)
    outside = time.perf_counter() - started
    assert tokens == sum(item["seed"] % 97 for item in data)
    assert chat.last_out - chat.first_in <= wall <= outside  # from the first send to the last answer, in seconds
    assert len(chat.bodies) == len(data)
    by_seed = {body["seed"]: body for body in chat.bodies}
    for item in data:
        body = by_seed[item["seed"]]
        assert body["cache_prompt"] is False and body["stream"] is False
        assert "key" not in body
        assert {k: v for k, v in body.items() if k not in ("cache_prompt", "stream")} == \
            {k: v for k, v in item.items() if k != "key"}


def test_usage_per_request_comes_back_in_request_order(fake_chat, requests):
    data = requests_json(requests)[:5]
    chat, port = fake_chat(lambda body: (200, completion(body["seed"] % 13, prompt=body["seed"] % 7)))
    _, usages = run_batch("127.0.0.1", port, data)
    assert [u["completion_tokens"] for u in usages] == [item["seed"] % 13 for item in data]
    assert [u["prompt_tokens"] for u in usages] == [item["seed"] % 7 for item in data]


@pytest.mark.parametrize("status, payload, message", [
    (500, b'{"error": {"code": 500, "message": "the context is full", "type": "server_error"}}',
     "answered HTTP 500: the context is full"),
    (503, b'{"error": "Loading model"}', "answered HTTP 503: Loading model"),
    (200, b"<html>not json</html>", "answered HTTP 200 with a body that is not JSON: '<html>not json</html>'"),
    (200, b'{"choices": []}', "answered without usage.completion_tokens"),
    (200, b'{"usage": {"completion_tokens": "12"}}', "answered without usage.completion_tokens"),
])
def test_a_bad_answer_is_one_line_naming_the_url_and_the_request(fake_chat, requests, status, payload, message):
    data = requests_json(requests)[:3]
    key = data[1]["key"]
    chat, port = fake_chat(lambda body: (status, payload) if body["seed"] == data[1]["seed"] else (200, completion(5)))
    with pytest.raises(PeerError) as caught:
        run_batch("127.0.0.1", port, data)
    assert str(caught.value) == f"http://127.0.0.1:{port}{ENDPOINT} (request '{key}') {message}"
    assert "\n" not in str(caught.value)


def test_nothing_listening_is_a_peer_error(requests):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    data = requests_json(requests)[:2]
    with pytest.raises(PeerError) as caught:
        run_batch("127.0.0.1", port, data, timeout=5)
    assert str(caught.value) == f"http://127.0.0.1:{port}{ENDPOINT} (request '{data[0]['key']}') failed: cannot connect: [Errno 111] Connection refused"


def test_a_server_that_does_not_answer_in_time_is_a_timeout(fake_chat, requests):
    release = threading.Event()
    chat, port = fake_chat(lambda body: (release.wait(10), (200, completion(1)))[1])
    data = requests_json(requests)[:1]
    try:
        with pytest.raises(PeerError, match=r"\(request '.*'\) failed: no (answer|complete answer|data) within the 1 s timeout"):
            run_batch("127.0.0.1", port, data, timeout=1)
    finally:
        release.set()


# ---------------------------------------------------------------------------------------------
# The server process, with stand-in binaries


def stand_in(tmp_path: Path, source: str) -> Path:
    """An executable Python script that takes llama-server's command line."""
    path = tmp_path / "llama-server"
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o755)
    return path


FAKE_SERVER = r'''
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
args = sys.argv[1:]
port = int(args[args.index("--port") + 1])
started = time.monotonic()
with open(sys.argv[0] + ".args", "w") as f:
    json.dump(args, f)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        ready = time.monotonic() - started > 0.5  # "loading the model" for half a second
        self.reply(200 if ready else 503, {"status": "ok" if ready else "loading model"})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.reply(200, {"usage": {"prompt_tokens": 3, "completion_tokens": body["max_tokens"]}})
    def reply(self, status, data):
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
    def log_message(self, *a):
        pass

ThreadingHTTPServer.request_queue_size = 64
ThreadingHTTPServer((args[args.index("--host") + 1], port), H).serve_forever()
'''


def test_the_server_is_started_with_digest_s_settings_waited_for_and_stopped(tmp_path, requests):
    binary, model = stand_in(tmp_path, FAKE_SERVER), tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    data = requests_json(requests)
    with LlamaServer(binary, model, parallel=14, ctx=14 * 512, threads=2, cache_type_k="q8_0") as server:
        process = server.process
        assert server._healthy()
        wall, tokens = server.run_once(data)
        assert tokens == sum(item["max_tokens"] for item in data)
        assert server.prompt_tokens == 3 * len(data)
    assert process.poll() is not None  # stopped on the way out
    args = json.loads(Path(f"{binary}.args").read_text())
    assert args == ["-m", str(model), "-np", "14", "-c", str(14 * 512), "-t", "2", "-fa", "off", "--no-kv-unified",
                    "-ctk", "q8_0", "--no-repack", "--host", "127.0.0.1", "--port", str(server.port), "-ngl", "0"]


def test_a_server_that_dies_while_starting_reports_its_own_error(tmp_path):
    binary = stand_in(tmp_path, 'import sys\nprint("main: loading model")\n'
                                'print("srv    load_model: failed to load model, \'m.gguf\'")\n'
                                'print("srv    operator(): exiting due to model loading error")\nsys.exit(1)\n')
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(PeerError) as caught:
        with LlamaServer(binary, model, parallel=2, ctx=512, threads=1):
            pass
    assert str(caught.value) == ("llama-server exited with code 1 while starting: "
                                 "srv    load_model: failed to load model, 'm.gguf'")


def test_a_server_that_never_becomes_healthy_is_stopped(tmp_path):
    binary = stand_in(tmp_path, 'import time\nprint("loading", flush=True)\ntime.sleep(60)\n')
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    server = LlamaServer(binary, model, parallel=2, ctx=512, threads=1, startup_timeout=1)
    with pytest.raises(PeerError, match=r"did not become healthy on 127\.0\.0\.1:\d+ within 1 s: loading"):
        server.__enter__()
    assert server.process is None


def test_a_port_in_use_a_missing_binary_or_model_are_one_line(tmp_path):
    binary, model = stand_in(tmp_path, FAKE_SERVER), tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PeerError, match=f"^port {port} on 127.0.0.1 is in use: pick another for llama-server$"):
            LlamaServer(binary, model, parallel=1, ctx=256, threads=1, port=port).__enter__()
    with pytest.raises(PeerError, match="^llama-server not found at .*: build it with `make peers`"):
        LlamaServer(tmp_path / "nothing", model, parallel=1, ctx=256, threads=1).__enter__()
    with pytest.raises(PeerError, match="^model file not found: "):
        LlamaServer(binary, tmp_path / "none.gguf", parallel=1, ctx=256, threads=1).__enter__()
    binary.chmod(0o644)
    with pytest.raises(PeerError, match="is not executable$"):
        LlamaServer(binary, model, parallel=1, ctx=256, threads=1).__enter__()


# ---------------------------------------------------------------------------------------------
# The real llama-server


@pytest.mark.model
@pytest.mark.skipif(not LLAMA_SERVER.is_file(), reason="llama-server not built (`make peers`, ~15 min; not in CI)")
@pytest.mark.skipif(not Config().model_path.is_file(), reason="embedded model missing (make install)")
def test_the_real_llama_server_reads_the_same_prompts_and_answers_them(requests, batched_engine):
    config = Config()
    chosen = [requests[0], requests[1], next(r for r in requests if r.grammar)]
    data = [dict(item, max_tokens=16) for item in requests_json(chosen)]
    digest_prompt_tokens = [len(batched_engine.tokenize(r)) for r in chosen]
    with server_for(LLAMA_SERVER, config.model_path, chosen, threads=2) as server:
        process = server.process
        assert server.command[server.command.index("-np") + 1] == "3"
        cells = int(server.command[server.command.index("-c") + 1]) // 3
        assert cells % 256 == 0 and cells >= max(digest_prompt_tokens) + config.generation.max_tokens
        started = time.perf_counter()
        wall, usages = run_batch(server.host, server.port, data)
        outside = time.perf_counter() - started
        # The server formats the messages with the model's chat template as digest does: same prompts.
        assert [u["prompt_tokens"] for u in usages] == digest_prompt_tokens
        assert all(0 < u["completion_tokens"] <= 16 for u in usages)
        assert 0 < wall <= outside  # the batch's time, in seconds
    assert process.poll() is not None


def test_the_server_formats_with_digest_s_template_where_it_is_not_the_gguf_s(tmp_path):
    """A GGUF without a template (Gemma 3 270M) is formatted by digest with the registry's built-in
    (`gemma`) or a Jinja file: llama-server is told the same, or it would write other prompts."""
    from digest.bench.peer import server_command

    base = dict(parallel=14, ctx=7168, threads=2, port=8080)
    assert "--chat-template" not in server_command(Path("s"), Path("m.gguf"), **base)
    assert server_command(Path("s"), Path("m.gguf"), chat_format="gemma", **base)[-3:] == [
        "--no-jinja", "--chat-template", "gemma"]
    jinja = str(tmp_path / "t.jinja")
    assert server_command(Path("s"), Path("m.gguf"), chat_format=jinja, **base)[-3:] == [
        "--jinja", "--chat-template-file", jinja]
