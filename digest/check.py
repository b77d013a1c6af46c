"""Check a post: read it as a reader would, and say what is broken, with line numbers.

`parse_post` is tolerant: it accepts the drift of the published series (any bullet character and
indentation, the paragraph on the bullet's line, below it or as a sub-bullet, `*Benefits:*`,
`**Benefits:**` or `Benefits:`, the predictions' three shapes) and reports only what a reader would
see as a broken post. `check_text(strict=True)` also demands the exact layout that
`digest.render.render` writes, so that a post digest wrote is checked byte for byte. The topic
labels expected are those of the section kinds given (`digest.sections`; default: the built-in
Benefits and Ramifications), so a post written with other `[generation] sections` checks against them.

Every string stored in the `Post` is the Markdown text as found in the file (not unescaped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timezone
from itertools import zip_longest
from os import PathLike
from pathlib import Path

import frontmatter
import yaml

from .post import (
    COVER_KEYS,
    DEFAULT_PREDICTIONS_HEADING,
    DEFAULT_TOPICS_HEADING,
    DEFAULT_TRENDING_HEADING,
    FRONT_KEYS,
    MONTHS,
    PREDICTIONS_HEADING_END,
    Cover,
    FrontMatter,
    Post,
    Prediction,
    Topic,
)
from .render import render
from .sections import DEFAULT_KINDS, SectionKind, plan, topic_kinds

Line = tuple[int, str]  # (1-based line number, text without its line break)

TOPICS, TRENDING, PREDICTIONS = "topics", "trending", "predictions"
SECTION_ORDER = (TOPICS, TRENDING, PREDICTIONS)
SECTION_NAMES = {
    TOPICS: DEFAULT_TOPICS_HEADING,
    TRENDING: DEFAULT_TRENDING_HEADING,
    PREDICTIONS: f"... {PREDICTIONS_HEADING_END}",
}

_FENCE = re.compile(r"^---\s*$")
_HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$")
_BULLET = re.compile(r"^([-*+\u2022])(?:\s+(.*))?$")  # on stripped text: marker, item text
_MARKDOWN_BULLETS = "-*+"
_NUMBERED = re.compile(r"^(\d+)[.)](?:\s+(.*))?$")
_YAML_KEY = re.compile(r"^(\s*)([A-Za-z_][\w-]*)\s*:")
_BOLD_START = re.compile(r"^\*\*(.+?)\*\*(.*)$")
_PAREN = re.compile(r"\(([^()]*)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LEADING_DATE = re.compile(r"^([^:()*]{1,40}):")
_YEAR = re.compile(r"(?<!\d)\d{4}(?!\d)")
_MONTH_YEAR = re.compile(rf"^(?:{'|'.join(MONTHS)}) \d{{4}}$")
# Raw HTML as CommonMark starts it, after a '<' that no backslash escapes: an open or closing tag (also
# one whose '>' is on a later line), a comment, a declaration, CDATA, a processing instruction.
_RAW_HTML = re.compile(r"(?<!\\)(?:\\\\)*(<(?:/?[A-Za-z][A-Za-z0-9-]*(?=[\s/>]|$)|!--|!\[CDATA\[|![A-Za-z]|\?)[^>]*>?)")
# A Hugo shortcode: Hugo runs it before the Markdown is read, so no backslash or code span stops it.
_SHORTCODE = re.compile(r"\{\{[<%].*?(?:[>%]\}\}|$)")


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based line number in the file (0: the whole file)
    message: str  # one line: what is wrong


class _Report:
    """The problems found so far."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, line: int, message: str) -> None:
        self.problems.append(Problem(line, message))

    def __len__(self) -> int:
        return len(self.problems)


@dataclass
class _Section:
    kind: str
    heading: str
    line: int
    lines: list[Line] = field(default_factory=list)


@dataclass
class _Parsed:
    """What `_parse` read: the post (None if the front matter is unusable) and where things are."""

    post: Post | None
    problems: list[Problem]
    predictions_line: int | None = None
    prediction_lines: list[int] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Public API


def parse_post(text: str, kinds: tuple[SectionKind, ...] = DEFAULT_KINDS) -> tuple[Post | None, list[Problem]]:
    """Read `text` tolerantly into a `Post`, and list what a reader would see as broken."""
    parsed = _parse(text, kinds)
    return parsed.post, parsed.problems


def check_text(text: str, *, strict: bool = False, kinds: tuple[SectionKind, ...] = DEFAULT_KINDS) -> list[Problem]:
    """The problems of a post; `strict` also demands digest's own exact layout."""
    parsed = _parse(text, kinds)
    problems = list(parsed.problems)
    if strict and parsed.post is not None:
        report = _Report()
        _check_strict_predictions(parsed, report, kinds)
        if not parsed.problems:
            layout = _layout_problem(parsed.post, text)
            if layout is not None:
                report.add(layout.line, layout.message)
        problems.extend(report.problems)
    return sorted(problems, key=lambda p: p.line)


def check_file(path: str | PathLike[str], *, strict: bool = False,
               kinds: tuple[SectionKind, ...] = DEFAULT_KINDS) -> list[Problem]:
    """`check_text` of a file; an unreadable file or bad UTF-8 is one problem at line 0."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return [Problem(0, f"cannot read {path}: {exc.strerror or exc}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(0, f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start}")]
    return check_text(text, strict=strict, kinds=kinds)


# ---------------------------------------------------------------------------------------------
# The whole post


def _parse(text: str, kinds: tuple[SectionKind, ...]) -> _Parsed:
    report = _Report()
    lines = _split_lines(text)
    last_line = lines[-1][0] if lines else 1
    front, body = _read_front_matter(lines, report)
    _check_markup(body, report)
    preamble, sections = _split_sections(body, report)
    notice = _read_notice(preamble, body[0][0] if body else last_line, report)
    _report_missing_sections(sections, last_line, report)

    labels = tuple(kind.label for kind in topic_kinds(kinds))
    topics = _read_topics(sections[TOPICS], report, labels) if TOPICS in sections else []
    trending = _read_trending(sections[TRENDING], report) if TRENDING in sections else []
    drafts = _collect_predictions(sections[PREDICTIONS], report) if PREDICTIONS in sections else []
    predictions = [_read_prediction(draft, report) for draft in drafts]
    if PREDICTIONS in sections:
        _check_prediction_subjects(sections[PREDICTIONS], predictions, report, kinds)

    post = None
    if front is not None:
        post = Post(
            front=front,
            topics=topics,
            trending=trending,
            predictions=predictions,
            notice=notice or "",
            topics_heading=_heading(sections, TOPICS, DEFAULT_TOPICS_HEADING),
            trending_heading=_heading(sections, TRENDING, DEFAULT_TRENDING_HEADING),
            predictions_heading=_heading(sections, PREDICTIONS, DEFAULT_PREDICTIONS_HEADING),
        )
    return _Parsed(
        post=post,
        problems=sorted(report.problems, key=lambda p: p.line),
        predictions_line=sections[PREDICTIONS].line if PREDICTIONS in sections else None,
        prediction_lines=[draft.line for draft in drafts],
    )


def _heading(sections: dict[str, _Section], kind: str, default: str) -> str:
    return sections[kind].heading if kind in sections else default


def _split_lines(text: str) -> list[Line]:
    """Numbered lines, without line breaks (a `\\r` before one included) or a leading BOM."""
    raw = text.removeprefix("\ufeff").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    return [(number, line.removesuffix("\r")) for number, line in enumerate(raw, start=1)]


def _quote(value: str | None, limit: int = 60) -> str:
    """A line for a message: quoted, control characters shown, cut to about `limit` characters."""
    if value is None:
        return "end of file"
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f"'{shown}'"


def _check_markup(body: list[Line], report: _Report) -> None:
    """Raw HTML and Hugo shortcodes in the body: Hugo would put the one into the page and run the
    other. digest writes every text of a feed or the model escaped ('\\<', '\\{'), so a post it wrote
    holds neither; one edited by hand, or written by something else, may."""
    for number, line in body:
        html = _RAW_HTML.search(line)
        if html is not None:
            report.add(number, f"raw HTML {_quote(html.group(1), 40)}: Hugo would put it into the page as it is "
                               "(digest writes '\\<' for a '<' in text)")
        shortcode = _SHORTCODE.search(line)
        if shortcode is not None:
            report.add(number, f"Hugo shortcode {_quote(shortcode.group(0), 40)}: Hugo would run it "
                               "(digest writes '\\{' for a '{' in text)")


# ---------------------------------------------------------------------------------------------
# Front matter


def _read_front_matter(lines: list[Line], report: _Report) -> tuple[FrontMatter | None, list[Line]]:
    """The front matter (None if broken) and the body lines after it."""
    if not lines or not _FENCE.match(lines[0][1]):
        report.add(1, "front matter must start with a '---' line")
        return None, _guess_body(lines)
    close = next((i for i in range(1, len(lines)) if _FENCE.match(lines[i][1])), None)
    if close is None:
        report.add(1, "front matter has no closing '---' line")
        return None, _guess_body(lines[1:])
    block, body = lines[: close + 1], lines[close + 1 :]
    try:
        metadata, _ = frontmatter.parse("\n".join(line for _, line in block) + "\n")
    except yaml.YAMLError as exc:
        report.add(*_yaml_problem(exc))
        return None, body
    return _front_from_metadata(metadata, block, report), body


def _guess_body(lines: list[Line]) -> list[Line]:
    """Where the body of a post with broken fences starts: at its first quote or heading."""
    for index, (_, line) in enumerate(lines):
        if line.lstrip().startswith((">", "#")):
            return lines[index:]
    return []


def _yaml_problem(exc: yaml.YAMLError) -> tuple[int, str]:
    # The YAML text handed to PyYAML starts right after the first `---`, on line 1.
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return line, f"front matter is not valid YAML: {what}" + (f" ({context})" if context else "")


def _front_from_metadata(metadata: dict, block: list[Line], report: _Report) -> FrontMatter | None:
    """Check the keys and types of the front matter and build it (None if anything is wrong)."""
    before = len(report)
    where = _key_lines(block)
    for key in FRONT_KEYS:
        if key.name not in metadata:
            report.add(1, f"front matter has no '{key.name}' key")
        elif not isinstance(metadata[key.name], key.type):
            report.add(where.get(key.name, 1), f"front matter '{key.name}' must be {key.wanted}")
    tags = metadata.get("tags")
    if isinstance(tags, list) and not all(isinstance(tag, str) for tag in tags):
        report.add(where.get("tags", 1), "front matter 'tags' must be a list of strings")
    cover = metadata.get("cover")
    if isinstance(cover, dict):
        for key in COVER_KEYS:
            line = where.get(f"cover.{key.name}", where.get("cover", 1))
            if key.name not in cover:
                report.add(line, f"front matter 'cover' has no '{key.name}' key")
            elif not isinstance(cover[key.name], key.type):
                report.add(line, f"front matter 'cover.{key.name}' must be {key.wanted}")
    if len(report) > before:
        return None
    values = {key.attr: metadata[key.name] for key in FRONT_KEYS}
    date = values["date"]
    values["date"] = date.astimezone(timezone.utc) if date.tzinfo else date.replace(tzinfo=timezone.utc)
    values["tags"] = list(tags)
    values["cover"] = Cover(**{key.attr: cover[key.name] for key in COVER_KEYS})
    return FrontMatter(**values)


def _key_lines(block: list[Line]) -> dict[str, int]:
    """Line of each key of the front matter: `title`, ..., and `cover.image` for nested ones."""
    where: dict[str, int] = {}
    parent = ""
    for number, line in block[1:-1]:
        match = _YAML_KEY.match(line)
        if match is None:
            continue
        indent, key = match.groups()
        if not indent:
            parent = key
            where.setdefault(key, number)
        else:
            where.setdefault(f"{parent}.{key}", number)
    return where


# ---------------------------------------------------------------------------------------------
# Sections and the notice


def _section_kind(heading: str) -> str | None:
    name = heading.strip().rstrip(":").strip().lower()
    if name == SECTION_NAMES[TOPICS].lower():
        return TOPICS
    if name == SECTION_NAMES[TRENDING].lower():
        return TRENDING
    if name.endswith(PREDICTIONS_HEADING_END):
        return PREDICTIONS
    return None


def _split_sections(body: list[Line], report: _Report) -> tuple[list[Line], dict[str, _Section]]:
    """The lines before the first heading, and each known section with its lines.

    The predictions' heading is `[blog] predictions_heading`, free text: when no heading ends in
    "predicts future events", the first heading after the trending topics that is not a new known
    section is the predictions section, whatever it says."""
    preamble: list[Line] = []
    sections: dict[str, _Section] = {}
    sink = preamble
    furthest: _Section | None = None
    named = any(_section_kind(m.group(1)) == PREDICTIONS for m in (_HEADING.match(line) for _, line in body) if m)
    for number, line in body:
        match = _HEADING.match(line)
        if match is None:
            sink.append((number, line))
            continue
        heading = match.group(1)
        kind = _section_kind(heading)
        if not named and TRENDING in sections and PREDICTIONS not in sections and (kind is None or kind in sections):
            kind = PREDICTIONS
        sink = []  # the lines of an unknown or repeated section are dropped
        if kind is None:
            report.add(number, f"unexpected heading {_quote(heading)}")
            continue
        if kind in sections:
            report.add(number, f"section {_quote(heading)} appears twice")
            continue
        section = sections[kind] = _Section(kind, heading, number)
        sink = section.lines
        if furthest is not None and SECTION_ORDER.index(kind) < SECTION_ORDER.index(furthest.kind):
            report.add(
                number,
                f"section {_quote(heading)} is out of order: it belongs before "
                f"{_quote(furthest.heading)}",
            )
        else:
            furthest = section
    return preamble, sections


def _report_missing_sections(
    sections: dict[str, _Section], last_line: int, report: _Report
) -> None:
    """A missing section is reported where the next section starts (or at the end)."""
    for index, kind in enumerate(SECTION_ORDER):
        if kind in sections:
            continue
        later = [sections[k].line for k in SECTION_ORDER[index + 1 :] if k in sections]
        line = min(later) if later else last_line
        report.add(line, f"missing section '## {SECTION_NAMES[kind]}'")


def _read_notice(preamble: list[Line], expected_line: int, report: _Report) -> str | None:
    """The notice blockquote's text (after its label), from the lines before the first section."""
    quote = [(n, line.strip()[1:].strip()) for n, line in preamble if line.lstrip().startswith(">")]
    stray = [
        (n, line) for n, line in preamble if line.strip() and not line.lstrip().startswith(">")
    ]
    if stray:
        number, line = stray[0]
        report.add(number, f"unexpected text before the first section: {_quote(line.strip())}")
    if not quote:
        report.add(expected_line, "missing the notice blockquote '> *Notice:* ...'")
        return None
    found = _strip_label(" ".join(text for _, text in quote).strip(), ("Notice",))
    if found is None:
        report.add(quote[0][0], "the blockquote is not the notice: it must start with '*Notice:*'")
        return None
    if not found[1]:
        report.add(quote[0][0], "the notice is empty")
    return found[1]


def _strip_label(text: str, names: tuple[str, ...]) -> tuple[str, str, bool] | None:
    """If `text` starts with a label (`*Name:*`, `**Name:**`, `*Name*:`, `**Name**:` or `Name:`,
    any case), return (name, the text after it, whether it was emphasized)."""
    for name in names:
        for marks in ("**", "*", ""):
            for form in (f"{marks}{name}:{marks}", f"{marks}{name}{marks}:"):
                rest = text[len(form) :]
                if text[: len(form)].lower() == form.lower() and (not rest or rest[0].isspace()):
                    return name, rest.strip(), bool(marks)
    return None


def _unbullet(text: str) -> str:
    """`text` without a leading Markdown bullet (`-`, `*`, `+`): a sub-bullet's text."""
    match = _BULLET.match(text)
    if match is None or match.group(1) not in _MARKDOWN_BULLETS:
        return text
    return (match.group(2) or "").strip()


# ---------------------------------------------------------------------------------------------
# Topics


@dataclass
class _Paragraph:
    label: str
    line: int
    parts: list[str] = field(default_factory=list)


@dataclass
class _TopicDraft:
    number: int
    title: str
    line: int
    paragraphs: dict[str, _Paragraph] = field(default_factory=dict)
    open: _Paragraph | None = None  # the paragraph that takes the next text lines
    stray_reported: bool = False


def _read_topics(section: _Section, report: _Report, labels: tuple[str, ...]) -> list[Topic]:
    drafts: list[_TopicDraft] = []
    for number, line in section.lines:
        text = line.strip()
        current = drafts[-1] if drafts else None
        if not text:
            if current and current.open and current.open.parts:
                current.open = None  # a blank line ends a paragraph that has text
            continue
        header = _topic_header(text)
        if header is not None:
            drafts.append(_TopicDraft(header[0], header[1], number))
            continue
        expecting = current is not None and current.open is not None and not current.open.parts
        label = _topic_label(text, labels, expecting=expecting)
        if label is not None:
            _start_paragraph(current, label, number, len(drafts), report)
        elif current is not None and current.open is not None:
            part = _unbullet(text)
            if part:
                current.open.parts.append(part)
        elif current is None:
            report.add(number, f"unexpected text before topic 1: {_quote(text)}")
        elif not current.stray_reported:
            current.stray_reported = True
            report.add(number, f"unexpected text in topic {len(drafts)}: {_quote(text)}")
    return _finish_topics(section, drafts, report, labels)


def _topic_header(text: str) -> tuple[int, str] | None:
    """(number, title) of a line `N. **Title**`; the title is the text between the `**`."""
    match = _NUMBERED.match(text)
    if match is None:
        return None
    title = (match.group(2) or "").strip()
    if len(title) >= 4 and title.startswith("**") and title.endswith("**"):
        title = title[2:-2]
    return int(match.group(1)), title


def _topic_label(text: str, labels: tuple[str, ...], *, expecting: bool) -> tuple[str, str] | None:
    """(label, text on the same line) of a line with one of the topic `labels` (Benefits, ...).

    A plain `Benefits:` (no bullet, no emphasis) where a paragraph is expected is the paragraph's
    own text: digest escapes bullets and emphasis in the model's text, but not that.
    """
    bullet = _BULLET.match(text)
    found = _strip_label((bullet.group(2) or "") if bullet else text, labels)
    if found is None:
        return None
    name, rest, emphasized = found
    if expecting and not bullet and not emphasized:
        return None
    return name, rest


def _start_paragraph(
    topic: _TopicDraft | None, label: tuple[str, str], number: int, index: int, report: _Report
) -> None:
    name, rest = label
    if topic is None:
        report.add(number, f"'{name}' label before topic 1")
        return
    paragraph = _Paragraph(name, number, [rest] if rest else [])
    if name in topic.paragraphs:
        report.add(number, f"topic {index} has a second {name} paragraph")
    else:
        topic.paragraphs[name] = paragraph
    topic.open = paragraph


def _finish_topics(section: _Section, drafts: list[_TopicDraft], report: _Report,
                   labels: tuple[str, ...]) -> list[Topic]:
    if not drafts:
        report.add(section.line, f"no topics under {_quote(section.heading)}")
        return []
    for index, draft in enumerate(drafts, start=1):
        if draft.number != index:
            report.add(draft.line, f"topic number {draft.number} is out of order: expected {index}")
            break
    topics = []
    for index, draft in enumerate(drafts, start=1):
        if not draft.title:
            report.add(draft.line, f"topic {index} has no title")
        texts = {}
        for name in labels:
            paragraph = draft.paragraphs.get(name)
            if paragraph is None:
                report.add(draft.line, f"topic {index} has no {name} paragraph")
            elif not paragraph.parts:
                report.add(paragraph.line, f"topic {index}: the {name} paragraph is empty")
            texts[name] = " ".join(paragraph.parts) if paragraph else ""
        topics.append(Topic(draft.title, texts))
    return topics


# ---------------------------------------------------------------------------------------------
# Trending topics


def _read_trending(section: _Section, report: _Report) -> list[str]:
    items = []
    for number, line in section.lines:
        text = line.strip()
        if not text:
            continue
        bullet = _BULLET.match(text)
        if bullet is None:
            report.add(number, f"unexpected text in {_quote(section.heading)}: {_quote(text)}")
        elif not (bullet.group(2) or "").strip():
            report.add(number, "empty trending item")
        else:
            items.append(bullet.group(2).strip())
    if not items:
        report.add(section.line, f"no trending items under {_quote(section.heading)}")
    return items


# ---------------------------------------------------------------------------------------------
# Predictions


@dataclass
class _PredictionDraft:
    line: int
    indent: int
    head: str  # the bullet's text
    more: list[str] = field(default_factory=list)  # deeper lines: sub-bullets, continuations


def _collect_predictions(section: _Section, report: _Report) -> list[_PredictionDraft]:
    """The prediction bullets, each with the deeper lines under it."""
    drafts: list[_PredictionDraft] = []
    for number, line in section.lines:
        text = line.strip()
        if not text:
            continue
        indent = len(line) - len(line.lstrip())
        bullet = _BULLET.match(text)
        if bullet is not None and (not drafts or indent <= drafts[0].indent):
            drafts.append(_PredictionDraft(number, indent, (bullet.group(2) or "").strip()))
        elif drafts and indent > drafts[0].indent:
            drafts[-1].more.append(_unbullet(text))
        elif not drafts and _is_predictions_intro(text):
            continue  # a `Predictions:` line before the bullets (seed 002)
        else:
            report.add(number, f"unexpected text in {_quote(section.heading)}: {_quote(text)}")
    if not drafts:
        report.add(section.line, f"no predictions under {_quote(section.heading)}")
    return drafts


def _is_predictions_intro(text: str) -> bool:
    found = _strip_label(text, ("Predictions",))
    return found is not None and not found[1]


def _read_prediction(draft: _PredictionDraft, report: _Report) -> Prediction:
    """`**Subject** (when): reasoning`, `**Subject** ... **when**: reasoning` or a sub-bullet
    `when: reasoning` under `**Subject**`."""
    text = " ".join([draft.head, *draft.more]).strip()
    match = _BOLD_START.match(text)
    if match is None:
        report.add(draft.line, f"prediction has no bold subject: {_quote(text)}")
        subject, rest = "", text
    else:
        subject, rest = match.group(1).strip(), match.group(2).strip()
    when, reasoning = _split_when(rest)
    name = _quote(subject or text, 40)
    if not when:
        report.add(draft.line, f"prediction {name} has no date")
    if not reasoning:
        report.add(draft.line, f"prediction {name} has no reasoning")
    return Prediction(subject=subject, when=when, reasoning=reasoning)


def _split_when(rest: str) -> tuple[str, str]:
    """(date, reasoning) from the text after the subject; the date is the first `(...)`,
    `**...**` or leading `...:` that holds a year."""
    candidates = []
    leading = _LEADING_DATE.match(rest)
    if leading and _looks_like_date(leading.group(1)):
        candidates.append((0, leading.group(1), leading.end(1)))
    for pattern in (_PAREN, _BOLD):
        candidates.extend(
            (m.start(), m.group(1), m.end())
            for m in pattern.finditer(rest)
            if _looks_like_date(m.group(1))
        )
    if not candidates:
        return "", _after_colon(rest)
    _, when, end = min(candidates)
    return when.strip(), _after_colon(rest[end:])


def _looks_like_date(text: str) -> bool:
    return len(text.strip()) <= 40 and _YEAR.search(text) is not None


def _after_colon(text: str) -> str:
    text = text.strip()
    return text[1:].strip() if text.startswith(":") else text


def _check_prediction_subjects(
    section: _Section, predictions: list[Prediction], report: _Report, kinds: tuple[SectionKind, ...]
) -> None:
    if not predictions:
        return  # already reported: no predictions at all
    for slot in plan((), kinds):  # the post-level items
        if not any(slot.kind.is_subject(p.subject, slot.title) for p in predictions):
            report.add(section.line, f"no prediction for {slot.title}")


# ---------------------------------------------------------------------------------------------
# Strict: digest's own layout


def _check_strict_predictions(parsed: _Parsed, report: _Report, kinds: tuple[SectionKind, ...]) -> None:
    post = parsed.post
    if post is None or parsed.predictions_line is None:
        return
    subjects = tuple(p.subject for p in post.predictions)
    expected = tuple(slot.title for slot in plan((), kinds))
    if subjects != expected:
        wanted = " and ".join(f"'{s}'" for s in expected)
        report.add(parsed.predictions_line, f"strict: the predictions must be exactly {wanted}")
    for line, prediction in zip(parsed.prediction_lines, post.predictions, strict=True):
        if prediction.when and not _MONTH_YEAR.match(prediction.when):
            report.add(
                line, f"strict: prediction date {_quote(prediction.when)} is not 'Month YYYY'"
            )


def _layout_problem(post: Post, text: str) -> Problem | None:
    """The first line where `text` differs from what `render(post)` writes."""
    expected = render(post).split("\n")
    found = text.split("\n")
    for index, (want, got) in enumerate(zip_longest(expected, found), start=1):
        if want != got:
            return Problem(
                index,
                f"layout differs from digest's own: expected {_quote(want)}, found {_quote(got)}",
            )
    return None
