"""digest.check: the seeds pass, broken variants of seed 000 are reported at their line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from digest.check import Problem, check_file, check_text, parse_post

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
    assert all(t.title and t.benefits and t.ramifications for t in post.topics)
    assert not any("  " in t.benefits or t.benefits.startswith(("-", "*")) for t in post.topics)


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
