"""`digest models` and the registry: pull from a real HTTP server on 127.0.0.1 (with Range, cut
transfers, wrong hashes, 404s, stalls), verify on truncated and corrupt files, list, path, --model."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import frontmatter
import pytest

from conftest import describe, serve
from digest import embedded
from digest.config import DEFAULT_MODEL_FILE, Config
from digest.errors import ConfigError, EXIT_MODEL, ModelError
from digest.registry import DEFAULT_REGISTRY, load_registry, resolve_model

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Files:
    """A file server that understands `Range: bytes=N-` and can misbehave on purpose."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the connection drops
    stall: dict[str, float] = field(default_factory=dict)  # path -> seconds of silence after the headers
    ignore_range: bool = False
    seen: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def files():
    state = Files()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            state.seen.append({"path": self.path, **dict(self.headers.items())})
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(body):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            rest = body[start:]
            self.send_header("Content-Length", str(len(rest)))
            self.end_headers()
            try:
                if self.path in state.stall:
                    time.sleep(state.stall[self.path])
                if self.path in state.cut:
                    self.wfile.write(rest[: state.cut.pop(self.path)])  # then the connection closes
                    return
                self.wfile.write(rest)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    with serve(Handler) as base:
        state.base = base
        yield state


def write_registry(folder: Path, url: str = "", *, sha256: str = SHA, size: int = len(PAYLOAD), extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text(
        '# a test registry\ndefault = "tiny"\n\n'
        f'[[model]]\nname = "tiny"\nfile = "tiny.gguf"\nsize = {size}\nsha256 = "{sha256}"\n'
        f'url = "{url}"\nlicence = "MIT"\n\n'
        '[[model]]\nname = "other"\nfile = "other.gguf"\nurl = "http://127.0.0.1:9/other.gguf"\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def registry(tmp_path, files):
    files.files["/tiny.gguf"] = PAYLOAD
    return write_registry(tmp_path / "models", files.base + "/tiny.gguf")


def models(run_cli, registry: Path, *args):
    return run_cli("models", "--registry", registry, *args)


# ---------------------------------------------------------------------------------------------
# pull


def test_pull_downloads_verifies_and_moves_into_place(run_cli, registry, files):
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == 0, describe(result)
    target = registry.parent / "tiny.gguf"
    assert target.read_bytes() == PAYLOAD
    assert result.stdout.strip() == str(target)
    assert not list(registry.parent.glob("*.part"))
    assert "Range" not in files.seen[0]
    assert files.seen[0]["User-Agent"].startswith("digest/")

    again = models(run_cli, registry, "pull", "tiny")
    assert again.exit_code == 0 and "already present" in again.stderr
    assert len(files.seen) == 1  # verified locally, nothing downloaded


def test_pull_resumes_a_transfer_cut_midway(run_cli, registry, files):
    files.cut["/tiny.gguf"] = 120_000
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == 0, describe(result)
    assert (registry.parent / "tiny.gguf").read_bytes() == PAYLOAD
    assert [r.get("Range") for r in files.seen] == [None, "bytes=120000-"]


def test_pull_resumes_in_a_later_run_after_giving_up(run_cli, registry, files):
    files.cut["/tiny.gguf"] = 70_000
    first = models(run_cli, registry, "pull", "tiny", "--retries", "0")
    assert first.exit_code == EXIT_MODEL, describe(first)
    assert "broke off after 70000" in first.stderr and "again to resume" in first.stderr
    part = registry.parent / "tiny.gguf.part"
    assert part.read_bytes() == PAYLOAD[:70_000]
    assert not (registry.parent / "tiny.gguf").exists()

    second = models(run_cli, registry, "pull", "tiny")
    assert second.exit_code == 0, describe(second)
    assert files.seen[-1]["Range"] == "bytes=70000-"
    assert (registry.parent / "tiny.gguf").read_bytes() == PAYLOAD
    assert not part.exists()


def test_pull_starts_again_when_the_server_ignores_range(run_cli, registry, files):
    (registry.parent / "tiny.gguf.part").write_bytes(b"x" * 5000)  # stale bytes that must not stay
    files.ignore_range = True
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == 0, describe(result)
    assert files.seen[0]["Range"] == "bytes=5000-"
    assert (registry.parent / "tiny.gguf").read_bytes() == PAYLOAD


def test_pull_with_a_wrong_hash_deletes_the_download(run_cli, tmp_path, files):
    files.files["/tiny.gguf"] = PAYLOAD
    wrong = "0" * 64
    registry = write_registry(tmp_path / "models", files.base + "/tiny.gguf", sha256=wrong)
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == EXIT_MODEL, describe(result)
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("digest: error: ") and "Traceback" not in result.stderr
    assert f"sha256 {SHA}, expected {wrong}" in message and "corrupt" in message
    assert not list(registry.parent.glob("tiny*"))


def test_pull_of_a_file_the_server_does_not_have(run_cli, tmp_path, files):
    registry = write_registry(tmp_path / "models", files.base + "/missing.gguf")
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == EXIT_MODEL, describe(result)
    assert "HTTP 404" in result.stderr and files.base + "/missing.gguf" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(registry.parent.glob("tiny*"))


def test_pull_gives_up_on_a_silent_server_after_its_timeout(run_cli, registry, files):
    files.stall["/tiny.gguf"] = 5  # then the whole file: without the timeout, the pull would succeed
    result = models(run_cli, registry, "pull", "tiny", "--timeout", "0.5", "--retries", "0")
    assert result.exit_code == EXIT_MODEL, describe(result)
    assert "broke off" in result.stderr or "timed out" in result.stderr


def test_pull_of_an_unknown_name(run_cli, registry):
    result = models(run_cli, registry, "pull", "nope")
    assert result.exit_code == EXIT_MODEL
    assert "unknown model 'nope'" in result.stderr and "tiny, other" in result.stderr


# ---------------------------------------------------------------------------------------------
# verify, list, path


def test_verify_names_truncated_and_corrupt_files(run_cli, registry):
    target = registry.parent / "tiny.gguf"
    target.write_bytes(PAYLOAD[:1000])
    truncated = models(run_cli, registry, "verify", "tiny")
    assert truncated.exit_code == EXIT_MODEL
    assert truncated.stdout.strip() == f"tiny: truncated (1000 of {len(PAYLOAD)} bytes)"

    target.write_bytes(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1]))
    corrupt = models(run_cli, registry, "verify", "tiny")
    assert corrupt.exit_code == EXIT_MODEL
    assert corrupt.stdout.startswith("tiny: corrupt (sha256 ") and f"expected {SHA}" in corrupt.stdout

    target.write_bytes(PAYLOAD + b"\0")
    assert "corrupt" in models(run_cli, registry, "verify", "tiny").stdout

    target.write_bytes(PAYLOAD)
    good = models(run_cli, registry, "verify", "tiny")
    assert good.exit_code == 0, describe(good)
    assert good.stdout.startswith("tiny: ok")


def test_verify_without_a_name_checks_the_present_files(run_cli, registry):
    (registry.parent / "tiny.gguf").write_bytes(PAYLOAD)
    result = models(run_cli, registry, "verify")
    assert result.exit_code == 0 and result.stdout.splitlines() == [f"tiny: ok ({len(PAYLOAD)} bytes, sha256 {SHA[:16]}…)"]
    (registry.parent / "other.gguf").write_bytes(b"GGUF")  # no size or sha256 in the registry
    result = models(run_cli, registry, "verify")
    assert result.exit_code == EXIT_MODEL
    assert "other: unverifiable (the registry has no sha256 for it, so it cannot be verified)" in result.stdout


def test_verify_of_a_missing_file(run_cli, registry):
    result = models(run_cli, registry, "verify", "tiny")
    assert result.exit_code == EXIT_MODEL and result.stdout.startswith("tiny: missing")


def test_list_marks_the_default_and_what_is_present(run_cli, registry):
    (registry.parent / "other.gguf.part").write_bytes(b"x" * 2_000_000)
    empty = models(run_cli, registry, "list")
    assert empty.exit_code == 0, describe(empty)
    lines = empty.stdout.splitlines()
    assert lines[0].split() == ["NAME", "FILE", "SIZE", "PRESENT"]
    assert lines[1].split() == ["*", "tiny", "tiny.gguf", "0.3", "MB", "no"]
    assert lines[2].split()[:4] == ["other", "other.gguf", "unknown", "partial"]
    (registry.parent / "tiny.gguf").write_bytes(PAYLOAD)
    assert models(run_cli, registry, "list").stdout.splitlines()[1].split()[-1] == "yes"


def test_path_prints_where_the_file_belongs(run_cli, registry):
    missing = models(run_cli, registry, "path", "tiny")
    assert missing.exit_code == EXIT_MODEL
    assert missing.stdout.strip() == str(registry.parent / "tiny.gguf")
    assert "digest models pull tiny" in missing.stderr
    (registry.parent / "tiny.gguf").write_bytes(PAYLOAD)
    present = models(run_cli, registry, "path", "tiny")
    assert present.exit_code == 0 and present.stdout.strip() == str(registry.parent / "tiny.gguf")


def test_registry_comes_from_the_environment(run_cli, registry, monkeypatch):
    monkeypatch.setenv("DIGEST_REGISTRY", str(registry))
    assert run_cli("models", "list").stdout.splitlines()[1].split()[1] == "tiny"


# ---------------------------------------------------------------------------------------------
# registry errors name the file and line


@pytest.mark.parametrize("extra, line, words", [
    ('\n[[model]]\nname = "third"\nfile = "c.gguf"\nsizes = 3\n', 20, "unknown key 'sizes'"),
    ('\n[[model]]\nname = "third"\nfile = "c.gguf"\nsha256 = "abc"\n', 20, "64 lowercase hex"),
    ('\n[[model]]\nname = "tiny"\nfile = "c.gguf"\n', 18, "listed twice"),
    ('\n[[model]]\nname = "third"\nfile = "../c.gguf"\n', 19, "plain file name"),
    ('\n[[model]]\nname = "third"\nfile = "c.gguf"\nsize = "big"\n', 20, "must be an integer"),
    ('\n[[model]]\nname = "third"\n', 17, "needs 'file'"),
])
def test_registry_errors_name_file_and_line(tmp_path, extra, line, words):
    path = write_registry(tmp_path, "http://x/tiny.gguf", extra=extra)
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    assert str(caught.value).startswith(f"{path}:{line}: "), caught.value
    assert words in str(caught.value)


def test_registry_default_must_be_listed(tmp_path):
    path = write_registry(tmp_path, "http://x/tiny.gguf")
    path.write_text(path.read_text().replace('default = "tiny"', 'default = "huge"'))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:2: default model 'huge'"):
        load_registry(path)


def test_registry_bad_toml_and_missing_file(tmp_path, run_cli):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_registry(bad)
    result = run_cli("models", "--registry", tmp_path / "none.toml", "list")
    assert result.exit_code == 3 and "model registry not found" in result.stderr


# ---------------------------------------------------------------------------------------------
# --model NAME


def test_run_model_by_registry_name(run_cli, registry, tmp_path, monkeypatch):
    (registry.parent / "tiny.gguf").write_bytes(PAYLOAD)
    monkeypatch.setenv("DIGEST_REGISTRY", str(registry))
    out = tmp_path / "site"
    result = run_cli("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", "2026-01-02", "--model", "tiny")
    assert result.exit_code == 0, describe(result)
    assert frontmatter.load(result.stdout.splitlines()[-1])["tags"][-1] == "tiny"


def test_run_model_unknown_name_lists_the_known_ones(run_cli, registry, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGEST_REGISTRY", str(registry))
    result = run_cli("run", "--engine", "fake", "--sample-feeds", "--out", tmp_path, "--model", "gpt-5")
    assert result.exit_code == EXIT_MODEL
    assert "'gpt-5' is neither a file nor a model" in result.stderr and "known: tiny, other" in result.stderr
    assert not (tmp_path / "content").exists()


def test_run_model_name_not_downloaded_says_how_to_get_it(registry):
    with pytest.raises(ModelError, match="digest models pull tiny"):
        resolve_model("tiny", registry)


def test_model_path_is_taken_as_is(tmp_path):
    gguf = tmp_path / "any name.bin"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)) == gguf
    assert resolve_model("some/dir/x.gguf") == Path("some/dir/x.gguf").resolve()


# ---------------------------------------------------------------------------------------------
# the project's own registry


def test_project_registry_default_is_the_embedded_model():
    registry = load_registry(DEFAULT_REGISTRY)
    default = registry.models[registry.default]
    assert (default.file, default.size, default.sha256) == (embedded.FILE_NAME, embedded.SIZE, embedded.SHA256)
    assert default.file == DEFAULT_MODEL_FILE and registry.file_of(default) == Config().model_path
    assert len(registry.models) >= 4
    for entry in registry.models.values():
        assert entry.size and entry.sha256 and entry.licence and entry.chat_template
        if entry is not default:
            # pinned to a revision, so that the bytes cannot change under the hash
            assert re.match(r"^https://huggingface\.co/[^/]+/[^/]+/resolve/[0-9a-f]{40}/", entry.url), entry.url
            assert entry.url.endswith("/" + entry.file)


@pytest.mark.model
def test_embedded_model_verifies(run_cli):
    result = run_cli("models", "verify", "smollm2-135m")
    assert result.exit_code == 0, describe(result)
    assert result.stdout.startswith("smollm2-135m: ok")
