"""Where a sentence ends: the one definition that the cleaners (digest.text), the checks
(digest.quality), the fact rule's segments (digest.facts) and the engines' sentence rules ask.

A sentence ends at an end mark (. ! ?, or a run of them: an ellipsis, "?!"), then any closing quotes
or brackets (CLOSERS), then white space or the end of the text. So:
- a decimal does not end one ("2.5": no space after the point);
- an abbreviation that never ends a sentence does not either ("e.g. this", "Dr. Smith", "cats vs.
  dogs": ABBREVIATIONS, any case);
- a closing quote or bracket after the mark belongs to the sentence ("He said "yes." Then ...");
- an ellipsis is one end, not three.

This module imports nothing of digest's: anything may ask it.
"""

from __future__ import annotations

import re

# The marks that end a sentence, and what may close it after them before the space.
MARKS = ".!?"
CLOSERS = "\"'”’)]"
# Abbreviations with a point that never end a sentence (without their last point; matched in any case).
ABBREVIATIONS = ("e.g", "i.e", "dr", "mr", "mrs", "ms", "prof", "vs", "cf")


def _any_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


# A point that is not an abbreviation's (a fixed-width look-behind for each), or ! or ?; then the
# rest of the run of marks and the closers.
_NOT_ABBREVIATION = "".join(rf"(?<!\b{_any_case(a)})" for a in ABBREVIATIONS)
END_MARK = rf"(?:[!?]|{_NOT_ABBREVIATION}\.)[{re.escape(MARKS)}]*[{re.escape(CLOSERS)}]*"

# The place right after an end mark (not an abbreviation's point), for a pattern that goes on from there.
AFTER_MARK = (r"(?:(?<=[!?])|(?<=\.)" + "".join(rf"(?<!\b{_any_case(a)}\.)" for a in ABBREVIATIONS) + ")")

# Each end of a sentence in a text: its mark and closers, where white space or the text's end follows.
END = re.compile(END_MARK + r"(?=\s|$)")
# ... where white space follows (the next sentence has begun).
END_BEFORE_SPACE = re.compile(END_MARK + r"(?=\s)")
# A text that ends a sentence: an end mark and closers, then only white space (the group). Where no
# space follows yet, a writer must see the next piece begin with one ("9." may go on as 9.5).
ENDS = re.compile(END_MARK + r"(\s*)$")
# A finished sentence: the shortest run of text (one character or more) up to an end.
_SENTENCE = re.compile(r".+?" + END_MARK + r"(?=\s|$)", re.S)
# A piece (a token's bytes) that is only an end: white space, a run of marks, closers, white space.
# (The closers here are ASCII: those a vocabulary has as pieces of their own after a mark.)
ENDER_PIECE = re.compile(rb"\s*[" + re.escape(MARKS).encode() + rb"]+[\"')\]]*\s*")


def split(text: str) -> list[str]:
    """The finished sentences of `text`, in order, each without the white space around it (an
    unfinished rest at the end is left out)."""
    return [s.strip() for s in _SENTENCE.findall(text)]


def first(text: str) -> str:
    """The first finished sentence of `text` (stripped), or `text` as it is where it has none."""
    match = _SENTENCE.match(text)
    return match.group(0).strip() if match else text


def complete(text: str) -> str:
    """`text` up to the end of its last finished sentence ("" when it has none)."""
    ends = list(END.finditer(text))
    return text[: ends[-1].end()].strip() if ends else ""


def ends(text: str) -> re.Match[str] | None:
    """Whether `text` ends a sentence (then only white space follows its end: the match's group 1)."""
    return ENDS.search(text)


def next_end(text: str) -> int | None:
    """Where the first sentence of `text` ends (after its closers), where white space follows it
    (the next one has begun); None while it has not."""
    match = END_BEFORE_SPACE.search(text)
    return match.end() if match else None


def is_ender(piece: bytes) -> bool:
    """Whether a token's `piece` is only the end of a sentence (see ENDER_PIECE)."""
    return bool(piece) and ENDER_PIECE.fullmatch(piece) is not None
