"""Render a `Post` to the exact Markdown layout of the published series (seed `000`).

The layout is fixed here, in code: headings, numbers, bullets, indentation and blank lines never
come from the model. `render(check.parse_post(text)) == text` holds for a post in this layout
(`digest check --strict` demands it). The pipeline writes the text (files.write_atomic), after
`ensure_writable` has checked the posts folder before any model runs.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime
from pathlib import Path

from .files import output_error
from .post import COVER_KEYS, FRONT_KEYS, Post, format_date

# Characters that json.dumps(ensure_ascii=False) leaves as they are but that a YAML double-quoted
# scalar cannot hold as they are: YAML's non-printable characters (DEL, C1 controls, lone
# surrogates, U+FFFE/U+FFFF) and those it reads as line breaks or drops (U+0085, U+2028, U+2029,
# the BOM). Everything else JSON writes is also YAML.
_YAML_UNSAFE = re.compile("[\u007f-\u009f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")


def yaml_str(value: str) -> str:
    """A YAML double-quoted scalar that reads back as exactly `value`."""
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", json.dumps(value, ensure_ascii=False))


def yaml_bool(value: bool) -> str:
    return "true" if value else "false"


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return yaml_bool(value)
    if isinstance(value, datetime):
        return format_date(value)
    if isinstance(value, list):
        return "[" + ", ".join(yaml_str(v) for v in value) + "]"
    return yaml_str(value)


def render_front_matter(post: Post) -> str:
    """The front matter: `post.FRONT_KEYS` in order, the cover's keys nested under it."""
    lines = ["---"]
    for key in FRONT_KEYS:
        value = getattr(post.front, key.attr)
        if key.type is dict:
            lines.append(f"{key.name}:")
            lines += [f"    {k.name}: {_yaml_value(getattr(value, k.attr))}" for k in COVER_KEYS]
        else:
            lines.append(f"{key.name}: {_yaml_value(value)}")
    lines.append("---")
    return "\n".join(lines) + "\n"


def render(post: Post) -> str:
    parts = [render_front_matter(post)]
    parts.append(f"> *Notice:* {post.notice}\n\n")
    parts.append(f"## {post.topics_heading}\n\n\n")
    for number, topic in enumerate(post.topics, start=1):
        # The labels sit at the item's content column (3 spaces after "1. ", 4 after "10. "), or
        # Markdown ends the numbered list there.
        indent = " " * len(f"{number}. ")
        parts.append(f"{number}. **{topic.title}**\n\n")
        for label, paragraph in topic.paragraphs.items():
            parts.append(f"{indent}- *{label}:*\n\n{indent}  {paragraph}\n\n")
    parts.append(f"## {post.trending_heading}\n\n\n\n")
    parts.extend(f"- {item}\n" for item in post.trending)
    parts.append(f"\n## {post.predictions_heading}\n\n\n")
    parts.extend(f"- **{p.subject}** ({p.when}): {p.reasoning}\n" for p in post.predictions)
    return "".join(parts)




def ensure_writable(directory: Path) -> None:
    """Create `directory` if needed and check that a file can be created in it, so that a run fails
    before it spends minutes on the model rather than after."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".digest-probe.", dir=directory)
    except OSError as exc:
        raise output_error("write to", directory, exc) from exc
    os.close(fd)
    os.unlink(probe)
