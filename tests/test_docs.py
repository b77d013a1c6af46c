"""The README and docs/ stay true to the CLI: every `digest ...` command they quote exists
(`digest ... --help` answers), and every --flag quoted with it is one of that command's options."""

from __future__ import annotations

import re

import pytest
import typer.main

from conftest import PROJECT_ROOT
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
    """The command path the words name, its (click) command, and the --flags quoted with it."""
    path, command = [], group
    for word in words:
        sub = getattr(command, "commands", {}).get(word)  # only a group has sub-commands
        if sub is None:
            break
        path.append(word)
        command = sub
    flags = [w.split("=", 1)[0] for w in words if w.startswith("--") and len(w) > 2]
    return path, command, flags


def options_of(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_quoted_command_and_flag_exists(page, run_cli):
    group = typer.main.get_command(app)
    quoted = invocations(page.read_text(encoding="utf-8"))
    problems = []
    for number, words in quoted:
        path, command, flags = resolve(group, words)
        if not path and not (flags and set(flags) <= options_of(group)):  # `digest --version` is the group's
            problems.append(f"{page.name}:{number}: 'digest {' '.join(words)}': no such command")
            continue
        result = run_cli(*path, "--help")
        if result.exit_code != 0:
            problems.append(f"{page.name}:{number}: 'digest {' '.join(path)} --help' exits {result.exit_code}")
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
