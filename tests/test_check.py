"""digest.check: the seeds pass, broken variants of seed 000 are reported at their line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digest.check import Problem, check_file, check_text, parse_post
from digest.errors import EXIT_CONFIG
from digest.markdown import escape_inline

SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


def seed(prefix: str) -> str:
    if not SEEDS.is_dir():
        pytest.skip(f"no seeds folder at {SEEDS}")
    (path,) = SEEDS.glob(f"{prefix}_*.txt")
    return path.read_text(encoding="utf-8")


def line_of(text: str, prefix: str) -> int:
    """1-based number of the first line that starts with `prefix`."""
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith(prefix):
            return number
    raise AssertionError(f"no line starts with {prefix!r}")


def first_whitespace_only_line(text: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), 1) if line and not line.strip())


# ---------------------------------------------------------------------------------------------
# The seeds


@pytest.mark.parametrize("prefix", ["000", "002", "004"])
def test_seed_passes_tolerant_check(prefix):
    assert check_text(seed(prefix)) == []


def test_seed_000_passes_strict_check():
    assert check_text(seed("000"), strict=True) == []


@pytest.mark.parametrize("prefix", ["002", "004"])
def test_drifted_seed_fails_strict_check_at_first_drift(prefix):
    text = seed(prefix)
    problems = check_text(text, strict=True)
    layout = [p for p in problems if p.message.startswith("layout differs")]
    assert layout == [
        Problem(
            first_whitespace_only_line(text),
            "layout differs from digest's own: expected '', found '   '",
        )
    ]


def test_seed_002_dates_are_not_month_year_in_strict_mode():
    text = seed("002")
    dated = [p for p in check_text(text, strict=True) if "Month YYYY" in p.message]
    assert [p.line for p in dated] == [
        line_of(text, "- **Artificial general intelligence**"),
        line_of(text, "- **Technological singularity**"),
    ]


@pytest.mark.parametrize(
    "prefix, dates, reasoning_start",
    [
        ("000", ("June 2030", "April 2040"), "I predict that artificial"),
        ("002", ("2030", "2050"), "I predict that artificial"),
        ("004", ("August 2040", "June 2055"), "AGI refers to"),
    ],
)
def test_prediction_shapes_are_read(prefix, dates, reasoning_start):
    post, _ = parse_post(seed(prefix))
    assert [p.subject for p in post.predictions] == [
        "Artificial general intelligence",
        "Technological singularity",
    ]
    assert tuple(p.when for p in post.predictions) == dates
    assert post.predictions[0].reasoning.startswith(reasoning_start)


@pytest.mark.parametrize("prefix", ["000", "002", "004"])
def test_seed_topics_are_read(prefix):
    post, _ = parse_post(seed(prefix))
    assert len(post.topics) == 6 and len(post.trending) == 3
    assert all(t.title and t.paragraphs["Benefits"] and t.paragraphs["Ramifications"] for t in post.topics)
    assert not any("  " in t.paragraphs["Benefits"] or t.paragraphs["Benefits"].startswith(("-", "*"))
                   for t in post.topics)


# Other layouts of seed 000's paragraphs that the tolerant reader accepts, unchanged in content.
_LABEL_AND_PARAGRAPH = re.compile(r"   - \*(Benefits|Ramifications):\*\n\n     ")
LAYOUT_VARIANTS = {
    "paragraph on the bullet line": r"- *\1:* ",
    "paragraph as a sub-bullet": r"* **\1:**\n    + ",
    "plain label, bullet dot, whitespace-only line, no indent": "\u2022 \\1:\n   \n",
    "no bullet, emphasized label, paragraph indented two": r"*\1*:\n\n  ",
}


@pytest.mark.parametrize("replacement", LAYOUT_VARIANTS.values(), ids=LAYOUT_VARIANTS.keys())
def test_paragraph_layout_variants_read_the_same(replacement):
    text = seed("000")
    variant = _LABEL_AND_PARAGRAPH.sub(replacement, text)
    assert variant != text
    post, problems = parse_post(variant)
    assert problems == []
    assert post == parse_post(text)[0]
    assert check_text(variant, strict=True)  # not digest's own layout


# ---------------------------------------------------------------------------------------------
# Broken variants of seed 000: (edited text, expected line, words the message must contain)


def _lines_edit(text: str, edit) -> str:
    lines = text.split("\n")
    edit(lines)
    return "\n".join(lines)


def _index(lines: list[str], prefix: str, start: int = 0) -> int:
    return next(i for i in range(start, len(lines)) if lines[i].startswith(prefix))


def heading_removed(text):
    edited = text.replace("## Currently trending topics\n", "")
    return (
        edited,
        line_of(edited, "## GPT predicts"),
        "missing section '## Currently trending topics'",
    )


def ramifications_removed(text):
    def edit(lines):
        start = _index(lines, "3. **")
        label = _index(lines, "   - *Ramifications:*", start)
        del lines[label : label + 4]  # label, blank, paragraph, blank

    edited = _lines_edit(text, edit)
    return edited, line_of(edited, "3. **"), "topic 3 has no Ramifications paragraph"


def benefits_emptied(text):
    lines = text.split("\n")
    label = _index(lines, "   - *Benefits:*", _index(lines, "2. **"))
    lines[label + 2] = ""
    return "\n".join(lines), label + 1, "topic 2: the Benefits paragraph is empty"


def fence_removed(text):
    return text.split("\n", 1)[1], 1, "front matter must start with a '---' line"


def yaml_unterminated(text):
    edited = text.replace('title: "[Daily Automated AI Summary]"', 'title: "unterminated')
    # The quoted scalar runs on to the next quote, on the author line, where YAML sees the error.
    return edited, line_of(edited, "author:"), "front matter is not valid YAML"


def yaml_bad_mapping(text):
    edited = text.replace("draft: false", "draft: false: true")
    return edited, line_of(edited, "draft:"), "front matter is not valid YAML"


def author_removed(text):
    return text.replace('author: "Blog Agent"\n', ""), 1, "front matter has no 'author' key"


def date_not_timestamp(text):
    edited = text.replace("date: 2023-11-30T05:32:19Z", 'date: "yesterday"')
    return edited, line_of(edited, "date:"), "front matter 'date' must be a timestamp"


def one_prediction(text):
    edited = _lines_edit(text, lambda lines: lines.pop(_index(lines, "- **Technological")))
    return edited, line_of(edited, "## GPT predicts"), "no prediction for Technological singularity"


def prediction_without_date(text):
    edited = text.replace(" (June 2030):", ":")
    return edited, line_of(edited, "- **Artificial"), "has no date"


def numbers_swapped(text):
    edited = (
        text.replace("\n2. **", "\nTWO. **").replace("\n3. **", "\n2. **").replace("\nTWO", "\n3")
    )
    return edited, line_of(edited, "3. **"), "topic number 3 is out of order: expected 2"


def notice_removed(text):
    edited = _lines_edit(text, lambda lines: lines.pop(_index(lines, "> *Notice:*")))
    after_front_matter = edited.split("\n").index("---", 1) + 2
    return edited, after_front_matter, "missing the notice"


def sections_swapped(text):
    head, rest = text.split("## Currently trending topics\n")
    trending, predictions = rest.split("\n## GPT predicts future events\n")
    edited = (
        f"{head}## GPT predicts future events\n{predictions}\n"
        f"## Currently trending topics\n{trending}\n"
    )
    return edited, line_of(edited, "## Currently trending"), "is out of order"


def no_trending_items(text):
    edited = re.sub(r"(?m)^- (?!\*\*).*\n", "", text)
    return edited, line_of(edited, "## Currently trending"), "no trending items"


BROKEN = [
    heading_removed,
    ramifications_removed,
    benefits_emptied,
    fence_removed,
    yaml_unterminated,
    yaml_bad_mapping,
    author_removed,
    date_not_timestamp,
    one_prediction,
    prediction_without_date,
    numbers_swapped,
    notice_removed,
    sections_swapped,
    no_trending_items,
]


@pytest.mark.parametrize("make", BROKEN, ids=[f.__name__ for f in BROKEN])
def test_broken_variant_is_reported_at_its_line(make):
    text = seed("000")
    edited, line, words = make(text)
    assert edited != text
    problems = check_text(edited)
    assert any(p.line == line and words in p.message for p in problems), problems
    assert all("\n" not in p.message for p in problems)
    assert check_text(edited, strict=True)


def test_front_matter_problem_gives_no_post():
    post, problems = parse_post(author_removed(seed("000"))[0])
    assert post is None and problems


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("(June 2030)", "(2030)", "is not 'Month YYYY'"),
        (
            "**Artificial general intelligence**",
            "**Artificial General Intelligence**",
            "must be exactly",
        ),
    ],
)
def test_strict_only_prediction_rules(old, new, words):
    edited = seed("000").replace(old, new)
    assert check_text(edited) == []
    problems = check_text(edited, strict=True)
    assert any(words in p.message for p in problems), problems


def test_strict_reports_missing_final_newline():
    text = seed("000")
    problems = check_text(text.rstrip("\n"), strict=True)
    assert problems == [
        Problem(
            text.count("\n") + 1,
            "layout differs from digest's own: expected '', found end of file",
        )
    ]


# ---------------------------------------------------------------------------------------------
# check_file


def test_check_file_reads_utf8(tmp_path):
    path = tmp_path / "post.md"
    path.write_text(seed("000"), encoding="utf-8")
    assert check_file(path, strict=True) == []


def test_check_file_bad_utf8_is_one_problem(tmp_path):
    path = tmp_path / "post.md"
    path.write_bytes(b"---\ntitle: \xff\n")
    [problem] = check_file(path)
    assert problem.line == 0 and "UTF-8" in problem.message


def test_check_file_unreadable_is_one_problem(tmp_path):
    [problem] = check_file(tmp_path / "missing.md")
    assert problem.line == 0 and "cannot read" in problem.message


def test_paragraph_over_several_lines_is_joined_with_one_space():
    text = seed("000")
    wrapped = text.replace(" It could lead", "\n       It could lead", 1).replace(
        " The validation process", "\n The validation process", 1
    )
    assert parse_post(wrapped) == parse_post(text)


def test_crlf_line_ends_are_tolerated_but_not_strict():
    text = seed("000").replace("\n", "\r\n")
    assert check_text(text) == []
    assert check_text(text, strict=True)[0].line == 1


# ---------------------------------------------------------------------------------------------
# Every post that `digest run` writes passes, whatever the config says ([blog] predictions_heading
# is free text: the section after the trending topics is the predictions, whatever its heading).

CUSTOM_HEADINGS = ["Forecasts", "What the model expects next", "", "Currently trending topics",
                   "Possible consequences of current developments", "AI predicts future events:", "2031: ahead",
                   "# not a title #", "**bold** [link](x) <b>", "Prédictions — à venir"]


@pytest.mark.parametrize("heading", CUSTOM_HEADINGS)
def test_seed_with_another_predictions_heading_passes(heading):
    from digest.markdown import escape_inline

    text = seed("000").replace("## GPT predicts future events\n", f"## {escape_inline(heading)}\n")
    assert check_text(text) == [] and check_text(text, strict=True) == []
    post, _ = parse_post(text)
    assert post.predictions_heading == escape_inline(heading) and len(post.predictions) == 2


def test_an_unknown_heading_is_still_reported_beside_the_named_predictions():
    text = seed("000").replace("## GPT predicts future events\n", "## Extra\n\n- an aside\n\n## GPT predicts future events\n")
    problems = check_text(text)
    assert any(p.line == line_of(text, "## Extra") and "unexpected heading 'Extra'" in p.message for p in problems)


def test_a_missing_predictions_section_is_still_reported():
    text = seed("000").split("\n## GPT predicts future events\n")[0] + "\n"
    assert any("missing section" in p.message and "predicts future events" in p.message for p in check_text(text))


@pytest.mark.parametrize("blog", [
    'predictions_heading = "Forecasts"',
    'predictions_heading = "Currently trending topics"',
    'predictions_heading = "  "',
    'predictions_heading = "1. **What** #next"\ntitle = "---"\nauthor = ""\ntags = []\nnotice = "*"',
    'notice = "Line one\\nline two: > not a quote"\ndraft = true\n[blog.cover]\nimage = "a b.png"\nalt = "\\""',
], ids=["forecasts", "a-known-name", "blank", "markdown-everywhere", "notice-and-cover"])
def test_digest_run_with_any_blog_config_writes_a_post_that_check_accepts(run_cli, tmp_path, blog):
    config = tmp_path / "digest.toml"
    config.write_text(f"[blog]\n{blog}\n", encoding="utf-8")
    result = run_cli("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", tmp_path / "site",
                     "--date", "2026-01-02")
    assert result.exit_code == 0, result.stderr
    post = Path(result.stdout.strip().splitlines()[-1])
    checked = run_cli("check", "--strict", post)
    assert checked.exit_code == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("notice", ['""', '" \u200b "'])
def test_a_config_without_a_visible_notice_is_refused(run_cli, tmp_path, notice):
    """A post without its notice is broken (FORMAT.md), so a config that would write one is wrong."""
    config = tmp_path / "digest.toml"
    config.write_text(f"[blog]\nnotice = {notice}\n", encoding="utf-8")
    result = run_cli("run", "--config", config, "--engine", "fake", "--sample-feeds", "--out", tmp_path / "site")
    assert result.exit_code == EXIT_CONFIG, result.stderr
    assert f"{config.resolve()}:2: 'blog.notice' must have visible text" in result.stderr


_ANY = st.text(max_size=40) | st.lists(st.sampled_from(list("#*_[]<>!|-+=.:()&@/\\`'\"\n\t ") + [
    "predicts future events", "Currently trending topics", "1. ", "---", "{{<", "\u202e", "\u200b"]), max_size=12).map("".join)


@settings(deadline=None, max_examples=80, suppress_health_check=[HealthCheck.too_slow])
@given(heading=_ANY, title=_ANY, author=_ANY, notice=_ANY, tags=st.lists(_ANY, max_size=3), alt=_ANY,
       draft=st.booleans(), model=_ANY.filter(lambda m: "/" not in m and m.strip()))
def test_a_post_assembled_from_any_blog_config_passes_strict_check(heading, title, author, notice, tags, alt, draft,
                                                                   model):
    from datetime import datetime, timezone

    from digest.config import Config
    from digest.engine.base import Result
    from digest.markdown import one_line
    from digest.pipeline import assemble
    from digest.sections import PREDICTION_SUBJECTS
    from digest.sections import DEFAULT_KINDS, PREDICTION, topic_kinds
    from digest.render import render
    from digest.select import Story

    assume(one_line(notice))  # else the config is refused (see above)
    config = Config()
    blog = config.blog
    blog.predictions_heading, blog.title, blog.author, blog.notice, blog.tags = heading, title, author, notice, tags
    blog.draft, blog.cover.alt = draft, alt
    stories = [Story(title="Sparse experts halve pretraining compute"), Story(title="Robots fold laundry")]
    paragraph = "A plain sentence opens the paragraph. " * 8 + "It ends with a finished sentence."
    results = {kind.key(s.title): Result(kind.key(s.title), paragraph, 0, 0, "stop")
               for s in stories for kind in topic_kinds(DEFAULT_KINDS)}
    for subject in PREDICTION_SUBJECTS:
        key = PREDICTION.key(subject)
        results[key] = Result(key, f"May 2041: {paragraph}", 0, 0, "stop")
    post = assemble(config, datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc), model, stories, stories[:1], results)
    assert check_text(render(post), strict=True) == []


# ---------------------------------------------------------------------------------------------
# Raw HTML and Hugo shortcodes: Hugo would put the one into the page and run the other.

MARKUP = [
    ("<script>alert(1)</script>", "raw HTML '<script>'"),
    ("</div>", "raw HTML '</div>'"),
    ('<img src=x onerror="alert(1)"', "raw HTML '<img src=x"),
    ("<!-- hidden -->", "raw HTML '<!-- hidden -->'"),
    ("\\\\<b>bold</b>", "raw HTML '<b>'"),  # the backslash is escaped, not the '<'
    ("{{< youtube id >}}", "Hugo shortcode '{{< youtube id >}}'"),
    ("{{% include x %}}", "Hugo shortcode '{{% include x %}}'"),
    ("\\{{< param x >}}", "Hugo shortcode '{{< param x >}}'"),  # Hugo reads no Markdown escapes
]


@pytest.mark.parametrize("raw, words", MARKUP, ids=[m[0] for m in MARKUP])
@pytest.mark.parametrize("strict", [False, True], ids=["tolerant", "strict"])
def test_raw_html_and_shortcodes_in_a_paragraph_are_reported(raw, words, strict):
    text = seed("000")
    edited = text.replace(" It could lead", f" {raw} It could lead", 1)
    problems = check_text(edited, strict=strict)
    line = line_of(edited, "     This discovery")
    assert [p for p in problems if p.line == line and words in p.message], problems


@pytest.mark.parametrize("written", [escape_inline(m[0]) for m in MARKUP]
                         + ["a < b > c", "<3 and 1 <2", "x <- y", "&lt;script&gt;", "{ {< x", "{\\{< x"])
def test_what_digest_writes_for_them_and_a_bare_angle_bracket_are_text(written):
    edited = seed("000").replace(" It could lead", f" {written} It could lead", 1)
    assert check_text(edited) == [] and check_text(edited, strict=True) == []


def test_digest_check_reports_a_script_as_file_and_line(run_cli, tmp_path):
    text = seed("000")
    path = tmp_path / "post.md"
    path.write_text(text.replace(" It could lead", " <script>alert(1)</script> It could lead", 1), encoding="utf-8")
    result = run_cli("check", path)
    assert result.exit_code == 1
    assert f"{path}:{line_of(text, '     This discovery')}: raw HTML '<script>'" in result.stdout
