"""What the command says when something is wrong, as a user meets it (issue 29): command-line mistakes
as one `digest: error:` line and exit 2, error lines printed as they are (no rich markup, no emoji
codes), --quiet, --version, eval's inputs, `init` onto a file that exists or where it cannot write,
replay of JSON that is no manifest, the model a wheel lacks, and the warning for GPU layers on a build
without a GPU backend. In-process, with the fake engine."""

from __future__ import annotations

import importlib.metadata
import json
import re
import sys

import pytest

from conftest import describe
from digest.config import load_config
from digest.errors import EXIT_CONFIG, EXIT_FEED, EXIT_INPUT_CHANGED, EXIT_MODEL, EXIT_OUTPUT, EXIT_USAGE, ConfigError

DAY = "2026-01-02"


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ digest: ")


def one_error_line(result) -> str:
    """The single line a failure prints: `digest: error: ...`, and nothing on stdout. (Without a
    terminal, as in the CLI runner, the phases before it are logged with their time: not errors.)"""
    assert result.stdout == "", describe(result)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("digest: error: "), describe(result)
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Error lines are printed as they are


def test_an_error_line_keeps_line_numbers_tags_and_emoji_codes(run_cli, tmp_path):
    folder = tmp_path / "[tag] :smile: x"
    folder.mkdir()
    config = folder / "digest.toml"
    config.write_text("\n" * 98 + "[generation]\nmax_token = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    message = str(caught.value)
    assert f"{config.resolve()}:100:" in message and "max_token" in message

    result = run_cli("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", tmp_path / "site")
    assert result.exit_code == EXIT_CONFIG, describe(result)
    assert result.stderr == f"digest: error: {message}\n"


def test_the_eval_table_prints_a_model_name_as_it_is(run_cli, tmp_path, write_feeds):
    feeds = write_feeds(directory=tmp_path / "feeds")
    model = tmp_path / "[bold]tiny :smile:.gguf"  # the fake engine is named after the file, never reads it
    result = run_cli("eval", feeds / "topics.xml", "--engine", "fake", "--model", model, "--topics", "1")
    assert result.exit_code == 0, describe(result)
    assert "[bold]tiny :smile:" in " ".join(result.stdout.split())


def test_a_missing_eval_input_is_named_as_given(run_cli, tmp_path):
    missing = tmp_path / "[b]bold[/b] :100:" / "t.rss"
    result = run_cli("eval", missing, "--engine", "fake")
    assert result.exit_code == EXIT_FEED, describe(result)
    assert one_error_line(result) == f"digest: error: feed file not found: {missing}"


# ---------------------------------------------------------------------------------------------
# Command-line mistakes: one line, exit 2


def usage_cases(tmp_path):
    folder = tmp_path / "feeds"
    folder.mkdir()
    fake = ["run", "--engine", "fake", "--sample-feeds", "--out", tmp_path / "site"]
    return {
        "date-basic-form": ([*fake, "--date", "20261120"], ("--date", "expected YYYY-MM-DD", "20261120")),
        "date-no-day": ([*fake, "--date", "2026-02-30"],
                        ("--date", "2026-02-30 is not a date: day is out of range for month")),
        "seed-not-a-number": ([*fake, "--seed", "abc"], ("--seed", "integer")),
        "two-feed-sources": (["run", "--engine", "fake", "--feeds-from", folder, "--snapshot", folder,
                              "--out", tmp_path / "site"], ("--feeds-from", "--snapshot")),
        "eval-set": (["eval", "--set", "bogus"], ("--set", "bogus")),
        "unknown-option": (["run", "--bogus"], ("--bogus",)),
        "missing-argument": (["replay"], ("missing argument", "manifest")),
        "unknown-command": (["rnu"], ("rnu",)),
    }


@pytest.mark.parametrize("case", ["date-basic-form", "date-no-day", "seed-not-a-number", "two-feed-sources",
                                  "eval-set", "unknown-option", "missing-argument", "unknown-command"])
def test_a_command_line_mistake_is_one_line_and_exit_2(run_cli, tmp_path, case):
    args, needles = usage_cases(tmp_path)[case]
    result = run_cli(*args)
    assert result.exit_code == EXIT_USAGE, describe(result)
    line = one_error_line(result)
    for needle in needles:
        assert needle in line, (needle, line)
    assert "--help'" in line  # where to read more
    assert not (tmp_path / "site").exists()


def test_the_installed_entry_point_prints_the_same_line(tmp_path, monkeypatch, capsys):
    from digest.cli import main

    monkeypatch.setattr(sys, "argv", ["digest", "run", "--seed", "abc"])
    with pytest.raises(SystemExit) as caught:
        main()
    assert caught.value.code == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("digest: error: invalid value for '--seed': ") and "integer" in line
    assert line.endswith(" (see 'digest run --help')")


def test_help_is_still_printed(run_cli):
    for args in (["--help"], ["run", "--help"], ["models", "--help"]):
        result = run_cli(*args)
        assert result.exit_code == 0, describe(result)
        assert result.stdout.startswith("Usage: ") and result.stderr == "", describe(result)


def test_version(run_cli):
    result = run_cli("--version")
    assert result.exit_code == 0, describe(result)
    assert result.stdout == f"digest {importlib.metadata.version('digest')}\n"


# ---------------------------------------------------------------------------------------------
# --quiet, eval inputs, init, replay, quantize


def test_quiet_prints_only_the_path_when_the_post_exists(run_cli, tmp_path):
    out = tmp_path / "[x] :smile: blog"
    args = ("run", "--engine", "fake", "--sample-feeds", "--out", out, "--date", DAY)
    first = run_cli(*args)
    assert first.exit_code == 0, describe(first)
    path = out / "content" / "posts" / f"{DAY}-ai-auto-summary.md"
    assert first.stdout.splitlines()[-1] == str(path)
    again = run_cli(*args)
    assert again.exit_code == 0, describe(again)
    assert again.stderr == (f"digest: a post for {DAY} already exists: {path} (use --force to replace it)\n")
    quiet = run_cli(*args, "--quiet")
    assert quiet.exit_code == 0, describe(quiet)
    assert quiet.stderr == "" and quiet.stdout == f"{path}\n"


def test_eval_reads_the_file_it_is_given(run_cli, tmp_path, write_feeds):
    feeds = write_feeds(directory=tmp_path / "feeds")
    given = tmp_path / "t.rss"
    given.write_bytes((feeds / "topics.xml").read_bytes())
    result = run_cli("eval", given, "--engine", "fake", "--topics", "1", "--json")
    assert result.exit_code == 0, describe(result)
    assert json.loads(result.stdout)["inputs"] == [str(given)]


def test_init_where_it_cannot_write_suggests_no_out_option(run_cli):
    result = run_cli("init", "/proc/digest-test/x.toml")
    assert result.exit_code == EXIT_OUTPUT, describe(result)
    line = one_error_line(result)
    assert "/proc/digest-test" in line and "--out" not in line


def test_init_over_an_existing_file_is_an_output_error(run_cli, tmp_path):
    path = tmp_path / "digest.toml"
    path.write_text("# mine\n", encoding="utf-8")
    result = run_cli("init", path)
    assert result.exit_code == EXIT_OUTPUT, describe(result)
    assert "--force" in one_error_line(result)
    assert path.read_text(encoding="utf-8") == "# mine\n"


@pytest.mark.parametrize("content", ["[1, 2]", '"a manifest"', "null"])
def test_replay_of_json_that_is_not_an_object(run_cli, tmp_path, content):
    manifest = tmp_path / "2026-01-02.json"
    manifest.write_text(content, encoding="utf-8")
    result = run_cli("replay", manifest)
    assert result.exit_code == EXIT_INPUT_CHANGED, describe(result)
    line = one_error_line(result)
    assert f"{manifest} is not a digest manifest" in line
    assert "Error" not in line and "indices" not in line


# ---------------------------------------------------------------------------------------------
# The model


def test_missing_model_in_a_wheel_says_how_to_pull_it(monkeypatch, tmp_path):
    from digest import resources
    from digest.errors import ModelError
    from digest.models.registry import check_gguf

    with pytest.raises(ModelError, match="run 'make install'"):
        check_gguf(tmp_path / "missing.gguf")
    shipped = resources.registry_file()  # a wheel carries its copy of the registry
    monkeypatch.setattr(resources, "in_checkout", lambda: False)
    monkeypatch.setattr(resources, "registry_file", lambda: shipped)
    with pytest.raises(ModelError) as caught:
        check_gguf(tmp_path / "missing.gguf")
    assert "digest models pull smollm2-135m" in str(caught.value) and "make" not in str(caught.value)


@pytest.mark.parametrize("gpu_backend", [False, True], ids=["cpu-build", "gpu-build"])
def test_gpu_layers_without_a_gpu_backend_are_warned_once(run_cli, tmp_path, monkeypatch, gpu_backend):
    from digest.engine import native

    monkeypatch.setattr(native, "gpu_offload_supported", lambda: gpu_backend)
    missing = tmp_path / "missing.gguf"  # the warning comes before the model is loaded
    result = run_cli("run", "--engine", "sequential", "--model", missing, "--n-gpu-layers", "-1", "--sample-feeds",
                     "--out", tmp_path / "site", "--date", DAY, "--quiet")
    assert result.exit_code == EXIT_MODEL, describe(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("digest: warning:")]
    if gpu_backend:
        assert warnings == []
    else:
        assert len(warnings) == 1 and "no GPU backend" in warnings[0] and "-1" in warnings[0], describe(result)
