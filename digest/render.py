"""Render a `Post` to the exact Markdown layout of the published series (seed `000`), and write it.

The layout is fixed here, in code: headings, numbers, bullets, indentation and blank lines never
come from the model. `render(parse(text)) == text` holds for a post in this layout.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import OutputError
from .post import Post, format_date

# Characters that a YAML double-quoted scalar would read as line breaks or drop, but that
# json.dumps(ensure_ascii=False) leaves as they are.
_YAML_UNSAFE = {"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029", "\ufeff": "\\ufeff"}


def yaml_str(value: str) -> str:
    """A YAML double-quoted scalar that reads back as exactly `value`."""
    out = json.dumps(value, ensure_ascii=False)
    for char, escaped in _YAML_UNSAFE.items():
        out = out.replace(char, escaped)
    return out


def yaml_bool(value: bool) -> str:
    return "true" if value else "false"


def render_front_matter(post: Post) -> str:
    fm = post.front
    tags = ", ".join(yaml_str(t) for t in fm.tags)
    lines = [
        "---",
        f"title: {yaml_str(fm.title)}",
        f"date: {format_date(fm.date)}",
        f"draft: {yaml_bool(fm.draft)}",
        f"author: {yaml_str(fm.author)}",
        f"tags: [{tags}]",
        f"showToc: {yaml_bool(fm.show_toc)}",
        f"tocOpen: {yaml_bool(fm.toc_open)}",
        f"showReadingTime: {yaml_bool(fm.show_reading_time)}",
        f"showWordCount: {yaml_bool(fm.show_word_count)}",
        "cover:",
        f"    image: {yaml_str(fm.cover.image)}",
        f"    alt: {yaml_str(fm.cover.alt)}",
        f"    hidden: {yaml_bool(fm.cover.hidden)}",
        "---",
    ]
    return "\n".join(lines) + "\n"


def render(post: Post) -> str:
    parts = [render_front_matter(post)]
    parts.append(f"> *Notice:* {post.notice}\n\n")
    parts.append(f"## {post.topics_heading}\n\n\n")
    for number, topic in enumerate(post.topics, start=1):
        parts.append(
            f"{number}. **{topic.title}**\n\n"
            f"   - *Benefits:*\n\n"
            f"     {topic.benefits}\n\n"
            f"   - *Ramifications:*\n\n"
            f"     {topic.ramifications}\n\n"
        )
    parts.append(f"## {post.trending_heading}\n\n\n\n")
    parts.extend(f"- {item}\n" for item in post.trending)
    parts.append(f"\n## {post.predictions_heading}\n\n\n")
    parts.extend(f"- **{p.subject}** ({p.when}): {p.reasoning}\n" for p in post.predictions)
    return "".join(parts)


def post_filename(day) -> str:
    """`YYYY-MM-DD-ai-auto-summary.md`, as the published series names its posts."""
    return f"{day.isoformat()}-ai-auto-summary.md"


TEMP_SUFFIX = ".part"


def remove_stale_temp(folder: Path) -> list[Path]:
    """Delete the temporary files `write_atomic` left in `folder` when its process was killed.

    Only call this while no other writer can be at work there (under the output lock).
    """
    removed = []
    for leftover in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        try:
            leftover.unlink()
            removed.append(leftover)
        except OSError:
            pass
    return removed


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees either no file or the whole file.

    The bytes go to a temporary file in the same directory, are flushed to disk, and the file is
    renamed over `path` in one step.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
