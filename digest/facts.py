"""What a paragraph may state on its own: the numbers and names its source gives. One home for the rule
that the `faithful` check applies after the fact (digest.quality) and that the fact guard applies
token by token while the model writes (`Guard`, used by the engines).

- A number (digits, with `.` or `,` between groups) must be one the source gives, whole: "1" followed
  by a space is not "100".
- A name (a capitalised word after a sentence's first word, or any word with a capital or a digit
  after its first letter: GPT, WebGPU, H100) must be a word of the source, a close form of one (Kenya,
  Kenyan), or a common term of the field (COMMON_TERMS). Any cased letter counts as a capital, in any
  script; caseless scripts have no names to guard.

The guard knows nothing of feeds: a request carries a `Guard` made from its source text, and the
engine asks it, for each candidate token, whether the text would still keep to the rule.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

import numpy as np

from .sentences import AFTER_MARK, CLOSERS

NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_WORDS = {w: str(10 * (i + 1)) for i, w in enumerate(
    "ten twenty thirty forty fifty sixty seventy eighty ninety".split())}
# A word: a letter, then letters and digits, and an apostrophe ending ("Google's"). Unicode letters.
TOKEN = re.compile(r"\b[^\W\d_][^\W_]*(?:['’][^\W\d_]+)?")
# Where a name's "first word of a sentence" freedom starts again: after a sentence's end (digest.sentences:
# an end mark, closers, white space), a colon or semicolon, a dash between spaces, an opening quote or parenthesis.
SEGMENT = re.compile(rf"(?:{AFTER_MARK}|(?<=[:;]))[{re.escape(CLOSERS)}]*\s+|\s[-–—]\s|[\"“(]")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]+)?")
# Capitalised words any paragraph about machine learning may use without the source naming them.
COMMON_TERMS = frozenset("""
    i ai ml gpu gpus cpu cpus tpu tpus llm llms nlp api apis faq ok ceo ceos phd phds os url pdf csv json
    artificial intelligence machine learning deep neural network networks language model models internet web
    monday tuesday wednesday thursday friday saturday sunday january february march april may june july
    august september october november december
    """.split())
CLOSE_ENDING = 3  # a close form differs by at most this many letters at the end (Kenya, Kenyan)
CLOSE_MIN = 4  # ... from a word of at least this many letters


def normal_number(text: str) -> str:
    """A number as the rule compares it: no thousands commas, no trailing point or ".0"."""
    n = text.replace(",", "").rstrip(".")
    return n[:-2] if n.endswith(".0") else n


def numbers_of(text: str) -> set[str]:
    return {normal_number(match) for match in NUMBER.findall(text)}


def vocabulary(text: str) -> set[str]:
    """The words of `text`, lower-cased (any script); a word with an apostrophe, whole and in parts
    (l'École: l'école, l, école)."""
    out = set()
    for word in _WORD.findall(text.lower()):
        out.add(word)
        out.update(p for p in re.split(r"['’]", word) if p)
    return out


def shortened(words: set[str] | frozenset[str]) -> frozenset[str]:
    """The words of `words` cut by up to CLOSE_ENDING letters at the end, no shorter than CLOSE_MIN."""
    return frozenset(v[:k] for v in words if len(v) >= CLOSE_MIN for k in range(max(CLOSE_MIN, len(v) - CLOSE_ENDING), len(v)))


def known(word: str, words: set[str] | frozenset[str], cut: frozenset[str] | None = None) -> bool:
    """`word` is in `words`, or differs from a word there only by a short ending (Kenya, Kenyan): a
    word there with up to CLOSE_ENDING letters more or fewer, both at least CLOSE_MIN long. `cut`:
    `shortened(words)`, where the caller keeps it (a few set lookups instead of a pass over `words`)."""
    if word in words:
        return True
    if any(word[:k] in words for k in range(max(CLOSE_MIN, len(word) - CLOSE_ENDING), len(word))):
        return True
    return len(word) >= CLOSE_MIN and word in (cut if cut is not None else shortened(words))


def _strip_possessive(token: str) -> str:
    return re.sub(r"['’]s$", "", token)


def is_name(token: str, first: bool) -> bool:
    """A capitalised word that is not a sentence's first, or a word with a capital or digit inside."""
    return token[0].isupper() and (not first or any(c.isupper() or c.isdigit() for c in token[1:]))


def names(text: str) -> list[str]:
    """The capitalised names and acronyms of `text` (see `is_name`)."""
    found = []
    for sentence in SEGMENT.split(text):
        for i, token in enumerate(TOKEN.findall(sentence)):
            token = _strip_possessive(token)
            if is_name(token, i == 0):
                found.append(token)
    return found


def unfaithful(text: str, source: str, *, numbers: bool = True) -> str | None:
    """Why `text` states something its `source` does not give (a number, a number word, a name), or
    None. Without `numbers`, names only."""
    have = numbers_of(source)
    words = vocabulary(source)
    if numbers:
        for number in sorted(numbers_of(text), key=text.find):
            if number not in have:
                return f"a number the source does not give: {number}"
        for word in re.findall(r"[a-z]+", text.lower()):
            if word in NUMBER_WORDS and NUMBER_WORDS[word] not in have and word not in words:
                return f"a number the source does not give: {word}"
    for name in names(text):
        part = name.lower()
        if part not in COMMON_TERMS and not known(part, words):
            return f"a name the source does not give: {name}"
    return None


# -- the guard, token by token ----------------------------------------------------------------------


@dataclass(frozen=True)
class Guard:
    """The numbers and words a request's text may use (see the module's docstring). `numbers` None:
    any number (a prediction's reason, whose date the grammar writes)."""

    words: frozenset[str]
    numbers: frozenset[str] | None = None

    # The numbers as the source writes them (40,000), for the prefixes of a number being written.
    written: frozenset[str] = frozenset()

    @classmethod
    def of(cls, source: str, *, guard_numbers: bool = True) -> "Guard":
        return cls(frozenset(vocabulary(source)) | COMMON_TERMS,
                   frozenset(numbers_of(source)) if guard_numbers else None,
                   frozenset(NUMBER.findall(source)) if guard_numbers else frozenset())

    def describe(self) -> dict:
        """What a manifest records of it."""
        return {"words": len(self.words), "numbers": None if self.numbers is None else sorted(self.numbers)}

    @cached_property
    def answers(self) -> dict:
        """`GuardState.mask`'s remembered answers (this guard's own; they depend on nothing else)."""
        return {}

    @cached_property
    def spaced(self) -> dict:
        """`GuardState.mask`'s remembered answers for pieces that begin with white space."""
        return {}

    @cached_property
    def _shortened(self) -> frozenset[str]:
        return shortened(self.words)

    @cached_property
    def _word_prefixes(self) -> frozenset[str]:
        return frozenset(w[:i] for w in self.words for i in range(1, len(w) + 1))

    @cached_property
    def _number_prefixes(self) -> frozenset[str]:
        assert self.numbers is not None
        return frozenset(n[:i] for n in (*self.numbers, *self.written) for i in range(1, len(n) + 1))

    def name_ok(self, token: str, partial: bool) -> bool:
        word = _strip_possessive(token).lower()
        if not partial:
            return word in COMMON_TERMS or known(word, self.words, self._shortened)
        # Still on its way to a word of the source, or already one with a short ending to come.
        if word in self._word_prefixes:
            return True
        return any(word[:k] in self.words for k in range(max(CLOSE_MIN, len(word) - CLOSE_ENDING), len(word) + 1))

    def number_ok(self, text: str, partial: bool) -> bool:
        if self.numbers is None:
            return True
        if not partial:
            return normal_number(text) in self.numbers
        return text in self._number_prefixes or normal_number(text) in self.numbers

    @staticmethod
    def context(before: str) -> tuple[int, int]:
        """What `allows` needs of `before` alone, the same for every candidate piece: where its last
        word or number begins (everything before was judged already), and where the sentence segment
        that holds it begins."""
        changed = len(before)
        while changed > 0 and (before[changed - 1].isalnum() or before[changed - 1] in ".,'’"):
            changed -= 1
        begin = 0
        for match in SEGMENT.finditer(before, 0, changed):
            begin = match.end()
        return changed, begin

    def allows(self, before: str, piece: str, context: tuple[int, int] | None = None) -> bool:
        """Whether `before + piece` still keeps to the rule, given that `before` did (its last word may
        be unfinished: then it must still be able to become an allowed one). `context`:
        `Guard.context(before)`, where the caller asks of many pieces after the same text."""
        text = before + piece
        end = len(text)
        changed, begin = context or self.context(before)
        if self.numbers is not None:
            for match in NUMBER.finditer(text, changed):
                rest = text[match.end():]
                partial = rest == "" or rest in (".", ",")  # "9." may still become "9.5"
                if not self.number_ok(match.group(0) + rest if partial else match.group(0), partial):
                    return False
        for start, stop in _segments(text, begin):
            for i, match in enumerate(TOKEN.finditer(text, start, stop)):
                if match.end() <= changed:
                    continue
                token = match.group(0)
                if is_name(token, i == 0) and not self.name_ok(token, partial=match.end() == end):
                    return False
        return True


def _segments(text: str, begin: int):
    """(start, stop) of each sentence segment of `text` from `begin` (SEGMENT splits them)."""
    for match in SEGMENT.finditer(text, begin):
        yield begin, match.start()
        begin = match.end()
    yield begin, len(text)


_TRAILING_WORD = re.compile(r"[^\W_]+(?:['’][^\W\d_]*)?$")
_TRAILING_NUMBER = re.compile(r"\d[.,]?$")
# How much of the text's end `GuardState.open` looks at (a longer word is looked at whole).
_OPEN_LOOK = 64
# A piece's first ASCII letters and digits, as far as `GuardState.mask` looks ahead on an open name.
_LEAD = re.compile(r"[A-Za-z0-9]{1,3}")
_STOPS = frozenset(string.punctuation) - {"'"}  # ASCII punctuation that ends a word
_CLOSERS = CLOSERS  # what may follow a sentence's end before the space that ends it (SEGMENT)


# How many characters before the last word `GuardState.mask` keys its answers by: a sentence's end and
# the closing quotes and brackets after it.
MEMO_BEFORE = 8


class PieceTable:
    """A vocabulary's pieces (token id -> bytes), sorted once into what the guard asks of them:
    `plain` (whole UTF-8 with no cased capital and no digit: it cannot start a name or a number),
    `spaced` (whole UTF-8 beginning with white space: it ends any word or number before it), `stops`
    (beginning with ASCII punctuation other than an apostrophe: it ends any word before it), and `lead`
    (up to three ASCII letters or digits a piece begins with, else "")."""

    def __init__(self, pieces: Sequence[bytes]):
        self.pieces = list(pieces)
        n = len(self.pieces)
        self.plain = np.zeros(n, dtype=bool)
        self.spaced = np.zeros(n, dtype=bool)
        self.stops = np.zeros(n, dtype=bool)
        self.lead = [""] * n
        for i, piece in enumerate(self.pieces):
            try:
                text = piece.decode("utf-8")
            except UnicodeDecodeError:
                continue
            self.plain[i] = _is_plain(text)
            if text[:1].isspace():
                self.spaced[i] = True
            elif lead := _LEAD.match(text):
                self.lead[i] = lead.group(0)
            elif text and text[0] in _STOPS:
                self.stops[i] = True


class GuardState:
    """One sequence's guard: the text it has written so far (as bytes: a token may end inside a
    character), asked which candidate pieces may come next."""

    def __init__(self, guard: Guard):
        self.guard = guard
        self.reset(b"")

    def reset(self, data: bytes) -> None:
        self.data = data
        self._key: tuple | None = None  # what `_answer` keys its answers by, for this text
        try:
            self.text, self.tail = data.decode("utf-8"), b""
        except UnicodeDecodeError as exc:
            cut = exc.start if exc.start >= len(data) - 3 else len(data)
            self.text, self.tail = data[:cut].decode("utf-8", errors="ignore"), data[cut:]

    def take(self, piece: bytes) -> None:
        self.reset(self.data + piece)

    def open(self) -> bool:
        """Whether the text ends inside a name or number, or a character: then even a piece with no
        capital and no digit ("keley" after "Ber") must be looked at."""
        if self.tail:
            return True
        end = self.text[-_OPEN_LOOK:]
        if self.guard.numbers is not None and _TRAILING_NUMBER.search(end):
            return True
        word = _TRAILING_WORD.search(end)
        if word and word.start() <= 1 and len(end) < len(self.text):  # a longer word: look at it whole
            word = _TRAILING_WORD.search(self.text)
        return bool(word) and word.group(0)[0].isupper()

    def mask(self, tokens: np.ndarray, table: PieceTable) -> np.ndarray:
        """Which of the candidate `tokens` (ids into `table`) the rule allows next: the answers of
        `Guard.allows`, found by shorter ways where the same answer is sure.

        - A plain piece cannot break the rule unless the text is `open`.
        - A spaced piece ends the text's last word or number: it is allowed if that word is (asked once,
          as the text followed by a space) and its own words are, judged as if written at a segment's
          start or after a word of it; those answers are remembered per guard by the piece alone.
        - After an open name (not a segment's first word), a piece that goes on with letters or digits
          is refused unless the name with its first few of them could still become an allowed one,
          and a piece that begins with punctuation unless the name is an allowed one as it stands.
        - Any other piece: its answer is remembered (per guard) by what it depends on: the text from the
          last word or number on, the few characters before it (a sentence's end, a quote), whether a
          word comes before it in its sentence, and the piece."""
        out = np.ones(len(tokens), dtype=bool)
        open_ = self.open()
        look = np.ones(len(tokens), dtype=bool) if open_ else ~table.plain[tokens]
        if not look.any():
            return out
        pieces = table.pieces
        spaced = table.spaced[tokens] & look if not self.tail else np.zeros(len(tokens), dtype=bool)
        if spaced.any():
            if not self._answer(b" "):
                out[spaced] = False
            else:
                first = None
                memo = self.guard.spaced
                for i in np.flatnonzero(spaced & ~table.plain[tokens]).tolist():
                    if first is None:
                        first = self._first_after_space()
                    piece = pieces[tokens[i]]
                    answer = memo.get((first, piece))
                    if answer is None:
                        answer = memo[first, piece] = self.guard.allows("" if first else "x", piece.decode("utf-8"))
                    out[i] = answer
        rest = np.flatnonzero(look & ~spaced).tolist()
        name = self._open_name() if open_ and rest else None
        leads: dict[str, bool] = {}
        whole = None
        for i in rest:
            token = tokens[i]
            if name is not None:
                lead = table.lead[token]
                if lead and "'" in name:  # after an apostrophe a word goes on with letters only
                    lead = lead[: len(lead) - len(lead.lstrip(string.ascii_letters))]
                if lead:
                    fits = leads.get(lead)
                    if fits is None:
                        fits = leads[lead] = self.guard.name_ok(name + lead, partial=True)
                    if not fits:
                        out[i] = False
                        continue
                elif table.stops[token]:
                    if whole is None:
                        whole = self.guard.name_ok(name, partial=False)
                    if not whole:
                        out[i] = False
                        continue
            out[i] = self._answer(pieces[token])
        return out

    def _answer(self, piece: bytes) -> bool:
        """`Guard.allows` of the text and `piece`, remembered (see `mask`)."""
        if self._key is None:
            context = self.guard.context(self.text)
            changed, begin = context
            # From MEMO_BEFORE characters before the last word, or before the run of closing quotes,
            # brackets and spaces it follows, whichever is longer: what ended before them tells a
            # sentence's end ("!)))") from a bracket (",)))").
            cut = changed
            while cut > begin and (self.text[cut - 1] in _CLOSERS or self.text[cut - 1].isspace()):
                cut -= 1
            cut = max(begin, min(changed - MEMO_BEFORE, cut - 1))
            self._key = (context, (self.text[cut:], self.tail,
                                   TOKEN.search(self.text, begin, changed) is None, begin >= changed - MEMO_BEFORE))
        context, key = self._key
        memo = self.guard.answers
        answer = memo.get((key, piece))
        if answer is None:
            answer = memo[key, piece] = self.guard.allows(
                self.text, (self.tail + piece).decode("utf-8", errors="ignore"), context)
        return answer

    def _first_after_space(self) -> bool:
        """Whether a word after the text and a space would be the first of its sentence segment."""
        text = self.text + " "
        _, begin = self.guard.context(text)
        return TOKEN.search(text, begin) is None

    def _open_name(self) -> str | None:
        """The name the text ends in, unfinished, where it is an ASCII word after a word of its segment
        (a piece that goes on with its letters makes it longer, one that begins with punctuation ends
        it); else None."""
        if self.tail:
            return None
        _, begin = self.guard.context(self.text)
        last, count = None, 0
        for count, last in enumerate(TOKEN.finditer(self.text, begin)):
            pass
        if last is None or count == 0 or last.end() != len(self.text):
            return None
        word = last.group(0)
        return word if word.isascii() and word[0].isupper() else None


def _is_plain(text: str) -> bool:
    """Text that can never start a name or a number: no cased capital, no digit. (ASCII text, most
    of a vocabulary, by one search: its capitals, titlecase and digits are A-Z and 0-9; twice as fast
    as the character loop.)"""
    if text.isascii():
        return _ASCII_CAPITAL_OR_DIGIT.search(text) is None
    return not any(c.isupper() or c.istitle() or c.isdigit() for c in text)


_ASCII_CAPITAL_OR_DIGIT = re.compile(r"[A-Z0-9]")


# -- the guard as a grammar, for servers that take one ----------------------------------------------

_UPPER = "A-Z\\u00C0-\\u00D6\\u00D8-\\u00DE"
_LOWER = "a-z\\u00DF-\\u00F6\\u00F8-\\u00FF\\u0100-\\uFFFF"


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name_forms(guard: Guard) -> set[str]:
    """The capitalised forms of the guard's words the rule accepts as names: each word and its close
    forms (CLOSE_ENDING letters shorter or, with the grammar's optional ending, longer), Capitalised and
    in capitals."""
    forms = set()
    for word in guard.words:
        if not word or not all(c.isalpha() for c in word):
            continue
        cut = [word] + [word[:k] for k in range(max(CLOSE_MIN, len(word) - CLOSE_ENDING), len(word))]
        for form in cut:
            forms.update({form[0].upper() + form[1:], form.upper()})
    return forms


def _trie(words: Sequence[str]) -> str:
    """An alternation of `words` as a GBNF group shaped like a trie (shared beginnings written once):
    llama.cpp's grammar sampler keeps one stack per open alternative, so hundreds of flat literals
    would cost it hundreds of stacks at every token of a name."""
    by_first: dict[str, list[str]] = {}
    for word in sorted(set(words)):
        if word:
            by_first.setdefault(word[0], []).append(word[1:])
    branches = []
    for first, rests in by_first.items():
        prefix = first
        ends = "" in rests
        rests = [r for r in rests if r]
        while rests and not ends and len({r[0] for r in rests}) == 1:  # one way on: a longer literal
            prefix += rests[0][0]
            rests = [r[1:] for r in rests]
            ends = "" in rests
            rests = [r for r in rests if r]
        branches.append(_literal(prefix) + (f" {_trie(rests)}{'?' if ends else ''}" if rests else ""))
    return "(" + " | ".join(branches) + ")"


def guard_gbnf(guard: Guard) -> str:
    """The fact guard as a GBNF grammar (llama.cpp's servers take one per request): free text in which
    a capitalised word after a sentence's first word is one of the guard's names (or a close form),
    and a number one it gives, whole. An approximation of `Guard.allows` for a server, where no
    token-by-token guard can run: letters outside Latin-1 count as lower-case, and a digit may not
    follow a letter directly. The checks still judge what comes back."""
    names = sorted(_name_forms(guard))
    if guard.numbers is None:
        number = 'number ::= [0-9]+ ([.,] [0-9]+)*'
    elif guard.numbers or guard.written:
        number = "number ::= " + " | ".join(_literal(n) for n in sorted(guard.numbers | guard.written))
    else:
        number = None
    word = "(name | lower) after" + (" | number unit after" if number else "")
    rules = [
        "root ::= start",
        # at a segment's start (the paragraph's, or after . ! ? : ; with a space, a dash between spaces,
        # an opening quote or bracket) a capitalised word is free
        f"start ::= space start | open start | free after | {word} | \"\"",
        f"mid ::= space mid | open start | {word} | \"\"",
        "unit ::= [A-Za-z]*",  # 7B, 24GB: letters right after a number are no word of their own
        "after ::= end space start | end | [:;] space start | space dash space start | space mid"
        " | ['’] [a-z]+ after | [-/] mid | [,%)\\]'’\"”&+*=<>#@~^|_$] after | \"\"",
        # a sentence's end (digest.sentences; a grammar cannot look back at an abbreviation)
        "end ::= [.!?]+ [\"'”’)\\]]*",
        "space ::= [ \\t\\n]+",
        "dash ::= [-–—]",
        "open ::= [\"“(\\[]",
        f"free ::= [{_UPPER}] [{_LOWER}]*",
        f"lower ::= [{_LOWER}] [{_LOWER}{_UPPER}]*",
        "name ::= " + _trie(names) + ' ([a-z] ([a-z] [a-z]?)?)?',
    ]
    if number:
        rules.append(number)
    return "\n".join(rules) + "\n"
