"""Model faults through `digest run`: one line, exit 5 (model) or 7 (generation), no post.

Uses the real embedded model and broken copies of it made here: a truncated file, a file with its
chat template key renamed. The fake engine, told to write junk, checks the bounded retries."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from digest import engine as engine_pkg  # engine_of builds every engine through its create_engine
from digest.config import Config
from digest.engine.base import derive_seed
from digest.engine.fake import FakeEngine, fake_text
from digest.errors import EXIT_GENERATION, EXIT_MODEL
from test_cli import DAY, assert_one_error, no_post_written

MODEL = Config().model_path
TEMPLATE_KEY = b"tokenizer.chat_template"


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    data = MODEL.read_bytes()
    made = {}
    made["truncated-half"] = folder / "half.gguf"
    made["truncated-half"].write_bytes(data[: len(data) // 2])
    made["truncated-header"] = folder / "header.gguf"
    made["truncated-header"].write_bytes(data[:100])
    made["empty"] = folder / "empty.gguf"
    made["empty"].write_bytes(b"")
    made["not-gguf"] = folder / "weights.gguf"
    made["not-gguf"].write_bytes(b"\x00\x01PyTorch pickle, not GGUF" * 100)
    made["directory"] = folder / "dir.gguf"
    made["directory"].mkdir()
    # A model without a chat template: the GGUF key (length-prefixed) renamed in a copy, same length,
    # so every offset in the file stays as it was.
    entry = struct.pack("<Q", len(TEMPLATE_KEY)) + TEMPLATE_KEY
    assert data.count(entry) == 1
    made["no-chat-template"] = folder / "no-template.gguf"
    made["no-chat-template"].write_bytes(data.replace(entry, entry[:-1] + b"X"))
    return made


FAULTS = {
    "missing": ("missing", ("not found", "make install", "--model")),
    "truncated-half": ("truncated-half", ("cannot load model", "truncated or corrupt")),
    "truncated-header": ("truncated-header", ("cannot load model", "truncated or corrupt")),
    "empty": ("empty", ("not a GGUF model file",)),
    "not-gguf": ("not-gguf", ("not a GGUF model file",)),
    "directory": ("directory", ("not a file",)),
    "no-chat-template": ("no-chat-template", ("no chat template", "tokenizer.chat_template", "instruct model")),
}


@pytest.mark.model
@pytest.mark.parametrize("engine", ["batched", "sequential"])
@pytest.mark.parametrize("fault", FAULTS)
def test_model_fault_is_one_line_exit_5(run_cli, tmp_path, broken_models, fault, engine):
    kind, needles = FAULTS[fault]
    path = broken_models.get(kind, tmp_path / "no-such-model.gguf")
    out = tmp_path / "site"
    result = run_cli("run", "--sample-feeds", "--engine", engine, "--model", path, "--out", out, "--date", DAY)
    assert_one_error(result, EXIT_MODEL, str(path), *needles)
    assert no_post_written(out)


@pytest.mark.model
@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_prompt_too_long_for_the_context_is_exit_7(run_cli, tmp_path, engine):
    out = tmp_path / "site"
    result = run_cli("run", "--sample-feeds", "--engine", engine, "--ctx", 128, "--out", out, "--date", DAY)
    assert_one_error(result, EXIT_GENERATION, "--ctx", "prompt", "--max-tokens")
    assert no_post_written(out)


# ---------------------------------------------------------------------------------------------
# Generation that returns nothing usable: bounded retries with derived seeds, then exit 7


JUNK = ("", "   ", "no finished sentence here", "### Heading only\n---\n", "Benefits:", "**", "- - -")


def junk_engines(monkeypatch, respond) -> list[FakeEngine]:
    made: list[FakeEngine] = []

    def create(name, model_path, **kwargs):
        made.append(FakeEngine(respond=respond, model_name=Path(model_path).stem))
        return made[-1]

    monkeypatch.setattr(engine_pkg, "create_engine", create)
    return made


@pytest.mark.parametrize("junk", JUNK)
def test_junk_generation_is_retried_then_exit_7(run_cli, tmp_path, monkeypatch, junk):
    made = junk_engines(monkeypatch, lambda request: junk)
    out = tmp_path / "site"
    retries = Config().generation.retries
    result = run_cli("run", "--sample-feeds", "--out", out, "--date", DAY)
    line = assert_one_error(result, EXIT_GENERATION, "no usable text", f"in {retries + 1} tries", "--seed")
    assert no_post_written(out)
    (engine,) = made
    assert len(engine.calls) == 1 + retries, "the first round and `retries` more, no more"
    first, *again = engine.calls
    # Each retry asks again for every section (all junk), each time with a seed derived from its own.
    key = line.split("'")[1]
    seeds = [next(r.seed for r in call if r.key.split(" #")[0] == key) for call in engine.calls]
    assert seeds == [seeds[0], *(derive_seed(seeds[0], f"try{n}") for n in range(1, retries + 1))]
    assert all(len(call) == len(first) for call in again)


def test_junk_then_usable_text_succeeds_on_a_retry(run_cli, tmp_path, monkeypatch):
    # The first answer for each request is junk; the retry (another seed) gives usable text.
    made = junk_engines(monkeypatch, lambda r: fake_text(r) if r.seed not in first_seeds else "unfinished")
    first_seeds: set[int] = set()
    original = FakeEngine.generate

    def generate(self, requests, progress=None):
        if not self.calls:
            first_seeds.update(r.seed for r in requests)
        return original(self, requests, progress)

    monkeypatch.setattr(FakeEngine, "generate", generate)
    out = tmp_path / "site"
    result = run_cli("run", "--sample-feeds", "--out", out, "--date", DAY)
    assert result.exit_code == 0, result.stderr
    (engine,) = made
    assert 2 <= len(engine.calls) <= 1 + Config().generation.retries
    assert len(engine.calls[1]) == len(engine.calls[0])  # every section was tried again


@pytest.mark.model
def test_load_failure_quotes_llama_cpp_error_not_its_last_warning(broken_models):
    """ggml's ERROR level is 4 (3 is WARN): the message carries llama.cpp's error line."""
    from digest.engine.native import Model
    from digest.errors import ModelError

    with pytest.raises(ModelError) as caught:
        Model(broken_models["truncated-half"])
    message = str(caught.value)
    assert "(llama.cpp: " in message, message
    quoted = message.split("(llama.cpp: ", 1)[1]
    assert "error" in quoted.lower() or "fail" in quoted.lower(), message


def test_log_levels_are_ggml_own():
    """The callback keeps ERROR lines (4) only, joined across CONT pieces (5); WARN (3) is dropped."""
    from digest import llama_log

    warn = 3  # GGML_LOG_LEVEL_WARN
    llama_log.clear_errors()
    llama_log._log_callback(warn, b"a warning\n", None)
    assert llama_log.last_error() == ""
    llama_log._log_callback(llama_log.GGML_LOG_LEVEL_ERROR, b"llama_model_load: error loading model: ", None)
    llama_log._log_callback(llama_log.GGML_LOG_LEVEL_CONT, b"tensor data is not within the file bounds\n", None)
    llama_log._log_callback(warn, b"a later warning\n", None)
    assert llama_log.last_error() == (" (llama.cpp: llama_model_load: error loading model: "
                                      "tensor data is not within the file bounds)")
    llama_log.clear_errors()
