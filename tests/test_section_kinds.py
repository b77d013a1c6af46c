"""A section kind is defined once (digest/sections.py): adding one, a one-sentence "Why it matters"
under every topic, takes its definition, a prompt file and the config, nothing else.

The kind is registered through the public definitions alone; `digest run` writes it (the real model,
and the fake engine beside it), `digest check --config` accepts the post (and without the config,
which expects only Benefits and Ramifications, does not), and the real Hugo binary shows it on the
page. A bad definition or a config naming a kind nobody defined is one line and exit 3."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import describe
from digest import resources
from digest.check import parse_post
from digest.errors import EXIT_CONFIG, EXIT_INVALID, ConfigError
from digest.markdown import unescape_inline
from digest.quality import check_clean
from digest.sections import (BENEFITS, DATED, DEFAULT_KINDS, KINDS, POST, PREDICTION, PREDICTION_SUBJECTS,
                             PREDICTION_YEARS, SUBJECT_FIELDS, SectionKind, check_kinds, kinds_of, prediction_grammar)
from digest.text import clean_paragraph, clean_prediction, first_sentence
from test_hugo import SITE, article_of, hugo_binary



def one_sentence(raw: str, min_words: int, max_words: int, labels) -> str:
    """The kind's own cleaner: the first finished sentence of the cleaned paragraph."""
    return first_sentence(clean_paragraph(raw, min_words, max_words, labels))


WHY = SectionKind("why", "Why it matters", clean=one_sentence,
                  checks=("on_topic", "no_loops", "complete", "clean", "faithful", "no_title_echo"))
WHY_PROMPT = '${title}\n${context}\n\nIn one sentence, say why "${title}" matters to people.\n'
DAY = "2026-01-02"
PARAGRAPH = re.compile(r"^   - \*(.+?):\*\n\n     (.+)$", re.M)


@pytest.fixture
def why(monkeypatch):
    """The kind, known for the test only (checked as `kinds_of` checks every kind a config names)."""
    check_kinds([*KINDS.values(), WHY])
    monkeypatch.setitem(KINDS, WHY.name, WHY)
    return WHY


def site_with_why(tmp_path: Path, *, sections=("benefits", "ramifications", "why"), prompt: bool = True,
                  extra: str = "") -> tuple[Path, Path]:
    """A copy of the test Hugo site, a prompts folder with why.txt, and a config naming the kind."""
    site = tmp_path / "site"
    shutil.copytree(SITE, site)
    prompts = tmp_path / "prompts"
    shutil.copytree(resources.prompts_dir(), prompts)
    if prompt:
        (prompts / "why.txt").write_text(WHY_PROMPT, encoding="utf-8")
    config = tmp_path / "digest.toml"
    names = ", ".join(f'"{s}"' for s in sections)
    config.write_text(f'[generation]\nprompts_dir = "prompts"\nsections = [{names}]\nexamples = false\n{extra}\n'
                      '[feeds.topics]\ncount = 2\n[feeds.trending]\ncount = 2\n', encoding="utf-8")
    return site, config


def hugo_article(site: Path, post: Path) -> str:
    proc = subprocess.run([str(hugo_binary()), "--source", str(site), "--logLevel", "warn",
                           "--cacheDir", str(site.parent / "hugo-cache")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not re.search(r"\b(WARN|ERROR)\b", proc.stdout + proc.stderr), proc.stdout + proc.stderr
    page = site / "public" / "posts" / post.stem / "index.html"
    return article_of(page.read_text(encoding="utf-8"))


def written_and_shown(run_cli, site: Path, config: Path, post: Path) -> None:
    """The post has the three paragraphs of every topic, digest check accepts it only when told the
    config, and Hugo shows "Why it matters" with its sentence."""
    text = post.read_text(encoding="utf-8")
    found = PARAGRAPH.findall(text)
    assert [label for label, _ in found] == ["Benefits", "Ramifications", "Why it matters"] * 2, text
    for label, paragraph in found:
        assert paragraph.strip()
        if label == "Why it matters":
            assert len(re.findall(r"[.!?][\"'”’)\]]*(?:\s|$)", unescape_inline(paragraph))) == 1, paragraph  # one sentence

    for strict in ([], ["--strict"]):
        checked = run_cli("check", *strict, "--config", config, post)
        assert checked.exit_code == 0, describe(checked)
    unaware = run_cli("check", post)  # expects Benefits and Ramifications only
    assert unaware.exit_code == EXIT_INVALID and "unexpected text in topic 1: '- *Why it matters:*'" in unaware.stdout

    parsed, problems = parse_post(text, kinds_of(["benefits", "ramifications", "why"]))
    assert problems == []
    article = hugo_article(site, post)
    shown = [html.unescape(p) for p in re.findall(r"<p><em>Why it matters:</em></p>\s*<p>(.*?)</p>", article, re.S)]
    assert shown == [unescape_inline(t.paragraphs["Why it matters"]) for t in parsed.topics] and len(shown) == 2
    assert all("<" not in s for s in shown)


@pytest.mark.model
def test_a_new_section_kind_is_written_by_the_model_checked_and_built_by_hugo(why, tmp_path, run_cli):
    site, config = site_with_why(tmp_path, extra="max_tokens = 64\nretries = 0\n")
    result = run_cli("run", "--config", config, "--sample-feeds", "--out", site, "--date", DAY, "--threads", 1,
                     "--quiet")
    assert result.exit_code == 0, describe(result)
    post = Path(result.stdout.strip().splitlines()[-1])
    written_and_shown(run_cli, site, config, post)


def test_a_new_section_kind_with_the_fake_engine(why, tmp_path, run_cli):
    site, config = site_with_why(tmp_path)
    result = run_cli("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", site, "--date", DAY,
                     "--quiet")
    assert result.exit_code == 0, describe(result)
    post = Path(result.stdout.strip().splitlines()[-1])
    written_and_shown(run_cli, site, config, post)
    # The built-in kinds' requests and seeds did not move: the same post without the kind has the
    # same Benefits and Ramifications.
    plain_site, plain_config = site_with_why(tmp_path / "plain", sections=("benefits", "ramifications"))
    plain = run_cli("run", "--config", plain_config, "--engine", "fake", "--sample-feeds", "--out", plain_site,
                    "--date", DAY, "--quiet")
    assert plain.exit_code == 0, describe(plain)
    plain_text = Path(plain.stdout.strip().splitlines()[-1]).read_text(encoding="utf-8")
    with_why = [(label, p) for label, p in PARAGRAPH.findall(post.read_text(encoding="utf-8")) if label != "Why it matters"]
    assert with_why == PARAGRAPH.findall(plain_text)


@pytest.mark.parametrize("kind, message", [
    (SectionKind("gains", "Benefits"), "section kind 'gains': its label 'benefits' is already kind 'benefits''s"),
    (SectionKind("benefits", "Gains"), "section kind 'benefits': its name 'benefits' is already kind 'benefits''s"),
    (SectionKind("why", "Why it *matters*"), "section kind 'why': label 'Why it *matters*' must be words"),
    (SectionKind("why", "Why", checks=("length", "date")), "section kind 'why': unknown quality check 'date'"),
    (SectionKind("why", "Why", fields=frozenset({"title", "summary"})),
     "section kind 'why': field 'summary' is not one digest fills in (a topic kind's: context, title)"),
    (SectionKind("why", "Why", template="../why"), "section kind 'why': template '../why' is not a plain file name"),
])
def test_a_bad_definition_is_one_clear_line(kind, message):
    with pytest.raises(ConfigError) as caught:
        check_kinds([*KINDS.values(), kind])
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert "why" not in KINDS and "gains" not in KINDS and kinds_of() == DEFAULT_KINDS


def test_a_kind_without_its_prompt_file_fails_before_the_model_with_one_line(why, tmp_path, run_cli):
    site, config = site_with_why(tmp_path, prompt=False)
    result = run_cli("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", site, "--date", DAY)
    assert result.exit_code == EXIT_CONFIG, describe(result)
    assert result.stderr.strip().splitlines() == [f"digest: error: prompt template missing: {tmp_path / 'prompts' / 'why.txt'}"]
    assert not list((site / "content" / "posts").glob(f"{DAY}*"))


@pytest.mark.parametrize("sections, message", [
    (("benefits", "why"), "[generation] sections: unknown section kind 'why' (known: benefits, ramifications)"),
    (("ramifications", "benefits"), "[generation] sections: 'ramifications' must come after 'benefits'"),
    (("prediction",), "[generation] sections: unknown section kind 'prediction'"),
])
def test_a_config_naming_an_undefined_kind_is_one_line_in_run_and_check(tmp_path, run_cli, sections, message):
    site, config = site_with_why(tmp_path, sections=sections)
    for args in (("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", site),
                 ("check", "--config", config, tmp_path / "any.md")):
        result = run_cli(*args)
        assert result.exit_code == EXIT_CONFIG, describe(result)
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"digest: error: {config}:3: {message}"), line  # the file and line of `sections`


def test_examples_may_show_the_new_kind(why, tmp_path):
    from datetime import date

    from digest.prompts import Templates, example_turns

    _, _ = site_with_why(tmp_path)
    (tmp_path / "prompts" / "examples.txt").write_text(
        "== why\ntitle: Robots fold laundry\ntext: A lab's robot folds shirts.\n--\nIt frees hours of chores.\n",
        encoding="utf-8")
    kinds = kinds_of(["benefits", "ramifications", "why"])
    templates = Templates.load(tmp_path / "prompts", kinds)
    turns = example_turns(templates, date(2026, 1, 2))
    assert [t.content for t in turns] == [
        WHY_PROMPT.replace("${title}", "Robots fold laundry").replace("${context}", "What it says: A lab's robot folds shirts.").strip(),
        "It frees hours of chores."]
    # A post without the kind leaves its examples out; a kind nobody defined is one line.
    assert Templates.load(tmp_path / "prompts").examples() == []
    KINDS.pop("why")
    with pytest.raises(ConfigError, match=r"example kind 'why' is not one of benefits, ramifications, predictions$"):
        Templates.load(tmp_path / "prompts")


QUANTUM = "Quantum computing"


@pytest.fixture
def quantum(monkeypatch):
    """A third prediction subject, added to the kind's definition for the test only."""
    kind = dataclasses.replace(PREDICTION, subjects=(*PREDICTION.subjects, QUANTUM),
                               needles=(*PREDICTION.needles, "quantum"))
    monkeypatch.setitem(KINDS, PREDICTION.name, kind)
    return kind


def test_a_new_kind_and_a_new_prediction_subject_take_sections_py_alone(why, quantum, tmp_path, run_cli):
    """Written by `digest run`, its label cleaned away, checked by `digest check` (tolerant and
    strict) and scored by `digest eval`, with nothing but the definitions (and the kind's prompt)."""
    site, config = site_with_why(tmp_path)
    result = run_cli("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", site, "--date", DAY,
                     "--quiet")
    assert result.exit_code == 0, describe(result)
    post = Path(result.stdout.strip().splitlines()[-1])
    text = post.read_text(encoding="utf-8")
    parsed, problems = parse_post(text, kinds_of(["benefits", "ramifications", "why"]))
    assert problems == [] and [p.subject for p in parsed.predictions] == [*PREDICTION_SUBJECTS, QUANTUM]
    for strict in ([], ["--strict"]):
        checked = run_cli("check", *strict, "--config", config, post)
        assert checked.exit_code == 0, describe(checked)

    # Tolerant: the subject as the published series would write it is known by its needle; strict is not
    # fooled; a post without it lacks it.
    line = next(x for x in text.splitlines() if x.startswith(f"- **{QUANTUM}**"))
    drifted = tmp_path / "drifted.md"
    drifted.write_text(text.replace(line, line.replace(f"**{QUANTUM}**", "**Quantum Computing (QC)**")), encoding="utf-8")
    assert run_cli("check", "--config", config, drifted).exit_code == 0
    strict = run_cli("check", "--strict", "--config", config, drifted)
    assert strict.exit_code == EXIT_INVALID and "strict: the predictions must be exactly" in strict.stdout
    missing = tmp_path / "missing.md"
    missing.write_text(text.replace(line + "\n", ""), encoding="utf-8")
    lacking = run_cli("check", "--config", config, missing)
    assert lacking.exit_code == EXIT_INVALID and f"no prediction for {QUANTUM}" in lacking.stdout, describe(lacking)

    # Cleaned: the new kind's label, where any kind's answer starts with it, is removed, and the
    # quality check `clean` rejects it inside a text.
    assert WHY.cleaned("**Why it matters:** It frees hours of chores. And more", 3, 60) == "It frees hours of chores."
    assert BENEFITS.cleaned("Why it matters: Doctors read scans faster.", 3, 60) == "Doctors read scans faster."
    echo = check_clean("Scans get faster. Why it matters: doctors save time.")
    assert not echo.passed and "a section label" in echo.why

    # Scored: every section of the new kind by its own checks, the new subject by the prediction's.
    evaluated = run_cli("eval", "--config", config, "--engine", "fake", "--json", resources.samples_dir() / "topics.xml")
    assert evaluated.exit_code == 0, describe(evaluated)
    results = json.loads(evaluated.stdout)["results"]
    whys = [r for r in results if r["kind"] == "why"]
    assert len(whys) == 2 and all(list(r["checks"]) == list(WHY.checks) for r in whys)
    (scored,) = [r for r in results if r["key"].endswith(f"prediction:{QUANTUM}")]
    assert list(scored["checks"]) == list(PREDICTION.checks) and scored["text"]


def decade_grammar(day):
    """The milestone's own grammar: "Month YYYY: reason" within ten years of the post's year."""
    return prediction_grammar(day).replace(
        " | ".join(f'"{y}"' for y in range(day.year + 1, day.year + 1 + PREDICTION_YEARS)),
        " | ".join(f'"{y}"' for y in range(day.year + 1, day.year + 11)))


# A second post-level kind, in one definition: its subject, template, grammar, scorer and checks.
MILESTONE = SectionKind("milestone", "Milestone", template="milestones", place=POST, fields=SUBJECT_FIELDS,
                        subjects=("Fusion power",), needles=("fusion",), grammar=decade_grammar,
                        clean=clean_prediction, scorer=DATED, checks=("date", "reasoning", "clean"))
MILESTONE_PROMPT = "Today is ${date}. By when will ${subject} reach its next milestone? A month, a year, one sentence why.\n"


def test_a_second_post_level_kind_in_one_definition_is_written_checked_scored_and_rendered(monkeypatch, tmp_path,
                                                                                        run_cli):
    """Nothing but the definition (and its prompt file): the plan orders it after the predictions,
    its prompt and grammar make its requests, the judge scores it by its own scorer and checks, the
    post shows it where its kind puts it, and `digest check --strict` and the round trip accept it."""
    from datetime import date

    from digest.config import load_config
    from digest.pipeline import judge_of, requests_of, templates_of
    from digest.render import render
    from digest.sections import plan
    from digest.select import Story

    check_kinds([*KINDS.values(), MILESTONE])
    monkeypatch.setitem(KINDS, MILESTONE.name, MILESTONE)
    site, config = site_with_why(tmp_path, sections=("benefits", "ramifications"), prompt=False)
    (tmp_path / "prompts" / "milestones.txt").write_text(MILESTONE_PROMPT, encoding="utf-8")

    kinds = kinds_of(["benefits"])
    assert [(s.key, s.kind.name, s.topic, s.pair) for s in plan(["Robots fold laundry"], kinds)] == [
        ("benefits:Robots fold laundry", "benefits", 0, None),
        *((f"prediction:{s}", "prediction", None, None) for s in PREDICTION_SUBJECTS),
        ("milestone:Fusion power", "milestone", None, None)]

    loaded = load_config(config)
    day = date(2026, 1, 2)
    templates = templates_of(loaded)
    stories = [Story("Robots fold laundry", "https://example.com/a", excerpt="A lab's robot folds shirts.")]
    (asked,) = [r for r in requests_of(loaded, stories, day, templates) if r.key == "milestone:Fusion power"]
    assert asked.messages[-1].content == MILESTONE_PROMPT.strip().replace("${date}", "January 02, 2026").replace(
        "${subject}", "fusion power") and '"2036"' in asked.grammar and '"2037"' not in asked.grammar
    judge = judge_of(loaded, stories, day, templates)
    assert [c.name for c in judge.score(asked.key, "May 2030: Plasma control keeps improving in every lab.").checks] \
        == ["date", "reasoning", "clean"]
    assert not judge.score(asked.key, "May 2025: Plasma control keeps improving in every lab.").passed

    result = run_cli("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", site, "--date", DAY,
                     "--quiet")
    assert result.exit_code == 0, describe(result)
    text = Path(result.stdout.strip().splitlines()[-1]).read_text(encoding="utf-8")
    last = text.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"- \*\*Fusion power\*\* \(\w+ 20(2[7-9]|3[0-6])\): .+", last), last
    for strict in ([], ["--strict"]):
        checked = run_cli("check", *strict, "--config", config, Path(result.stdout.strip().splitlines()[-1]))
        assert checked.exit_code == 0, describe(checked)
    parsed, problems = parse_post(text, kinds_of(["benefits", "ramifications"]))
    assert problems == [] and render(parsed) == text
    assert [p.subject for p in parsed.predictions] == [*PREDICTION_SUBJECTS, "Fusion power"]
