"""Other families' chat templates with the real engines: copies of the embedded model whose GGUF
`tokenizer.chat_template` is replaced (the `gguf` package, at test time). SmolLM2 shares ChatML's
tokens with Qwen, so with Qwen3's template it writes a real post; a thinking block forced by a
grammar shows what the batched and sequential engines do with one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import describe
from digest.config import Config
from digest.engine.base import Message, Request, Sampling
from digest.errors import EXIT_MODEL

gguf = pytest.importorskip("gguf")
pytestmark = pytest.mark.model

TEMPLATES = Path(__file__).resolve().parent / "data" / "templates"
QWEN3 = (TEMPLATES / "Qwen-Qwen3-0.6B.jinja").read_text(encoding="utf-8")
QWEN25 = (TEMPLATES / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text(encoding="utf-8")
DAY = "2026-11-23"


def with_template(source: Path, target: Path, template: str) -> Path:
    """A copy of the GGUF `source` at `target` whose chat template is `template`."""
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(source, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(target, arch=arch, endianess=reader.endianess)
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.CHAT_TEMPLATE:
                                            MetadataDetails(gguf.GGUFValueType.STRING, template)}, [])
    return target


def embedded_as(tmp_path_factory, name: str, template: str) -> Path:
    """A copy of the embedded model, named `name`, with another chat template."""
    source = Config().model_path
    if not source.is_file():
        pytest.skip(f"embedded model missing: {source}")
    return with_template(source, tmp_path_factory.mktemp("models") / name, template)


@pytest.fixture(scope="module")
def qwen3_model(tmp_path_factory) -> Path:
    return embedded_as(tmp_path_factory, "smollm2-as-qwen3.gguf", QWEN3)


@pytest.fixture(scope="module")
def qwen25_model(tmp_path_factory) -> Path:
    return embedded_as(tmp_path_factory, "smollm2-as-qwen2.5.gguf", QWEN25)


@pytest.fixture(scope="module")
def batched(qwen3_model):
    from digest.engine.batched import BatchedEngine

    engine = BatchedEngine(qwen3_model, thinking=True, thinking_tokens=64)
    yield engine
    engine.close()


def test_a_chatml_family_template_writes_a_valid_post_with_the_batched_engine(qwen25_model, run_cli, tmp_path):
    """Qwen2.5's template (ChatML, as SmolLM2's own, with its own default system text): a whole post.
    (With Qwen3's, SmolLM2 reads an empty think block it never saw in training and writes worse text;
    the engines' handling of that template is tested below on single requests.)"""
    result = run_cli("run", "--model", qwen25_model, "--engine", "batched", "--sample-feeds", "--out", tmp_path,
                     "--date", DAY, "--topics", "2")
    assert result.exit_code == 0, describe(result)
    (post,) = (tmp_path / "content" / "posts").glob("*.md")
    assert run_cli("check", post).exit_code == 0
    text = post.read_text(encoding="utf-8")
    assert "<think>" not in text and "\\<think" not in text
    manifest = json.loads(next((tmp_path / ".digest" / "manifests").glob("*.json")).read_text())
    template = manifest["engine"]["chat_template"]
    assert template["thinking_template"] is False and template["enable_thinking"] is False
    assert template["system_role"] == "kept" and template["reads_date"] is False
    assert manifest["stats"]["thinking_tokens"] == 0
    import hashlib

    assert template["sha256"] == hashlib.sha256(QWEN25.encode("utf-8")).hexdigest()


# A thinking block the model must write: its grammar asks for one, then a short answer.
THINK = 'root ::= "<think>" (" hmm")+ "</think>" " Sparse models cut costs" [a-z ]* "."'
REQUEST = Request("benefits:x", (Message("system", "Answer briefly."), Message("user", "Who gains from sparse models?")),
                  seed=7, max_tokens=24, sampling=Sampling(temperature=0.0), grammar=THINK)


def test_batched_engine_cuts_the_block_and_gives_it_its_own_budget(batched):
    (result,) = batched.generate([REQUEST]).results
    assert "<think>" not in result.text and "hmm" not in result.text
    assert result.text.startswith("Sparse models cut costs")
    assert 0 < result.thinking_tokens < result.completion_tokens
    # The block did not count against max_tokens: the answer alone may use all 24.
    assert result.completion_tokens - result.thinking_tokens <= REQUEST.max_tokens
    assert result.completion_tokens > REQUEST.max_tokens or result.finish_reason == "stop"
    batched.thinking_budget = 3
    try:
        (short,) = batched.generate([REQUEST]).results
    finally:
        batched.thinking_budget = 64
    assert (short.text, short.finish_reason) == ("", "thinking")
    # The block ends at its budget: the first token at or past 3 once it is open (the grammar may spell
    # "<think>" itself in more than 3 tokens, "<" "t" "h" "ink" ">").
    pieces = [batched._model.piece(t) for t in short.tokens]
    opened = next(i + 1 for i in range(len(pieces)) if b"".join(pieces[: i + 1]).lstrip().startswith(b"<think>"))
    assert short.thinking_tokens == short.completion_tokens == max(3, opened)


def test_sequential_engine_cuts_the_block_too(qwen3_model):
    from digest.engine.sequential import SequentialEngine

    engine = SequentialEngine(qwen3_model, thinking=True, thinking_tokens=64)
    try:
        (result,) = engine.generate([REQUEST]).results
    finally:
        engine.close()
    assert "<think>" not in result.text and "hmm" not in result.text
    assert result.text.startswith("Sparse models cut costs")
    assert 0 < result.thinking_tokens < result.completion_tokens


def test_a_template_that_fails_is_exit_5_one_line_nothing_written(run_cli, tmp_path):
    # (A template that is not Jinja at all: tests/test_chat_templates.py, the same ModelError path.)
    template = ("{% for m in messages %}{% if m.role == 'assistant' %}{{ raise_exception('Conversation roles must "
                "alternate') }}{% endif %}{{ m.content }}{% endfor %}")
    words = "Conversation roles must alternate"
    model = with_template(Config().model_path, tmp_path / "broken-template.gguf", template)
    result = run_cli("run", "--model", model, "--sample-feeds", "--out", tmp_path / "site", "--date", DAY)
    assert result.exit_code == EXIT_MODEL, describe(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("digest: error:")]
    assert len(errors) == 1 and words in errors[0] and "broken-template.gguf" in errors[0]
    assert "Traceback" not in result.stderr and not list((tmp_path / "site").rglob("*.md"))
