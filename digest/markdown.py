"""Turning untrusted text (feed titles, model output) into safe one-line Markdown, and back.

Nothing a feed or the model writes may become markup on the blog: no emphasis that swallows the
program's own `**`, no raw HTML, no links, no Hugo shortcodes, no line breaks that would start a new
block. `escape_inline` does that; `unescape_inline` reads such text back.
"""

from __future__ import annotations

import re
import unicodedata

# Backslash-escapable ASCII punctuation that could start inline markup in CommonMark/Goldmark, or a
# Hugo shortcode (`{{<`, `{{%`) or a Goldmark attribute list (`{.class}`), or an e-mail autolink.
_MD_SPECIAL = set("\\`*_[]<>!|~#{}@")
_ESCAPED_ENTITY = re.compile(r"&amp;(?=#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
# Invisible characters that can reorder or hide text: C0 and C1 controls, lone surrogates, and the
# format characters (Unicode category Cf: bidi overrides, embeddings, isolates and marks, zero-width
# spaces, word joiners, BOM, soft hyphen, interlinear annotations, tag characters). The zero-width
# non-joiner and joiner (U+200C, U+200D) are kept between two visible characters, where scripts
# (Persian, Indic) and emoji sequences need them.
_INVISIBLE = re.compile(
    "[\u0000-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_JOINERS = re.compile("[\u200c\u200d]+")
_SPACES = re.compile(r"\s+")
_CONTROL_SPACE = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85]")
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_ASCII_DIGITS = "0123456789"


def _joiner(match: re.Match) -> str:
    """One joiner between two visible characters; none at an end or beside a space."""
    text, start, end = match.string, match.start(), match.end()
    inside = 0 < start and end < len(text) and not text[start - 1].isspace() and not text[end].isspace()
    return match.group(0)[0] if inside else ""


def one_line(text: str) -> str:
    """Collapse all whitespace (newlines included) to single spaces and drop invisible characters."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL_SPACE.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    text = _JOINERS.sub(_joiner, text)
    return _SPACES.sub(" ", text).strip()


def escape_inline(text: str) -> str:
    """Escape `text` so that it renders as the same plain text inside a Markdown line.

    Besides the inline markup characters, escapes what would start a block at the start of a line
    (`-`, `+`, `=`, `:` for a definition, `1.` and `1)` for a list) and what Goldmark's linkify
    would turn into a link (`https://`, `www.`, e-mail addresses)."""
    text = one_line(text)
    digits = len(text) - len(text.lstrip(_ASCII_DIGITS))
    out = []
    for index, char in enumerate(text):
        if char in _MD_SPECIAL:
            out.append("\\" + char)
        elif char in "-+=:" and index == 0:
            # A line starting with these could read as a list item, a setext underline or a definition.
            out.append("\\" + char)
        elif char in ".)" and index == digits > 0 and text[index + 1:index + 2] in ("", " "):
            # "1." or "1)" at the start would start an ordered list.
            out.append("\\" + char)
        elif char == ":" and text.startswith("//", index + 1):
            # "https://..." would be linkified.
            out.append("\\:")
        elif char == "." and text[max(0, index - 3):index].lower() == "www":
            # So would "www.example.com".
            out.append("\\.")
        elif char == "&" and _ENTITY.match(text, index):
            # Only an "&" that would start an entity needs escaping ("AT&T" stays as it is).
            out.append("&amp;")
        else:
            out.append(char)
    return "".join(out)


def unescape_inline(text: str) -> str:
    """The inverse of `escape_inline` on its output."""
    text = _UNESCAPE.sub(r"\1", text)
    return _ESCAPED_ENTITY.sub("&", text)


# A link's URL: at most this many characters (after percent-encoding); a longer one is left out.
MAX_URL_CHARS = 2000
# What a URL may not hold at all (it is left out): white space, quotes, control characters.
_URL_REFUSED = re.compile(r"[\s\"'\x00-\x1f\x7f-\x9f]")
# What is percent-encoded in a URL that is kept: what Markdown's link syntax or a Hugo shortcode reads
# (brackets, parentheses, angle brackets, braces, backslash, backtick, an "&" that starts an entity),
# and anything outside ASCII.
_URL_ENCODED = set("()[]<>{}\\`|^")


def safe_url(url: str) -> str | None:
    """`url` as a Markdown link's destination, or None where it must not become a link: a scheme other
    than http or https (javascript:, data:), no host, white space, quotes or control characters in it,
    or more than MAX_URL_CHARS characters. What Markdown or Hugo would read (brackets, parentheses,
    braces...) and non-ASCII characters are percent-encoded (UTF-8)."""
    from urllib.parse import urlsplit

    if not url or _URL_REFUSED.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    out = "".join("".join(f"%{b:02X}" for b in c.encode("utf-8"))
                  if c in _URL_ENCODED or not c.isascii() or c == "&" and _ENTITY.match(url, i) else c
                  for i, c in enumerate(url))
    return out if len(out) <= MAX_URL_CHARS else None


def link(text: str, url: str) -> str:
    """`text` (already escaped: `escape_inline`) as a Markdown link to `url`, or `text` alone where the
    URL is not safe (`safe_url`)."""
    safe = safe_url(url)
    return f"[{text}]({safe})" if safe else text

