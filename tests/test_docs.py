"""The README and docs/ stay true to the CLI: every `digest ...` command they quote exists
(`digest ... --help` answers), every --flag quoted with it is one of that command's options, the cheap
ones run as shown (help texts, `init`, `check` on a post, `models list`: in-process, in a tmp folder),
and the exit codes docs/errors.md lists are the ones the CLI returns."""

from __future__ import annotations

import glob
import re
import shutil
from pathlib import Path

import pytest
import typer.main

from conftest import PROJECT_ROOT, describe
from digest import errors
from digest.cli import app

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# `digest` then a space where a shell would run it: at the start of the code (after a `$ ` prompt), after
# `&&`, `;`, `|` or `$(`, or at the end of a path (`.venv/bin/digest run`). Code only, never prose.
INVOCATION = re.compile(r"(?:^\s*(?:\$\s+)?|(?<=[;&|(/])\s*)digest ((?:[^\s`|;&#)]+ ?)+)")


def code_of(text: str) -> list[tuple[int, str]]:
    """(line number, code) for every line of a fenced block and every `inline span`."""
    found, fenced = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            found.append((number, line.split(" #", 1)[0]))
        else:
            found += [(number, span) for span in re.findall(r"`([^`]+)`", line)]
    return found


def invocations(text: str) -> list[tuple[int, list[str]]]:
    """(line, words) of each `digest ...` command quoted in code."""
    return [(number, match.group(1).split()) for number, code in code_of(text) for match in INVOCATION.finditer(code)]


def resolve(group, words: list[str]) -> tuple[list[str], object, list[str]]:
    """The command path the words name, its (click) command, and the --flags quoted with it. Words that
    are all options (`digest --version`) name the program itself: the path is empty, the command the group."""
    path, command = [], group
    for word in words:
        sub = getattr(command, "commands", {}).get(word)  # only a group has sub-commands
        if sub is None:
            break
        path.append(word)
        command = sub
    flags = [w.split("=", 1)[0] for w in words if w.startswith("--") and len(w) > 2]
    return path, command, flags


def names_a_command(path: list[str], words: list[str]) -> bool:
    return bool(path) or (bool(words) and all(w.startswith("-") for w in words))


def options_of(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


@pytest.fixture(scope="module")
def help_exit():
    """`digest PATH --help`'s exit code, asked once per command path for all the pages."""
    from typer.testing import CliRunner

    codes: dict[tuple[str, ...], int] = {}

    def exit_code(path: list[str]) -> int:
        if tuple(path) not in codes:
            codes[tuple(path)] = CliRunner().invoke(app, [*path, "--help"]).exit_code
        return codes[tuple(path)]

    return exit_code


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_quoted_command_and_flag_exists(page, help_exit):
    group = typer.main.get_command(app)
    quoted = invocations(page.read_text(encoding="utf-8"))
    problems = []
    for number, words in quoted:
        path, command, flags = resolve(group, words)
        if not path and not (flags and set(flags) <= options_of(group)):  # `digest --version` is the group's
            problems.append(f"{page.name}:{number}: 'digest {' '.join(words)}': no such command")
            continue
        code = help_exit(path)
        if code != 0:
            problems.append(f"{page.name}:{number}: 'digest {' '.join(path)} --help' exits {code}")
        unknown = sorted(set(flags) - options_of(command))
        if unknown:
            problems.append(f"{page.name}:{number}: 'digest {' '.join(path)}' has no {', '.join(unknown)}")
    assert not problems, "\n".join(problems)
    if page.name in ("README.md", "configuration.md", "air-gapped.md", "models.md"):
        assert quoted, f"{page.name} quotes no digest command: is the pattern still finding them?"


def test_the_checker_finds_a_command_or_flag_that_does_not_exist():
    group = typer.main.get_command(app)
    text = "Run `digest run --sample-feeds --no-such-flag` or\n```\ndigest frobnicate --x\n```\n"
    (n1, run), (n2, frob) = invocations(text)
    path, command, flags = resolve(group, run)
    assert (n1, path) == (1, ["run"]) and set(flags) - options_of(command) == {"--no-such-flag"}
    assert n2 == 3 and resolve(group, frob)[0] == []
    # A sub-command, a flag with its value, and prose that merely names the program are told apart.
    path, command, flags = resolve(group, invocations("`digest models pull --retries=3 x`")[0][1])
    assert path == ["models", "pull"] and flags == ["--retries"] and "--retries" in options_of(command)
    assert invocations("digest is a tool; the digest: warning: line; digest.toml") == []
    assert invocations("```\nDescription=Daily AI digest post\nwhat digest writes\n```") == []
    assert [w for _, w in invocations("```\n0 6 * * * cd /b && /opt/bin/digest run --quiet\n```")] == [["run", "--quiet"]]


def test_every_docs_page_is_linked_from_the_readme():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


# ---------------------------------------------------------------------------------------------
# The cheap commands, run as the docs show them


DAY = "2026-01-02"
# Commands quick enough to run for every place they are quoted; the rest (run, eval, bench, fetch,
# replay, pull...) are checked above for their names and flags only.
CHEAP = {("init",), ("check",), ("models", "list")}
# Words the docs write for "put yours here".
PLACEHOLDER = re.compile(r"^(?:[A-Z]+|\.\.\.|~.*|.*\[.*)$")


@pytest.fixture(scope="module")
def a_post(tmp_path_factory) -> Path:
    """A post as `digest run` writes it (fake engine, the bundled sample feeds)."""
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("site")
    model = out / "tiny.gguf"  # a stand-in for the fake engine, quick for the manifest to hash
    model.write_bytes(b"GGUF" + bytes(256))
    result = CliRunner().invoke(app, ["run", "--engine", "fake", "--sample-feeds", "--topics", "1", "--model", str(model),
                                      "--out", str(out), "--date", DAY, "--quiet"])
    assert result.exit_code == 0, describe(result)
    return Path(result.stdout.strip().splitlines()[-1])


def cheap_invocations() -> list[tuple[str, int, list[str]]]:
    group = typer.main.get_command(app)
    found = []
    for page in PAGES:
        for number, words in invocations(page.read_text(encoding="utf-8")):
            path, _, _ = resolve(group, words)
            if not names_a_command(path, words):
                continue  # the test above reports it
            if (tuple(path) in CHEAP or "--help" in words or not path) and words not in [w for _, _, w in found]:
                found.append((page.name, number, words))  # each command once, where it is first quoted
    return found


def as_run(words: list[str], folder: Path, post: Path) -> list[str]:
    """The words as a shell in `folder` would pass them: globs expanded there, a placeholder made a
    name in it; `check` with no post is given one, and a `--config FILE` that is not there is written."""
    args: list[str] = []
    for word in words:
        if word.startswith("-"):
            args.append(word)
        elif any(c in word for c in "*?"):
            args += sorted(glob.glob(word, root_dir=folder)) or [word]
        elif PLACEHOLDER.match(word):
            args.append("placeholder")
        else:
            args.append(word)
    if words[:1] == ["check"]:
        if all(a.startswith("-") or (i and args[i - 1] == "--config") for i, a in enumerate(args[1:], 1)):
            args.append(str(post))
        if "--config" in args and not (folder / args[args.index("--config") + 1]).exists():
            from digest.config import default_toml

            (folder / args[args.index("--config") + 1]).write_text(default_toml(), encoding="utf-8")
    return args


def test_the_cheap_commands_the_docs_show_run_as_shown(run_cli, tmp_path, monkeypatch, a_post):
    quoted = cheap_invocations()
    assert {tuple(w[:1]) for _, _, w in quoted} >= {("init",), ("check",), ("models",)}, quoted
    problems = []
    for n, (page, number, words) in enumerate(quoted):
        folder = tmp_path / str(n)
        (folder / "content" / "posts").mkdir(parents=True)
        shutil.copy(a_post, folder / "content" / "posts" / a_post.name)
        monkeypatch.chdir(folder)
        args = as_run(words, folder, a_post)
        result = run_cli(*args)
        if result.exit_code != 0 or "Traceback" in result.stdout + result.stderr:
            problems.append(f"{page}:{number}: 'digest {' '.join(args)}' exits {result.exit_code}: "
                            f"{(result.stderr or result.stdout).strip()[-300:]}")
        elif words[:1] == ["init"]:
            written = [Path(line) for line in result.stdout.split()]
            if not written or not all(p.exists() for p in written):
                problems.append(f"{page}:{number}: 'digest {' '.join(args)}' wrote {written}")
    assert not problems, "\n".join(problems)


def documented_codes() -> dict[int, str]:
    """docs/errors.md's table: exit code -> meaning."""
    text = (PROJECT_ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    return {int(code): meaning for code, meaning in re.findall(r"^\| (\d+) \| (.+) \|$", text, re.M)}


def test_the_exit_codes_errors_md_lists_are_the_codes_digest_has():
    codes = documented_codes()
    assert set(codes) == {value for name, value in vars(errors).items() if name.startswith("EXIT_")} | {0}


def test_a_config_error_a_usage_error_and_a_bad_post_exit_as_errors_md_says(run_cli, tmp_path, monkeypatch, a_post):
    codes = documented_codes()
    code_of = lambda meaning: next(c for c, m in codes.items() if m.startswith(meaning))  # noqa: E731
    monkeypatch.chdir(tmp_path)
    assert run_cli("init").exit_code == 0
    config = tmp_path / "digest.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("max_tokens =", "max_token =", 1), encoding="utf-8")
    bad_config = run_cli("run", "--engine", "fake", "--sample-feeds", "--date", DAY)
    assert bad_config.exit_code == code_of("bad configuration"), describe(bad_config)
    line = bad_config.stderr.strip().splitlines()[-1]
    assert line.startswith("digest: error: ") and f"{config.resolve()}:" in line and "max_token" in line, line
    usage = run_cli("run", "--no-such-flag")
    assert usage.exit_code == code_of("bad command line"), describe(usage)
    broken = tmp_path / "broken.md"
    broken.write_text(a_post.read_text(encoding="utf-8").replace("## ", "", 1), encoding="utf-8")
    check = run_cli("check", broken)
    assert check.exit_code == code_of("`digest check` found problems"), describe(check)



def test_the_model_tables_give_the_sizes_and_speeds_models_list_prints():
    """A table row about a registry model (named in its first cell) gives its size as `digest models list` prints it and,
    where the row has a speed, the speed `models list` estimates (ranges cover the models they name)."""
    from digest.models import cli as models_cli
    from digest.models.registry import load_registry

    entries = load_registry().models.values()
    number = lambda text: float(text.replace(",", "").lstrip("~"))  # noqa: E731
    problems, checked = [], 0
    for page in PAGES:
        for line_no, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.startswith("|"):
                continue
            first = line.split("|")[1]  # the models the row is about (another cell may name its source)
            named = [e for e in entries if re.search(rf"(?<![\w.-]){re.escape(e.name)}(?![\w.-])", first)]
            sizes = [number(n) for pair in re.findall(r"([\d,.]+)(?:-([\d,.]+))? MB", line) for n in pair if n]
            speeds = [number(n) for pair in re.findall(r"~?([\d.]+)(?:-([\d.]+))? tok/s", line) for n in pair if n]
            for entry in named:
                size = number(models_cli._mb(entry.size).removesuffix(" MB"))
                speed = number(models_cli.speed_estimate(entry.size).removesuffix(" tok/s"))
                if sizes and size not in sizes:
                    problems.append(f"{page.name}:{line_no}: {entry.name} is {size:,} MB, not {sizes}")
                if speeds and speed not in speeds:
                    problems.append(f"{page.name}:{line_no}: {entry.name} is estimated at ~{speed} tok/s, not {speeds}")
                checked += bool(sizes)
    assert not problems, "\n".join(problems)
    assert checked >= len(entries), "the tables of docs/models.md name every model with its size"


def test_the_version_is_written_once_and_the_changelog_names_it():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    import digest
    from digest.config import default_toml
    from digest.http import DEFAULT_USER_AGENT

    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "digest.__version__"}
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (PROJECT_ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    assert releases and releases[0] == digest.__version__, "CHANGELOG.md's newest release is not __version__"
    assert f"digest/{digest.__version__} " in DEFAULT_USER_AGENT and DEFAULT_USER_AGENT in default_toml()
