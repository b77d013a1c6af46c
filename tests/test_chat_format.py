"""`[model] chat_format` / `--chat-format`: the chat template where a GGUF has none, or instead of its
own: one of llama.cpp's built-in templates by name, or a Jinja file; the registry's for its models;
recorded in the manifest and held to by replay. No model is loaded here except where marked."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import describe
from digest.config import Config, load_config
from digest.engine.base import Message
from digest.engine.chat import ChatFormatter, builtin_templates, is_template_file, template_source
from digest.errors import EXIT_MODEL, InputChangedError, ModelError
from digest.replay import _check_family

pytest.importorskip("llama_cpp")

DATA = Path(__file__).resolve().parent / "data" / "templates"
MESSAGES = (Message("system", "Be brief."), Message("user", "What is new?"))


def test_the_built_in_names_are_llama_cpps_and_a_path_is_told_from_a_name():
    names = builtin_templates()
    assert {"chatml", "gemma", "llama3", "granite-4.0", "mistral-v7"} <= set(names)
    assert [is_template_file(v) for v in ("gemma", "granite-4.0", "t.jinja", "dir/t", "./x.j2")] == [
        False, False, True, True, True]


def test_the_gemma_built_in_folds_the_system_prompt_into_the_user_turn_after_the_bos():
    source = template_source({}, "m.gguf", "gemma")
    assert (source.text, source.builtin, source.chat_format) == ("gemma", True, "gemma")
    fmt = ChatFormatter(source, bos_token="<bos>", eos_token="<eos>", model_label="m.gguf", add_bos=True)
    assert fmt(MESSAGES) == "<bos><start_of_turn>user\nBe brief.\n\nWhat is new?<end_of_turn>\n<start_of_turn>model\n"
    record = fmt.describe()
    assert (record["chat_format"], record["builtin"], len(record["sha256"])) == ("gemma", True, 64)
    # Another built-in is another template, and another hash.
    chatml = ChatFormatter(template_source({}, "m.gguf", "chatml"), bos_token="", eos_token="", add_bos=False)
    assert chatml(MESSAGES).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert chatml.describe()["sha256"] != record["sha256"]


def test_a_chat_format_overrides_the_ggufs_own_and_a_jinja_file_is_read(tmp_path):
    assert template_source({"tokenizer.chat_template": "{{ x }}"}, "m.gguf").text == "{{ x }}"
    assert template_source({"tokenizer.chat_template": "{{ x }}"}, "m.gguf", "chatml").builtin
    jinja = DATA / "google-gemma-2-2b-it.jinja"
    source = template_source({}, "m.gguf", str(jinja))
    assert (source.builtin, source.chat_format) == (False, str(jinja))
    fmt = ChatFormatter(source, bos_token="<bos>", eos_token="<eos>")
    assert fmt(MESSAGES).startswith("<bos><start_of_turn>user\nBe brief.\n\nWhat is new?")  # folded by digest


@pytest.mark.parametrize("value, says", [
    ("nosuch", "unknown chat format 'nosuch' for model m.gguf: give the name of one of llama.cpp's built-in templates (bailing"),
    ("missing/t.jinja", "chat format missing/t.jinja: cannot read the Jinja template"),
])
def test_an_unknown_name_or_an_unreadable_file_is_one_line_exit_5(value, says):
    with pytest.raises(ModelError) as caught:
        template_source({}, "m.gguf", value)
    assert caught.value.exit_code == EXIT_MODEL and "\n" not in str(caught.value)
    assert str(caught.value).startswith(says)


def test_a_jinja_file_that_fails_on_digests_prompts_is_one_line_exit_5(tmp_path):
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}{{ raise_exception('no ' + m.role) }}{% endfor %}", encoding="utf-8")
    fmt = ChatFormatter(template_source({}, "m.gguf", str(bad)), bos_token="", eos_token="", model_label="m.gguf")
    with pytest.raises(ModelError) as caught:
        fmt(MESSAGES)
    assert caught.value.exit_code == EXIT_MODEL and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"model m.gguf: chat format {bad} fails on digest's prompt: no user")
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}", encoding="utf-8")
    with pytest.raises(ModelError, match=f"chat format {broken} is not valid Jinja"):
        ChatFormatter(template_source({}, "m.gguf", str(broken)), bos_token="", eos_token="")


def test_the_config_names_it_relative_to_itself_and_the_registry_names_gemmas(tmp_path):
    (tmp_path / "digest.toml").write_text('[model]\nchat_format = "templates/mine.jinja"\n', encoding="utf-8")
    config = load_config(tmp_path / "digest.toml")
    assert config.engine_settings.chat_format == str((tmp_path / "templates" / "mine.jinja").resolve())
    assert Config().engine_settings.chat_format == ""  # SmolLM2: its GGUF's own
    gemma = Config()
    gemma.model.path = str(gemma.model_path.parent / "gemma-3-270m-q4_k_m.gguf")
    assert gemma.engine_settings.chat_format == "gemma" and gemma.engine_settings.record()["chat_format"] == "gemma"
    gemma.model.chat_format = "chatml"
    assert gemma.engine_settings.chat_format == "chatml"  # the user's, over the registry's


def test_replay_holds_to_the_chat_format_and_its_jinja_files_text(tmp_path):
    jinja = tmp_path / "t.jinja"
    jinja.write_text("{{ messages }}", encoding="utf-8")
    config = Config()
    config.model.chat_format = str(jinja)
    fmt = ChatFormatter(template_source({}, "m.gguf", str(jinja)), bos_token="", eos_token="")
    manifest = {"engine": {"chat_format": str(jinja), "chat_template": fmt.describe()}}
    assert _check_family(config, manifest) is config
    jinja.write_text("{{ messages }}!", encoding="utf-8")
    with pytest.raises(InputChangedError, match=f"chat template {jinja} has changed: sha256 expected {fmt.sha256}"):
        _check_family(config, manifest)
    with pytest.raises(InputChangedError, match="the chat format has changed: the run's prompts were written by "
                                                "chatml, now it would be"):
        _check_family(config, {"engine": {"chat_format": "chatml"}})


@pytest.mark.model
def test_run_with_an_unknown_chat_format_is_one_line_exit_5_and_writes_nothing(run_cli, tmp_path):
    result = run_cli("run", "--quiet", "--sample-feeds", "--out", tmp_path, "--chat-format", "nosuch", "--date", "2026-11-23")
    assert result.exit_code == EXIT_MODEL, describe(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digest: error: unknown chat format 'nosuch' for model "), describe(result)
    assert not list((tmp_path / "content").rglob("*.md")) if (tmp_path / "content").exists() else True
