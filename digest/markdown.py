"""Turning untrusted text (feed titles, model output) into safe one-line Markdown, and back.

Nothing a feed or the model writes may become markup on the blog: no emphasis that swallows the
program's own `**`, no raw HTML, no links, no Hugo shortcodes, no line breaks that would start a new
block. `escape_inline` does that; `unescape_inline` reads such text back.
"""

from __future__ import annotations

import re
import unicodedata

# Backslash-escapable ASCII punctuation that could start inline markup in CommonMark/Goldmark.
_MD_SPECIAL = set("\\`*_[]<>!|~#")
_ESCAPED_ENTITY = re.compile(r"&amp;(?=#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
_SHORTCODE = re.compile(r"\{\{|\}\}")
_SHORTCODE_ESCAPES = {"{{": "{&#123;", "}}": "&#125;}"}
_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# Control characters (C0, C1, DEL) and the invisible formatting characters that can reorder or
# hide text: zero-width, bidi overrides and isolates, BOM.
_INVISIBLE = re.compile(
    "[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_SPACES = re.compile(r"\s+")
_CONTROL_SPACE = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85]")
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")


def one_line(text: str) -> str:
    """Collapse all whitespace (newlines included) to single spaces and drop invisible characters."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL_SPACE.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    return _SPACES.sub(" ", text).strip()


def escape_inline(text: str) -> str:
    """Escape `text` so that it renders as the same plain text inside a Markdown line."""
    text = one_line(text)
    out = []
    for index, char in enumerate(text):
        if char in _MD_SPECIAL:
            out.append("\\" + char)
        elif char in "-+=" and index == 0:
            # A line starting with these could read as a list item or a setext underline.
            out.append("\\" + char)
        elif char == "." and index > 0 and text[:index].isdigit():
            # "1." at the start would start an ordered list.
            out.append("\\.")
        elif char == "&" and _ENTITY.match(text, index):
            # Only an "&" that would start an entity needs escaping ("AT&T" stays as it is).
            out.append("&amp;")
        else:
            out.append(char)
    escaped = "".join(out)
    return _SHORTCODE.sub(lambda m: _SHORTCODE_ESCAPES[m.group(0)], escaped)


def unescape_inline(text: str) -> str:
    """The inverse of `escape_inline` on its output."""
    text = text.replace("{&#123;", "{{").replace("&#125;}", "}}")
    text = _UNESCAPE.sub(r"\1", text)
    return _ESCAPED_ENTITY.sub("&", text)
